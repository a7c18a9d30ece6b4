"""Helpers shared by every attack: argument checks, input gradients, projection, box clipping.

Every attack in this package follows one contract (see ``robust.attacks``):
``attack(model, x, y, *, <settings>, generator=None) -> x_adv`` with ``x`` an NCHW float
tensor in [0, 1], ``x_adv`` detached, of the same shape, dtype and device, also in [0, 1].
The model is used in whatever train/eval mode the caller left it in, and gradients are
taken with ``torch.autograd.grad`` with respect to the input only, so no ``.grad`` is ever
accumulated in the model's parameters and their ``requires_grad`` flags are not touched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from robust.errors import ConfigError

KEY = "attack"  # params prefix used in error messages, e.g. "attack.eps"


def _is_number(value: object) -> bool:
    # bool is an int subclass; `eps: true` in YAML is a typo, not a number
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_eps(eps: object, name: str = "eps") -> float:
    if not _is_number(eps) or not 0.0 <= eps <= 1.0:
        raise ConfigError(f"{KEY}.{name}", f"must be a number in [0, 1] (image units), got {eps!r}")
    return float(eps)


def check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{KEY}.{name}", f"must be a positive integer, got {value!r}")
    return value


def check_positive(value: object, name: str) -> float:
    if not _is_number(value) or value <= 0:
        raise ConfigError(f"{KEY}.{name}", f"must be a number > 0, got {value!r}")
    return float(value)


def check_non_negative(value: object, name: str) -> float:
    if not _is_number(value) or value < 0:
        raise ConfigError(f"{KEY}.{name}", f"must be a number >= 0, got {value!r}")
    return float(value)


def check_choice(value: object, name: str, allowed: Iterable[str]) -> str:
    allowed = sorted(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{KEY}.{name}", f"got {value!r}", allowed)
    return value


def check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{KEY}.{name}", f"must be true or false, got {value!r}")
    return value


def check_inputs(x: torch.Tensor, y: torch.Tensor) -> None:
    """Reject inputs that break the data contract before any work is done."""
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__} {getattr(x, 'dtype', '')}")
    if not torch.is_tensor(y) or y.dtype != torch.long or y.shape != x.shape[:1]:
        raise TypeError(f"y must be a long tensor of shape ({x.shape[0]},), got {getattr(y, 'dtype', type(y))} "
                        f"{tuple(getattr(y, 'shape', ()))}")
    if y.device != x.device:
        raise ValueError(f"x is on {x.device} but y is on {y.device}")
    # ε is measured in [0, 1] image units: an input outside the box means normalisation happened
    # outside the model, and every ε would silently mean something else
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError("x must lie in [0, 1]; models normalise inside forward()")


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the summed cross-entropy with respect to ``x`` (one row per example).

    The sum (not the mean) keeps each example's gradient independent of the batch size;
    sign-based steps are unaffected either way.
    """
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def project_linf(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Nearest point of the L∞ ball of radius ``eps`` (element-wise clamp)."""
    return delta.clamp(-eps, eps)


def clip_box(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0.0, 1.0)


def uniform_noise(like: torch.Tensor, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """U(low, high) noise shaped like ``like``, drawn from ``generator`` only.

    Drawn on the generator's own device and then moved, so a CPU generator also serves
    a model on an accelerator (and the draw is the same on both).
    """
    noise = torch.rand(like.shape, generator=generator, device=generator.device, dtype=like.dtype)
    return (low + (high - low) * noise).to(like.device)


def require_generator(generator: torch.Generator | None, attack: str) -> torch.Generator:
    # the global RNG is never used: a random start without a seeded generator would make
    # evaluation numbers irreproducible without any sign of it
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"{attack}: random_start=True needs an explicit seeded torch.Generator, got {generator!r}")
    return generator
