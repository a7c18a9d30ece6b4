"""Small building blocks shared by the architectures."""

from __future__ import annotations

import torch
from torch import nn


class Normalize(nn.Module):
    """Per-channel (x - mean) / std with the statistics stored as buffers.

    Keeping normalisation inside the model means every caller feeds [0, 1] pixels.
    """

    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class PerImageStandardize(nn.Module):
    """(x − mean) / max(std, 1/√D) per image, over all its D = C·H·W values, as TensorFlow's
    ``per_image_standardization`` (SGR's and JARN's official code): a constant image is centred, not
    divided by zero.

    The network's output is then the same for x and a·x + b (a > 0), so its input gradient is
    orthogonal to x, and the evaluation writes no alignment for it (``robust.saliency.scale_invariant``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        mean = flat.mean(1, keepdim=True)
        floor = flat.shape[1] ** -0.5
        std = flat.std(1, unbiased=False, keepdim=True).clamp_min(floor)
        return ((flat - mean) / std).view_as(x)


def scaled(channels: int, width: float) -> int:
    """Layer width after applying a profile's width multiplier (at least 1)."""
    return max(1, round(channels * width))
