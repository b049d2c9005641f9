"""A user's network in: torchvision-named ResNeXt weights onto a layout, and grouped bottlenecks of a
user's model converted into top-k blocks that compute the same outputs (float64)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sparsearch.layers import TopKBottleneck
from sparsearch.models import create_model
from sparsearch.models.convert import convert_bottlenecks, from_torchvision, is_torchvision


class Bottleneck(nn.Module):
    """torchvision's ResNeXt bottleneck, with its module and parameter names."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, groups: int, base_width: int, downsample=None):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNeXt(nn.Module):
    """torchvision's ResNet class with ResNeXt settings (groups, width_per_group), names included."""

    def __init__(self, layers, groups: int, width_per_group: int, num_classes: int = 10):
        super().__init__()
        self.inplanes, self.groups, self.base_width = 64, groups, width_per_group
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._layer(64, layers[0], 1)
        self.layer2 = self._layer(128, layers[1], 2)
        self.layer3 = self._layer(256, layers[2], 2)
        self.layer4 = self._layer(512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def _layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        down = None
        if stride != 1 or self.inplanes != planes * 4:
            down = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
            )
        layers = [Bottleneck(self.inplanes, planes, stride, self.groups, self.base_width, down)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes, 1, self.groups, self.base_width) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _randomised(model: nn.Module) -> nn.Module:
    """Random batch-norm statistics and affine parameters, as a trained network has."""
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def test_torchvision_weights_load_into_the_matching_layout_and_compute_the_same() -> None:
    reference = _randomised(ResNeXt([1, 2, 1, 1], groups=8, width_per_group=4))
    state = reference.state_dict()
    assert is_torchvision(state)
    ours = create_model("resnext", depth=[1, 2, 1, 1], cardinality=8, width=4, num_classes=10, input_size=64).eval()
    missing, unexpected = ours.load_state_dict(from_torchvision(state), strict=False)
    assert unexpected == [] and all(k.endswith("gate.tiebreak") for k in missing)  # gates: ours alone
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        assert float((ours.double()(x) - reference.double()(x)).abs().max()) <= 1e-9


def test_grouped_bottlenecks_become_topk_blocks_with_equal_outputs() -> None:
    model = _randomised(ResNeXt([2, 1, 1, 1], groups=4, width_per_group=8))
    source = copy.deepcopy(model)
    report = convert_bottlenecks(model)
    assert len(report) == 5 and all(r.converted and r.max_abs_diff <= 1e-9 for r in report)
    assert [r.module for r in report] == ["layer1.0", "layer1.1", "layer2.0", "layer3.0", "layer4.0"]
    assert isinstance(model.layer2[0], TopKBottleneck) and model.layer2[0].cardinality == 4
    x = torch.randn(2, 3, 48, 48, dtype=torch.float64)
    with torch.no_grad():
        assert float((model.double()(x) - source.double()(x)).abs().max()) <= 1e-6


def test_what_cannot_be_converted_is_left_as_it_is_and_listed() -> None:
    class Odd(Bottleneck):  # the names of a bottleneck, another forward (no ReLU at the end)
        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            return self.bn3(self.conv3(out)) + x

    odd = _randomised(nn.Sequential(Odd(32, 8, 1, 4, 32), nn.Conv2d(32, 32, 3, padding=1, groups=4)))
    before = copy.deepcopy(odd.state_dict())
    report = convert_bottlenecks(odd)
    assert [(r.module, r.converted) for r in report] == [("0", False), ("1", False)]
    assert "its forward differs" in report[0].detail and "grouped convolution left as it is" in report[1].detail
    assert isinstance(odd[0], Odd) and all(torch.equal(before[k], v) for k, v in odd.state_dict().items())


@pytest.mark.parametrize("groups", [2, 32])
def test_the_converted_block_is_the_source_block_at_any_cardinality(groups) -> None:
    block = _randomised(
        Bottleneck(
            64,
            16,
            2,
            groups,
            64 // groups * 4 if groups == 2 else 4,
            nn.Sequential(nn.Conv2d(64, 64, 1, 2, bias=False), nn.BatchNorm2d(64)),
        )
    )
    holder = nn.Sequential(block)
    [entry] = convert_bottlenecks(holder)
    assert entry.converted and entry.max_abs_diff <= 1e-9 and f"C = {groups}" in entry.detail


def test_train_init_accepts_a_torchvision_state_dict(tmp_path) -> None:
    from sparsearch.spaces import load_space
    from sparsearch.train import default_settings, load_checkpoint, train_space

    (tmp_path / "r.yaml").write_text(
        "name: r\ntarget: {model: resnext, depth: [1, 1, 1, 1], cardinality: 4, width: 8, num_classes: 10}\n"
        "proxy: {dataset: digits, input_size: 32}\n"
        "knobs:\n  k: {per: stage, min: 1, max: cardinality}\n  routing: {choices: [softmax]}\n"
    )
    reference = _randomised(ResNeXt([1, 1, 1, 1], groups=4, width_per_group=8))
    torch.save(reference.state_dict(), tmp_path / "pretrained.pth")
    settings = default_settings("classification", epochs=1, steps_per_epoch=1)
    result = train_space(
        load_space(tmp_path / "r.yaml"),
        {},
        settings,
        torch.device("cpu"),
        init=str(tmp_path / "pretrained.pth"),
        out=tmp_path / "run",
    )
    initialised = load_checkpoint(result.checkpoint).meta.training["initialised"]
    assert initialised["loaded"] == initialised["file_tensors"] == len(reference.state_dict())


@pytest.mark.parametrize("routing", ["softmax", "sigmoid", "relu_l1", "noisy_topk", "constant"])
def test_a_convolution_becomes_condconv_computing_the_same_at_initialisation(routing) -> None:
    from sparsearch.layers import CondConv2d
    from sparsearch.models.convert import to_condconv

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2), nn.ReLU()).eval()
    source = copy.deepcopy(model)
    entry = to_condconv(model, "0", 4, routing)
    assert entry.converted and isinstance(model[0], CondConv2d) and model[0].num_experts == 4
    assert entry.max_abs_diff <= 1e-7  # sigmoid: the float32 rounding of its starting bias, logit(1/n)
    x = torch.randn(3, 8, 11, 11)
    with torch.no_grad():
        assert torch.allclose(model(x), source(x), atol=1e-5)
    assert not to_condconv(model, "1", 4).converted  # a ReLU is not a convolution: left, and said


def test_stages_become_gateconnect_stages_computing_the_same_in_eval() -> None:
    from sparsearch.layers import GateConnectModule
    from sparsearch.models.convert import GateConnectStage, to_gateconnect

    model = _randomised(ResNeXt([2, 3, 1, 1], groups=4, width_per_group=8))
    source = copy.deepcopy(model)
    entries = [to_gateconnect(model, f"layer{i}") for i in range(1, 5)]
    assert all(e.converted and e.max_abs_diff <= 1e-12 for e in entries)
    assert isinstance(model.layer2, GateConnectStage) and len(model.layer2.blocks) == 3
    assert [m.num_inputs for m in model.layer2.blocks] == [1, 4, 4]
    assert all(isinstance(m, GateConnectModule) and m.fan_in == m.num_inputs for m in model.layer2.blocks)
    x = torch.randn(2, 3, 48, 48, dtype=torch.float64)
    with torch.no_grad():
        assert float((model.double()(x) - source.double()(x)).abs().max()) <= 1e-9
    assert not to_gateconnect(model, "fc").converted  # a linear layer is no stage: left, and said
