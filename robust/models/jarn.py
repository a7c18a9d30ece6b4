"""The MNIST network of JARN: Chan, Tay, Ong & Fu, "Jacobian Adversarially Regularized Networks
for Robustness", ICLR 2020, arXiv 1912.10185, §4.1.

The text: "a CNN, sequentially composed of 3 convolutional layers and 1 final softmax layer. All 3
convolutional layers have a stride of 5 while each layer has an increasing number of output channels
(64-128-256)". The official code has no MNIST model. Lost from the text, chosen here: the kernel
size, padding, activation and input normalisation.

- ``jarn-mnist`` (the literal reading): 5×5 kernels with stride 5 and TensorFlow "SAME" padding
  (the size that neither skips nor overlaps pixels), ReLU; 28×28 → 6×6 → 2×2 → 1×1, then the
  softmax layer (a linear layer to the logits).
- ``jarn-mnist-stride2``: the same layers with stride 2 (28×28 → 14×14 → 7×7 → 4×4), the usual
  strided MNIST CNN, in case "stride of 5" stands for a 5×5 filter.

Inputs are pixels in [0, 1] without further normalisation. ``width`` scales every layer.
``SameConv2d`` (TensorFlow "SAME" padding for any kernel and stride) is shared with the JARN
discriminator in ``robust.defenses.jarn``.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from robust.models import ARCHS
from robust.models.layers import Normalize, scaled


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow's "SAME": output ceil(size / stride), extra pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding, so the output is ceil(H / stride) × ceil(W / stride)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kernel, _), (stride, _) = self.kernel_size, self.stride
        top, bottom = same_padding(x.shape[-2], kernel, stride)
        left, right = same_padding(x.shape[-1], kernel, stride)
        if top == bottom and left == right:
            # the convolution's own padding: F.pad's copy costs CPU backends up to a third of the layer
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        return super().forward(F.pad(x, (left, right, top, bottom)))


def same_output_size(size: int, stride: int, layers: int) -> int:
    for _ in range(layers):
        size = math.ceil(size / stride)
    return size


class JarnMnistNet(nn.Module):
    """Three strided 5×5 convolutions (64-128-256 channels) with ReLU, then one linear layer."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, width: float = 1.0, stride: int = 5):
        super().__init__()
        channels, height, width_px = in_shape
        widths = [channels] + [scaled(c, width) for c in (64, 128, 256)]
        self.normalize = Normalize([0.0] * channels, [1.0] * channels)
        self.convs = nn.ModuleList(SameConv2d(a, b, 5, stride=stride) for a, b in itertools.pairwise(widths))
        features = widths[-1] * same_output_size(height, stride, 3) * same_output_size(width_px, stride, 3)
        self.head = nn.Linear(features, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        for conv in self.convs:
            x = torch.relu(conv(x))
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


@ARCHS.register("jarn-mnist")
def jarn_mnist(*, in_shape, num_classes, width):
    return JarnMnistNet(in_shape, num_classes, width, stride=5)


@ARCHS.register("jarn-mnist-stride2")
def jarn_mnist_stride2(*, in_shape, num_classes, width):
    return JarnMnistNet(in_shape, num_classes, width, stride=2)
