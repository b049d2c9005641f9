"""Compacted models compute what their source computes: GateConnect branches, folded CondConv, kept
paths and experts, pruned channels; and their costs are counted the same three ways."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from torch import nn

from sparsearch.compact.calibration import calibrate, usage_edits
from sparsearch.compact.channels import choose_channels
from sparsearch.compact.graph import connectivity_graph, dead_blocks
from sparsearch.compact.prune import branch_edits
from sparsearch.cost import count
from sparsearch.cost.verify import flop_counter_flops, thop_macs
from sparsearch.cost.walk import network_cost
from sparsearch.data import Batch
from sparsearch.layers import BranchModule, GateConnectModule
from sparsearch.models import SparseResNeXt, create_model, layout, with_knobs
from sparsearch.models.edits import EditError, apply_edits, expert_groups, prune_inner


def _randomise_bn(model: nn.Module) -> None:
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def _gateconnect(fan_in: int) -> SparseResNeXt:
    net = create_model("gateconnect_cifar", depth=29, num_classes=10, fan_in=fan_in, input_size=16)
    gen = torch.Generator().manual_seed(fan_in)
    for m in net.modules():
        if isinstance(m, GateConnectModule):
            with torch.no_grad():
                m.gates.copy_(torch.rand(m.gates.shape, generator=gen))
            m.freeze()
    _randomise_bn(net)
    return net.eval()


def _compact(net: SparseResNeXt) -> SparseResNeXt:
    dead = {n for r in dead_blocks(connectivity_graph(net)) for n in r}
    edits = branch_edits(net, "", dead)
    return apply_edits(copy.deepcopy(net), edits).eval()


@pytest.mark.parametrize("fan_in", [1, 2, 4])
def test_gateconnect_compaction_is_exact(fan_in):
    net = _gateconnect(fan_in)
    compact = _compact(net)
    assert all(not isinstance(m, GateConnectModule) for m in compact.modules())
    x = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        assert (compact(x) - net(x)).abs().max() <= 1e-4
    before, after = network_cost(net), network_cost(compact)
    assert before.executed_macs == count(net.config).executed_macs and before.params == count(net.config).params
    assert sum(p.numel() for p in compact.parameters()) == after.params
    assert after.params < before.params if fan_in == 1 else after.params <= before.params
    one = x[:1]
    assert flop_counter_flops(compact, one) == after.executed_flops
    assert flop_counter_flops(net, one) == before.executed_flops
    assert thop_macs(compact, one) == after.executed_macs


def test_fan_in_one_removes_branches_and_saves_parameters():
    net = _gateconnect(1)
    compact = _compact(net)
    branches = [m.branches for m in compact.modules() if isinstance(m, BranchModule)]
    assert branches[-1] == 8 and min(branches) < 8


def test_a_module_left_with_one_live_branch_still_feeds_the_next_its_activation():
    # Every branch of each module after the first reads input 0 only: the modules before keep one live
    # branch each, and the compacted readers see a single tensor. It must still go through the ReLU
    # that the source applies to its (pre-activation) branch outputs.
    net = create_model("gateconnect_cifar", depth=29, num_classes=10, fan_in=1, input_size=16)
    for m in net.modules():
        if isinstance(m, GateConnectModule):
            with torch.no_grad():
                m.gates.fill_(0.01)
                m.gates[:, 0] = 1.0
            m.freeze()
    _randomise_bn(net)
    net.eval()
    compact = _compact(net)
    branches = [m.branches for m in compact.modules() if isinstance(m, BranchModule)]
    assert branches[:-1] == [1] * (len(branches) - 1) and branches[-1] == 8
    x = torch.randn(6, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        assert (compact.double()(x) - net.double()(x)).abs().max() <= 1e-9


def _condnet_constant_routing(arch: str) -> nn.Module:
    net = create_model(arch, width=0.25, experts=4, input_size=32, num_classes=5)
    gen = torch.Generator().manual_seed(2)
    for router, _ in expert_groups(net).values():
        for linear in (m for m in router.modules() if isinstance(m, nn.Linear)):
            with torch.no_grad():
                linear.weight.zero_()  # the routing then ignores its input: constant weights
                linear.bias.copy_(torch.randn(linear.bias.shape, generator=gen))
    _randomise_bn(net)
    return net.eval()


def _batches(images: torch.Tensor, size: int = 4) -> list[Batch]:
    return [
        Batch(images[i : i + size], torch.zeros(len(images[i : i + size]), dtype=torch.long))
        for i in range(0, len(images), size)
    ]


@pytest.mark.parametrize("arch", ["cc_mobilenet_v1", "cc_mobilenet_v2"])
def test_constant_routing_folds_into_plain_layers_exactly(arch):
    net = _condnet_constant_routing(arch)
    x = torch.randn(8, 3, 32, 32)
    cal = calibrate(net, _batches(x), torch.device("cpu"))
    edits = usage_edits(cal, threshold=0.0, tolerance=1e-6)
    assert edits and {e.op for e in edits} == {"fold"}
    compact = apply_edits(copy.deepcopy(net), edits)
    assert not expert_groups(compact)  # every CondConv layer became a plain one
    with torch.no_grad():
        assert (compact(x) - net(x)).abs().max() <= 1e-4
    after = network_cost(compact)
    assert flop_counter_flops(compact, x[:1]) == after.executed_flops
    assert after.params < network_cost(net).params
    assert sum(p.numel() for p in compact.parameters()) == after.params


def _topk_net(**knobs) -> SparseResNeXt:
    config = with_knobs(layout("clevr_cnn", input_size=16), **knobs)
    net = SparseResNeXt(replace(config, head="classifier", num_classes=5))
    _randomise_bn(net)
    return net.eval()


def test_paths_never_selected_are_removed_with_equal_outputs_on_the_calibration_data():
    net = _topk_net(k=3, routing="softmax", experts=2)
    block = net.blocks["conv3_0"]
    with torch.no_grad():
        block.gate.routing.trunk.bias[[0, 5]] = -1e4  # paths 0 and 5 can never be chosen
    x = torch.randn(16, 3, 16, 16)
    cal = calibrate(net, _batches(x), torch.device("cpu"))
    edits = [e for e in usage_edits(cal, threshold=0.0, tolerance=1e-9) if e.op == "paths"]
    mine = next(e for e in edits if e.module == "blocks.conv3_0")
    removed = mine.evidence["removed"]
    assert {0, 5} <= set(removed) and sorted(removed + mine.args["keep"]) == list(range(12))
    assert all(mine.evidence["selected"][c] == 0 for c in removed)
    compact = apply_edits(copy.deepcopy(net), edits)
    for execution in ("masked", "sparse"):  # sparse last: the costs below count it
        for m in compact.modules():
            if hasattr(m, "execution") and hasattr(m, "gate"):
                m.execution = execution
        with torch.no_grad():
            assert (compact(x) - net(x)).abs().max() <= 1e-4
    assert compact.blocks["conv3_0"].cardinality == len(mine.args["keep"])
    after = network_cost(compact)
    assert flop_counter_flops(compact, x[:1]) == after.executed_flops
    assert sum(p.numel() for p in compact.parameters()) == after.params


def test_experts_below_the_threshold_are_removed_after_the_paths():
    net = _topk_net(k=2, routing="softmax", experts=3)
    block = net.blocks["conv2_0"]
    with torch.no_grad():
        block.expert_router.trunk.bias[1] = -30.0  # sigmoid(-30) ~ 1e-13: expert 1 never counts
    x = torch.randn(8, 3, 16, 16)
    cal = calibrate(net, _batches(x), torch.device("cpu"))
    edits = [e for e in usage_edits(cal, threshold=0.01, tolerance=1e-9) if e.module == "blocks.conv2_0"]
    experts = [e for e in edits if e.op == "experts"]
    assert len(experts) == 1 and experts[0].args["keep"] == [0, 2] and experts[0].evidence["removed"] == [1]
    compact = apply_edits(copy.deepcopy(net), edits)
    assert compact.blocks["conv2_0"].experts == 2
    with torch.no_grad():
        assert (compact(x) - net(x)).abs().max() <= 1e-4  # the removed expert weighed ~1e-13
    after = network_cost(compact)
    assert flop_counter_flops(compact, x[:1]) == after.executed_flops
    assert sum(p.numel() for p in compact.parameters()) == after.params


def test_channel_choice_of_torch_pruning_equals_the_recorded_edits():
    net = _compact(_gateconnect(1))
    x = torch.randn(4, 3, 16, 16)
    pruned_by_tp = copy.deepcopy(net)
    edits = choose_channels(pruned_by_tp, x, 0.5, "l2", 2)
    assert edits and all(len(e.args["keep"]) % 2 == 0 for e in edits)
    mine = copy.deepcopy(net)
    for e in edits:
        prune_inner(mine.get_submodule(e.module), e.args["layer"], e.args["keep"])
    # The same as masking the removed channels in the source: zero their batch-norm scale and shift.
    masked = copy.deepcopy(net)
    for e in edits:
        block = masked.get_submodule(e.module)
        bn = block.bn_reduce if e.args["layer"] == "reduce" else block.bn_conv
        gone = [c for c in range(bn.num_features) if c not in e.args["keep"]]
        with torch.no_grad():
            bn.weight[gone] = 0.0
            bn.bias[gone] = 0.0
    with torch.no_grad():
        assert (mine(x) - pruned_by_tp(x)).abs().max() <= 1e-5
        assert (mine(x) - masked(x)).abs().max() <= 1e-4
    after = network_cost(mine)
    assert flop_counter_flops(mine, x[:1]) == after.executed_flops
    assert sum(p.numel() for p in mine.parameters()) == after.params


def test_edits_that_do_not_fit_are_refused():
    net = _gateconnect(1)
    for edit, message in (
        ({"op": "nope", "module": "blocks.stage1_0"}, "not an edit"),
        ({"op": "branches", "module": "blocks.missing", "keep": [0]}, "does not have"),
        ({"op": "paths", "module": "blocks.stage1_0", "keep": [0]}, "TopKBottleneck"),
        ({"op": "branches", "module": "blocks.stage1_0", "keep": [9], "sources": [[0]], "num_inputs": 1}, "0..7"),
    ):
        with pytest.raises(EditError, match=message):
            apply_edits(copy.deepcopy(net), [edit])
