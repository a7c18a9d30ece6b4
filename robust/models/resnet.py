"""ResNet-18 as trained by AFD (Bashivan et al. 2021, arXiv 2006.04621; official code BashivanLab/afd).

Four stages of two BasicBlocks (He et al. 2016, arXiv 1512.03385: conv3×3–BN–ReLU–conv3×3–BN,
identity shortcut or conv1×1–BN where the shape changes), global average pooling, one linear
layer. The model is split the way AFD needs it: ``embed(x)`` → features E(x) (the activations
before the last linear layer) and ``head`` (the linear decoder Dc), ``model(x) == head(embed(x))``.

- ``resnet18``: the common CIFAR ResNet-18 (official ``models/resnet_cifar.py``): 3×3 stride-1
  stem with 64 channels, stages 64/128/256/512 with strides 1/2/2/2, 512-d features;
  11.17 M parameters for 10 classes.
- ``resnet18-mnist``: the narrow variant of the official ``models/resnet_mnist.py``: 3×3
  stride-2 stem with 16 channels, stages 16/32/48/64, each with stride 2, 64-d features.
- ``-norm`` variants (``resnet18-norm``, ``resnet18-mnist-norm``): features L2-normalised
  (``F.normalize``) inside ``embed``, so the head and AFD's discriminator both see unit-norm
  features, as in the official training default ``resnet18norm``. The released CIFAR
  checkpoints were evaluated without it (IMPLEMENTATION_NOTES, "Quirk"), hence both.

Faithful: layer shapes, bias-free convolutions, PyTorch's default initialisation, no input
normalisation (the official code feeds [0, 1] pixels). Chosen: global pooling is a mean over
H and W (the official ``avg_pool2d(out, 4)`` on 32×32 CIFAR inputs and ``AdaptiveAvgPool2d``
on MNIST give the same numbers) because ``AdaptiveAvgPool2d`` has no deterministic CUDA
backward. ``width`` multiplies every channel count (``scaled``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robust.models import ARCHS
from robust.models.layers import scaled


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """``stem`` channels and stride, four stages of (channels, stride), two blocks each."""

    def __init__(self, in_channels: int, num_classes: int, *, stem: tuple[int, int],
                 stages: list[tuple[int, int]], normalize_features: bool = False):
        super().__init__()
        stem_channels, stem_stride = stem
        self.conv1 = nn.Conv2d(in_channels, stem_channels, 3, stride=stem_stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        blocks, channels_in = [], stem_channels
        for channels, stride in stages:
            blocks += [BasicBlock(channels_in, channels, stride), BasicBlock(channels, channels, 1)]
            channels_in = channels
        self.blocks = nn.Sequential(*blocks)
        self.normalize_features = normalize_features
        self.num_features = channels_in
        self.head = nn.Linear(channels_in, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features E(x): mean-pooled last stage, unit L2 norm for the ``-norm`` variants."""
        out = self.blocks(F.relu(self.bn1(self.conv1(x))))
        features = out.mean(dim=(2, 3))
        return F.normalize(features, dim=1) if self.normalize_features else features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def l2_weights(self) -> list[torch.Tensor]:
        """Every parameter: the official SGD ``weight_decay`` (Table A1: 1e-4) covers all of E and Dc;
        the trainer's ``l2`` penalty l2·Σ‖w‖²/2 over this list has the same gradient."""
        return list(self.parameters())


def cifar_resnet18(in_shape, num_classes, width, normalize_features=False) -> ResNet18:
    stages = [(scaled(64, width), 1), (scaled(128, width), 2), (scaled(256, width), 2), (scaled(512, width), 2)]
    return ResNet18(in_shape[0], num_classes, stem=(scaled(64, width), 1), stages=stages,
                    normalize_features=normalize_features)


def mnist_resnet18(in_shape, num_classes, width, normalize_features=False) -> ResNet18:
    stages = [(scaled(16 * k, width), 2) for k in (1, 2, 3, 4)]
    return ResNet18(in_shape[0], num_classes, stem=(scaled(16, width), 2), stages=stages,
                    normalize_features=normalize_features)


@ARCHS.register("resnet18")
def resnet18(*, in_shape, num_classes, width):
    return cifar_resnet18(in_shape, num_classes, width)


@ARCHS.register("resnet18-norm")
def resnet18_norm(*, in_shape, num_classes, width):
    return cifar_resnet18(in_shape, num_classes, width, normalize_features=True)


@ARCHS.register("resnet18-mnist")
def resnet18_mnist(*, in_shape, num_classes, width):
    return mnist_resnet18(in_shape, num_classes, width)


@ARCHS.register("resnet18-mnist-norm")
def resnet18_mnist_norm(*, in_shape, num_classes, width):
    return mnist_resnet18(in_shape, num_classes, width, normalize_features=True)
