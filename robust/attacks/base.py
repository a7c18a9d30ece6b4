"""Helpers shared by every attack: argument checks, input gradients, projection, box clipping.

Every attack in this package follows one contract (see ``robust.attacks``):
``attack(model, x, y, *, <settings>, generator=None) -> x_adv`` with ``x`` an NCHW float
tensor in [0, 1], ``x_adv`` detached, of the same shape, dtype and device, also in [0, 1].
The model is used in whatever train/eval mode the caller left it in, and gradients are
taken with ``torch.autograd.grad`` with respect to the input only, so no ``.grad`` is ever
accumulated in the model's parameters and their ``requires_grad`` flags are not touched.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from robust.errors import ConfigError

KEY = "attack"  # params prefix used in error messages, e.g. "attack.eps"


def _is_number(value: object) -> bool:
    # bool is an int subclass; `eps: true` in YAML is a typo, not a number
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_eps(eps: object, name: str = "eps", norm: str = "linf") -> float:
    # an L∞ radius above 1 covers the whole box; L2/L1 radii grow with the input size
    # (MNIST L2 ε = 2, L1 ε = 10 are common), so only their sign is checked
    upper = 1.0 if norm == "linf" else math.inf
    if not _is_number(eps) or not 0.0 <= eps <= upper:
        allowed = "in [0, 1]" if upper == 1.0 else ">= 0"
        raise ConfigError(f"{KEY}.{name}", f"must be a number {allowed} (image units), got {eps!r}")
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


def check_fraction(value: object, name: str) -> float:
    if not _is_number(value) or not 0.0 <= value < 1.0:
        raise ConfigError(f"{KEY}.{name}", f"must be a number in [0, 1), got {value!r}")
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


@contextlib.contextmanager
def parameters_frozen(module: nn.Module) -> Iterator[None]:
    """Gradients flow through ``module`` to its input but not into its parameters; flags restored on exit."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


