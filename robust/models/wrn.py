"""The wide residual network of Madry et al.'s CIFAR-10 challenge ("WRN-34-10"), the classifier of
JARN (Chan et al., ICLR 2020, arXiv 1912.10185, §4.2–4.3; official code ``model_jarn.py``) and of
Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", arXiv 1706.06083.

Faithful to the TensorFlow code (``cifar10_challenge/model.py``, copied into ``model_jarn.py``):
an initial 3×3 convolution to 16 channels, three stages of 5 pre-activation residual units with
16 → 160 → 320 → 640 channels (strides 1, 2, 2), leaky ReLU with slope 0.1, convolutions without
bias initialised N(0, 2/(k²·out)), BatchNorm with momentum 0.1 (TF decay 0.9) and ε = 1e-3 (TF's
default), the first unit of stage 1 sharing its activation with the shortcut, shortcuts that
change width average-pool with the stride and zero-pad the new channels (no 1×1 convolution),
then BN, leaky ReLU, global average pooling and a linear layer. 6·5 + 4 = 34 layers; width 10
relative to the original WRN's 16/32/64, about 45.9 M parameters.

Chosen: the input is standardised per image (zero mean, unit standard deviation over all pixels,
TensorFlow's ``per_image_standardization``) as in Madry et al.; JARN's official code instead
subtracts the per-image mean and L2-normalises, which differs only by a per-image constant factor
that the BatchNorm after the first convolution removes (up to BN's ε, which the L2 scale of ~1/55
would make matter). Global pooling is a mean over H, W: ``nn.AdaptiveAvgPool2d`` has no
deterministic CUDA backward. ``width`` multiplies every layer's channels (16 stays ≥ 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from robust.models import ARCHS
from robust.models.layers import PerImageStandardize, scaled

STAGE_WIDTHS = (160, 320, 640)
UNITS_PER_STAGE = 5
STRIDES = (1, 2, 2)
LEAK = 0.1


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=0.1, eps=1e-3)


def conv3x3(in_channels: int, out_channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class ResidualUnit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, activate_before_residual: bool):
        super().__init__()
        self.bn1 = batch_norm(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = batch_norm(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels, 1)
        self.activate_before_residual = activate_before_residual
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.extra_channels == 0:
            return x
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride, self.stride)
        # the TF code pads (out − in) // 2 on each side; an odd difference (narrow widths) goes after
        before = self.extra_channels // 2
        return F.pad(x, (0, 0, 0, 0, before, self.extra_channels - before))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.leaky_relu(self.bn1(x), LEAK)
        shortcut = self.shortcut(activated if self.activate_before_residual else x)
        out = self.conv1(activated)
        out = self.conv2(F.leaky_relu(self.bn2(out), LEAK))
        return out + shortcut


class MadryWideResNet(nn.Module):
    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, width: float = 1.0):
        super().__init__()
        channels = in_shape[0]
        widths = [scaled(16, width)] + [scaled(w, width) for w in STAGE_WIDTHS]
        self.normalize = PerImageStandardize()
        self.init_conv = conv3x3(channels, widths[0], 1)
        units = []
        for stage, stride in enumerate(STRIDES):
            for index in range(UNITS_PER_STAGE):
                first = index == 0
                units.append(ResidualUnit(
                    widths[stage] if first else widths[stage + 1], widths[stage + 1], stride if first else 1,
                    activate_before_residual=first and stage == 0))
        self.units = nn.Sequential(*units)
        self.final_bn = batch_norm(widths[-1])
        self.head = nn.Linear(widths[-1], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, std=math.sqrt(2.0 / fan_out))
        nn.init.zeros_(self.head.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.units(self.init_conv(self.normalize(x)))
        return F.leaky_relu(self.final_bn(x), LEAK).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def l2_weights(self) -> list[torch.Tensor]:
        """Convolution and linear kernels: the official code's weight decay (names ending in DW)."""
        return [m.weight for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@ARCHS.register("wrn-34-10")
def wrn_34_10(*, in_shape, num_classes, width):
    return MadryWideResNet(in_shape, num_classes, width)
