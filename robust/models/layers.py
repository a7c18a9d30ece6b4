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


def scaled(channels: int, width: float) -> int:
    """Layer width after applying a profile's width multiplier (at least 1)."""
    return max(1, round(channels * width))
