"""Your own network, for the guide docs/own-network.md: a small ResNeXt written as torchvision writes
ResNeXt (``conv1 bn1 conv2 bn2 conv3 bn3 downsample`` in each bottleneck), with a model factory.

``make_model(num_classes, in_channels)`` is the factory sparsearch calls: it builds the network and
loads your pretrained weights from ``my_resnext.pth`` when that file exists (a classifier of another
class count is left at its initial weights). ``python my_resnext.py`` makes that file: it trains the
network for two epochs on scikit-learn's digits at 16×16, standing in for your ImageNet pretraining.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS = "my_resnext.pth"


class Bottleneck(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, groups: int = 8, width: int = 4):
        super().__init__()
        inner = groups * width
        self.conv1 = nn.Conv2d(inplanes, inner, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = nn.Conv2d(inner, planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class SmallResNeXt(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(Bottleneck(16, 32), Bottleneck(32, 32))
        self.layer2 = nn.Sequential(Bottleneck(32, 64, stride=2, width=8), Bottleneck(64, 64, width=8))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def make_model(num_classes: int, in_channels: int) -> nn.Module:
    """The factory: the network, with the pretrained weights of my_resnext.pth when present."""
    model = SmallResNeXt(num_classes, in_channels)
    if os.path.exists(WEIGHTS):
        state = torch.load(WEIGHTS, weights_only=True)
        own = model.state_dict()
        model.load_state_dict({k: v for k, v in state.items() if v.shape == own[k].shape}, strict=False)
    return model


def pretrain(epochs: int = 2) -> None:
    """Two epochs on digits (16×16, normalised as sparsearch does: (x - 0.5) / 0.25); writes my_resnext.pth."""
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    digits = load_digits()
    images = torch.from_numpy(digits.images).float()[:, None] / 16.0
    images = F.interpolate(images, size=16, mode="bilinear", align_corners=False).expand(-1, 3, -1, -1).contiguous()
    images, labels = (images - 0.5) / 0.25, torch.from_numpy(digits.target).long()
    model = SmallResNeXt(10, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    for _ in range(epochs):
        for index in torch.randperm(len(labels)).split(32):
            optimizer.zero_grad()
            F.cross_entropy(model(images[index]), labels[index]).backward()
            optimizer.step()
    torch.save(model.state_dict(), WEIGHTS)
    print(f"wrote {WEIGHTS}")


if __name__ == "__main__":
    pretrain(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