def frozen_parameters(attack: Callable) -> Callable:
    """Decorator: run the attack with the model's parameters frozen (``parameters_frozen``).

    Attacks differentiate with respect to the input only; with trainable parameters autograd
    would still save every layer's input for weight gradients nobody asks for. Freezing them
    makes a DeepFool iteration about 20% faster and a PGD step about 7% (CPU, small CNN).
    """

    @functools.wraps(attack)
    def run(model: nn.Module, *args, **kwargs):
        with parameters_frozen(model):
            return attack(model, *args, **kwargs)

    return run


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` for the model: a CPU image batch (N, C, H, W) copied into the channels-last layout.

    Only the layout changes, not the values. On CPU, PyTorch's max-pool kernels for the
    default NCHW layout are several times slower than those for NHWC, and oneDNN reorders
    NCHW tensors to and from its own blocked layout around every convolution; an NHWC input
    makes convolutions produce NHWC, and the layers after them run their channels-last
    kernels (small CNN on 28×28, batch 64: forward pass 2–3×, PGD step 1.3–1.6× faster). The
    strides are written out because ``contiguous(memory_format=torch.channels_last)`` keeps
    NCHW strides for a one-channel batch (both layouts hold its values in the same order),
    and PyTorch reads those as NCHW. Other tensors, and tensors on other devices (not
    measured there), are returned as they are.
    """
    if x.dim() != 4 or x.device.type != "cpu":
        return x
    _, c, h, w = x.shape
    out = torch.empty_strided(x.shape, (c * h * w, 1, w * c, c), dtype=x.dtype, device=x.device)
    return out.copy_(x)


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the summed cross-entropy with respect to ``x`` (one row per example).

    The sum (not the mean) keeps each example's gradient independent of the batch size;
    sign-based steps are unaffected either way.
    """
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def logits_and_input_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Detached logits at ``x`` and the gradient of the summed cross-entropy, from one forward pass."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x)
    return logits.detach(), grad


def per_example(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape one value per example, (N,), to broadcast against ``like`` (N, ...)."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def flat_norm(t: torch.Tensor, p: float) -> torch.Tensor:
    """‖t_i‖_p of every example (row of the batch), shape (N,)."""
    return torch.linalg.vector_norm(t.flatten(1), ord=p, dim=1)


def normalize_l2(t: torch.Tensor) -> torch.Tensor:
    """t_i / ‖t_i‖₂ per example; an all-zero example stays zero instead of becoming NaN."""
    norm = flat_norm(t, 2).clamp_min(torch.finfo(t.dtype).tiny)
    return t / per_example(norm, t)


def project_l2(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Nearest point of the L2 ball of radius ``eps``: rescale rows that lie outside it."""
    norm = flat_norm(delta, 2)
    scale = torch.where(norm > eps, eps / norm.clamp_min(torch.finfo(delta.dtype).tiny), torch.ones_like(norm))
    return delta * per_example(scale, delta)


def project_l1(
    delta: torch.Tensor, eps: float, lower: torch.Tensor | None = None, upper: torch.Tensor | None = None
) -> torch.Tensor:
    """Exact Euclidean projection of every example onto {‖δ‖₁ ≤ eps} ∩ {lower ≤ δ ≤ upper}.

    Without bounds this is the sort-based L1-ball projection of Duchi et al. 2008 (ICML,
    "Efficient projections onto the l1-ball"): δ_i = sign(v_i)·max(|v_i| − θ, 0) with the
    threshold θ ≥ 0 that makes ‖δ‖₁ = eps. The bounds (``lower ≤ 0 ≤ upper``, e.g. the
    room the [0, 1] box leaves around the clean input) keep the problem separable, so the
    KKT solution is the soft-threshold clipped to each coordinate's cap c_i:
    |δ_i| = min(max(|v_i| − θ, 0), c_i). ‖δ(θ)‖₁ is then piecewise linear in θ with kinks
    at |v_i| − c_i and |v_i|; sorting those 2D kinks and a cumulative sum give it at every
    kink, and θ follows by linear interpolation — O(D log D) per example, batched, no loop.
    The same problem is solved by AutoAttack's APGD-L1 projection (Croce & Hein 2021,
    arXiv 2103.01208). θ is computed in float64 so that ‖δ‖₁ exceeds eps by rounding only.
    """
    v = delta.detach().flatten(1).double()
    mag = v.abs()
    cap = mag
    if lower is not None or upper is not None:
        up = torch.full_like(v, math.inf) if upper is None else upper.flatten(1).double()
        low = torch.full_like(v, -math.inf) if lower is None else lower.flatten(1).double()
        cap = torch.minimum(mag, torch.where(v > 0, up, -low).clamp_min(0))
    total = cap.sum(dim=1)  # ‖δ(0)‖₁: soft-threshold 0, i.e. clipping alone

    kinks = torch.cat([mag - cap, mag], dim=1)  # where each |δ_i(θ)| starts / stops decreasing
    kinks, order = kinks.sort(dim=1)
    slope = torch.cat([torch.ones_like(mag), -torch.ones_like(mag)], dim=1).gather(1, order).cumsum(dim=1)
    drop = (slope[:, :-1] * kinks.diff(dim=1)).cumsum(dim=1)
    norm_at = total.unsqueeze(1) - torch.cat([torch.zeros_like(total).unsqueeze(1), drop], dim=1)
    # the norm is non-increasing in θ: the solution lies on the segment that crosses eps
    j = (norm_at > eps).sum(dim=1).clamp(1, kinks.shape[1] - 1).unsqueeze(1)
    left, norm_left, active = kinks.gather(1, j - 1), norm_at.gather(1, j - 1), slope.gather(1, j - 1)
    theta = left + (norm_left - eps) / active.clamp_min(1)
    theta = torch.where(total.unsqueeze(1) > eps, theta, torch.zeros_like(theta))
    projected = v.sign() * torch.minimum((mag - theta).clamp_min(0), cap)
    return projected.to(delta.dtype).view_as(delta)


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


def gaussian_noise(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise shaped like ``like``, drawn from ``generator`` only (see ``uniform_noise``)."""
    noise = torch.randn(like.shape, generator=generator, device=generator.device, dtype=like.dtype)
    return noise.to(like.device)


def require_generator(generator: torch.Generator | None, attack: str) -> torch.Generator:
    # the global RNG is never used: a random start without a seeded generator would make
    # evaluation numbers irreproducible without any sign of it
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"{attack}: random_start=True needs an explicit seeded torch.Generator, got {generator!r}")
    return generator
