"""Training-data augmentation: a random crop of the padded image and a random horizontal flip.

The standard scheme of the CIFAR literature (He et al. 2016; Madry et al.'s ``cifar10_challenge``,
whose input code JARN reuses; AFD's ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip``) and
the one SGR states for both of its datasets (Roth et al. 2018, §4.1: "zero-padded with four pixels
on each side, randomly cropped to produce a new image with the original dimensions and
subsequently horizontally flipped with probability one half").

Params (a base's or a fine-tune's ``augment`` mapping): ``crop`` (pixels of padding per side, the
crop offset is uniform over the 2·crop + 1 positions per axis; 0 = no crop), ``flip`` (true:
mirror left–right with probability ½), ``fill`` (the padding's pixel value in [0, 1]; 0 = black, as
zero padding of raw pixels is; SGR's CIFAR footnote shifts the data so that padding adds mid-range
pixels, i.e. 0.5 here).

Every draw is made per example and per epoch from the epoch's seed, for the whole training set at
once, and looked up by the example's index: batching and the split of a batch over several
processes do not change which crop an example gets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robust.errors import ConfigError
from robust.params import check_keys, require_mapping, require_number

# The augmentation draws take their own generator, seeded apart from the shuffling order's, so that
# turning augmentation on leaves the order (and every other random stream) of a run unchanged.
STREAM_OFFSET = 7_919


@dataclass(frozen=True)
class Draws:
    offsets: torch.Tensor  # (N, 2) int64: row and column of the crop's corner in the padded image
    flips: torch.Tensor  # (N,) bool

    def __getitem__(self, index: torch.Tensor) -> Draws:
        return Draws(self.offsets[index], self.flips[index])


@dataclass(frozen=True)
class Augment:
    crop: int = 0
    flip: bool = False
    fill: float = 0.0

    @classmethod
    def from_params(cls, value: object, key: str) -> Augment | None:
        """The ``augment`` mapping at ``key``; None when absent or when it changes nothing."""
        if value is None:
            return None
        config = require_mapping(value, key)
        check_keys(config, key, {"crop", "flip", "fill"})
        flip = config.get("flip", False)
        if not isinstance(flip, bool):
            raise ConfigError(f"{key}.flip", f"must be true or false, got {flip!r}")
        augment = cls(crop=int(require_number(config.get("crop", 0), f"{key}.crop", low=0, integer=True)),
                      flip=flip,
                      fill=float(require_number(config.get("fill", 0.0), f"{key}.fill", low=0, high=1)))
        return augment if augment.crop or augment.flip else None

    def draw(self, n: int, seed: int) -> Draws:
        """One epoch's draws for a training set of ``n`` examples."""
        generator = torch.Generator().manual_seed(seed + STREAM_OFFSET)
        offsets = torch.randint(0, 2 * self.crop + 1, (n, 2), generator=generator)
        flips = torch.rand(n, generator=generator) < 0.5
        return Draws(offsets, flips if self.flip else torch.zeros_like(flips))

    def apply(self, x: torch.Tensor, draws: Draws) -> torch.Tensor:
        """The (N, C, H, W) batch ``x`` cropped and flipped as ``draws`` (one per example) say."""
        offsets, flips = draws.offsets.to(x.device), draws.flips.to(x.device)
        if self.crop:
            n, _, height, width = x.shape
            padded = F.pad(x, (self.crop,) * 4, value=self.fill)
            rows = offsets[:, :1] + torch.arange(height, device=x.device)  # (N, H)
            cols = offsets[:, 1:] + torch.arange(width, device=x.device)  # (N, W)
            batch = torch.arange(n, device=x.device)[:, None, None]
            # advanced indices around a slice put their broadcast dimensions first: (N, H, W, C)
            x = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
        if self.flip:
            x = torch.where(flips[:, None, None, None], x.flip(3), x)
        return x
