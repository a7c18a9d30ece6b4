"""Random-noise attacks of Roth et al., "Adversarially Robust Training through Structured Gradient
Regularization" (SGR), arXiv 1805.08736: the uniform-noise baseline and the long-range correlated
(LRC) noise attack of §4.3. Both are "worst of k": every example is perturbed with ``draws``
independent draws and the worst draw is kept.

Worst draw: a misclassified draw beats a correctly classified one, and among draws of the same
kind the higher cross-entropy wins (ties: the earlier draw). The accuracy on the returned batch is
therefore exactly the worst-of-k accuracy of §4.3 (an example counts as correct only if every draw
is), which choosing by loss alone would not guarantee. Draw j uses the generator after draws
1..j−1, so with one seed a run with more draws extends a run with fewer and its accuracy is never
higher. Every perturbed input is clipped to the [0, 1] box.

``uniform_noise``: δ ~ U(−ε, ε) i.i.d. per feature (the "rand" baseline of SGR Table 1), L∞-bounded
by ``eps``. The paper does not say how many draws that baseline used; ``draws`` defaults to 1, a
single draw, and is a setting so that the baseline can be made worst-of-k like LRC.

``lrc``: δ = σ·ξ with ξ a zero-mean Gaussian field of unit variance whose covariance is, between
features at pixel displacement Δ (Euclidean length r = ‖Δ‖₂) in channels c, c′:

    cov = exp(−r/ζ)        if c = c′ (intra-channel),
    cov = ρ·exp(−r/ζ)      if c ≠ c′ (inter-channel),

i.e. Σ = C ⊗ K with K the spatial kernel and C the channel matrix (1 on the diagonal, ρ off it).
Faithful: the covariance functions, ρ = 0.5 (the paper's inter-channel function is half the
intra-channel one; ``channel_correlation``), the decay length ζ (``decay_length``; the paper
tries 1, 2, 4, 8, 16 pixels) and worst-of-100 (``draws`` default 100). The attack strength, the
x-axis of the paper's Figs. 3–4 (ε ∈ [0.01, 0.7], "with which the perturbations were scaled"), is
the factor σ multiplying the unit-variance field, i.e. the per-feature standard deviation: the
setting ``sigma`` (in [0, 1] image units). Gaussian noise has no L∞ bound, so ``lrc`` has no ε
by default; the optional ``eps`` clips δ to [−ε, ε] (not in the paper), which makes
‖δ‖∞ ≤ ε hold and the attack comparable with L∞ attacks at that ε.

As ζ → 0, K → I: ζ = 0 is exactly i.i.d. noise within a channel; the paper says Σ tends to the
identity, which for several channels also needs ρ = 0 (with ρ = 0.5 the channels of one pixel stay
correlated). Sampling: ξ = L_C · Z · L_Kᵀ per example with Z i.i.d. N(0, 1) from the generator and
L_K, L_C Cholesky factors. L_K (HW × HW) is computed in float64 once per (H, W, ζ, device, dtype)
and cached; a tiny diagonal jitter is added only if the factorisation fails (the exponential
kernel is positive definite in 2-D, but for large ζ the matrix is ill-conditioned).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from robust.attacks import ATTACKS
from robust.attacks.base import (
    check_eps,
    check_fraction,
    check_inputs,
    check_non_negative,
    check_positive,
    check_positive_int,
    clip_box,
    gaussian_noise,
    project_linf,
)
from robust.attacks.base import uniform_noise as uniform_draw
from robust.covariance import FunctionCovariance, max_radius
from robust.errors import ConfigError

LRC_DRAWS = 100  # SGR §4.3: worst of 100 perturbations per test point
LRC_CHANNEL_CORRELATION = 0.5  # SGR §4.3: inter-channel covariance = 0.5 · intra-channel covariance
LRC_COVARIANCES = ("exponential", "data")  # §4.3: the synthetic covariance, then the training images' own


def require_generator(generator: torch.Generator | None, attack: str) -> torch.Generator:
    # the global RNG is never used: noise without a seeded generator makes numbers irreproducible
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"{attack}: noise draws need an explicit seeded torch.Generator, got {generator!r}")
    return generator


def worst_of_draws(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, draws: int, noise: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """Per example, the worst of ``draws`` inputs clip(x + noise()): misclassified first, then higher loss."""
    best = x.clone()
    best_wrong = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    best_loss = torch.full((len(x),), -math.inf, dtype=x.dtype, device=x.device)
    for _ in range(draws):
        candidate = clip_box(x + noise())
        with torch.no_grad():
            logits = model(candidate)
        loss = F.cross_entropy(logits, y, reduction="none").to(x.dtype)
        wrong = logits.argmax(dim=1) != y
        better = (wrong & ~best_wrong) | ((wrong == best_wrong) & (loss > best_loss))
        best[better] = candidate[better]
        best_wrong, best_loss = best_wrong | wrong, torch.where(better, loss, best_loss)
    return best.detach()


@ATTACKS.register("uniform_noise")
def uniform_noise(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    draws: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return the worst of ``draws`` inputs clip(x + U(−eps, eps)) per example, detached.

    ``eps`` is the L∞ radius in [0, 1] image units; ``generator`` (required) is the only source
    of randomness.
    """
    eps = check_eps(eps)
    draws = check_positive_int(draws, "draws")
    check_inputs(x, y)
    generator = require_generator(generator, "uniform_noise")
    x = x.detach()
    return worst_of_draws(model, x, y, draws, lambda: uniform_draw(x, -eps, eps, generator))


def exponential_covariance(height: int, width: int, decay_length: float) -> torch.Tensor:
    """K[p, q] = exp(−‖p − q‖₂ / ζ) over the H·W pixel grid (row-major), float64; ζ = 0 gives I."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    grid = torch.stack([rows.flatten(), cols.flatten()], dim=1).double()
    distance = torch.cdist(grid, grid)
    if decay_length == 0:
        return (distance == 0).double()
    return torch.exp(-distance / decay_length)


def _cholesky_with_jitter(matrix: torch.Tensor) -> torch.Tensor:
    factor, info = torch.linalg.cholesky_ex(matrix)
    jitter = 1e-12
    while info.item() != 0:
        if jitter > 1e-4:
            raise RuntimeError("covariance matrix is not positive definite even with jitter")
        factor, info = torch.linalg.cholesky_ex(matrix + jitter * torch.eye(len(matrix), dtype=matrix.dtype))
        jitter *= 10
    return factor


@lru_cache(maxsize=16)
def spatial_factor(height: int, width: int, decay_length: float, device: torch.device,
                   dtype: torch.dtype) -> torch.Tensor:
    """Cholesky factor L_K of the spatial covariance (cached; callers must not modify it)."""
    factor = _cholesky_with_jitter(exponential_covariance(height, width, decay_length))
    return factor.to(device=device, dtype=dtype)


def channel_factor(channels: int, correlation: float, like: torch.Tensor) -> torch.Tensor:
    """Cholesky factor L_C of the C × C matrix with 1 on the diagonal and ``correlation`` elsewhere."""
    matrix = torch.full((channels, channels), correlation, dtype=torch.float64)
    matrix.fill_diagonal_(1.0)
    return torch.linalg.cholesky(matrix).to(device=like.device, dtype=like.dtype)


def correlated_field(like: torch.Tensor, decay_length: float, channel_correlation: float,
                     generator: torch.Generator) -> torch.Tensor:
    """One unit-variance LRC field per example, shaped like ``like`` (N, C, H, W)."""
    n, channels, height, width = like.shape
    spatial = spatial_factor(height, width, float(decay_length), like.device, like.dtype)
    white = gaussian_noise(like, generator).view(n, channels, height * width)
    field = white @ spatial.T
    if channels > 1:
        field = torch.einsum("cd,ndp->ncp", channel_factor(channels, channel_correlation, like), field)
    return field.view_as(like)


def stationary_covariance_matrix(intra: torch.Tensor, inter: torch.Tensor, channels: int, height: int,
                                 width: int) -> torch.Tensor:
    """The (C·H·W)² matrix Σ[(c, p), (c′, q)] = intra[r] if c = c′ else inter[r], r = round(‖p − q‖₂)."""
    needed = max_radius(height, width)
    if len(intra) <= needed or len(inter) <= needed:
        raise ValueError(f"covariance functions reach r = {len(intra) - 1}, the {height}×{width} grid needs "
                         f"r = {needed}")
    functions = FunctionCovariance(beta=1.0)  # its kernel k[c, c′, Δ]; the running average is not used
    functions.intra, functions.inter = intra.double(), inter.double()
    kernel = functions.kernel(channels, height, width)  # indexed by displacement + (H − 1, W − 1)
    dy = torch.arange(height)[None, :] - torch.arange(height)[:, None] + height - 1
    dx = torch.arange(width)[None, :] - torch.arange(width)[:, None] + width - 1
    matrix = kernel[:, :, dy[:, None, :, None], dx[None, :, None, :]]  # (C, C, H, W, H, W)
    return matrix.permute(0, 2, 3, 1, 4, 5).reshape(channels * height * width, channels * height * width)


class StationaryCovariance:
    """Gaussian fields over C×H×W images whose covariance is given by functions of the rounded pixel
    distance r, the form of SGR's covariance function (§3.3, eq. 16): intra[r] within a channel,
    inter[r] across channels.

    Chosen where the paper is silent: an isotropic average of a covariance need not be positive
    semi-definite, so Σ is replaced by its nearest positive semi-definite matrix (negative
    eigenvalues set to 0) and then rescaled to unit variance per feature, so that σ keeps its meaning
    of a per-feature standard deviation. ``factor`` L (float64, D × D) has L·Lᵀ = that matrix.
    """

    def __init__(self, intra: torch.Tensor, inter: torch.Tensor, shape: tuple[int, int, int]):
        self.shape = tuple(int(size) for size in shape)
        matrix = stationary_covariance_matrix(intra, inter, *self.shape)
        values, vectors = torch.linalg.eigh(matrix)
        factor = vectors * values.clamp_min(0).sqrt()
        variance = factor.pow(2).sum(1)
        if not bool((variance > 0).all()):
            raise ValueError("the covariance functions give some feature no variance: intra[0] must be positive")
        self.factor = factor / variance.sqrt()[:, None]
        self._cast: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def field(self, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One unit-variance field per example, shaped like ``like`` (N, C, H, W)."""
        if tuple(like.shape[1:]) != self.shape:
            raise ValueError(f"the covariance is for {self.shape} images, got {tuple(like.shape[1:])}")
        key = (like.device, like.dtype)
        if key not in self._cast:
            self._cast[key] = self.factor.T.to(device=like.device, dtype=like.dtype)
        return (gaussian_noise(like, generator).flatten(1) @ self._cast[key]).view_as(like)


def _lrc_field(covariance: str | StationaryCovariance, decay_length: float | None,
               channel_correlation: float) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The unit-variance field sampler of an ``lrc`` call, its settings checked."""
    if isinstance(covariance, StationaryCovariance):
        if decay_length is not None:
            raise ConfigError("attack.decay_length", "applies to the exponential covariance only")
        return covariance.field
    if covariance == "data":
        raise ConfigError("attack.covariance", "'data' is the training images' covariance: the attack stage "
                          "supplies it from the prepared data; a direct call passes a StationaryCovariance")
    if covariance != "exponential":
        raise ConfigError("attack.covariance", f"unknown covariance {covariance!r}", LRC_COVARIANCES)
    if decay_length is None:
        raise ConfigError("attack.decay_length", "required by the exponential covariance")
    decay_length = check_non_negative(decay_length, "decay_length")
    return lambda like, generator: correlated_field(like, decay_length, channel_correlation, generator)


@ATTACKS.register("lrc")
def lrc(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    sigma: float,
    decay_length: float | None = None,
    covariance: str | StationaryCovariance = "exponential",
    draws: int = LRC_DRAWS,
    channel_correlation: float = LRC_CHANNEL_CORRELATION,
    eps: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return the worst of ``draws`` inputs clip(x + σ·ξ) per example, ξ an LRC field, detached.

    ``sigma`` is the per-feature standard deviation (the paper's attack strength); ``covariance``
    "exponential" (with ``decay_length`` ζ in pixels and ``channel_correlation`` ρ in [0, 1)) or a
    ``StationaryCovariance`` (what ``covariance: data`` in params becomes); ``eps`` an optional L∞
    clip of σ·ξ. ``generator`` (required) is the only source of randomness.
    """
    sigma = check_positive(sigma, "sigma")
    channel_correlation = check_fraction(channel_correlation, "channel_correlation")
    field = _lrc_field(covariance, decay_length, channel_correlation)
    draws = check_positive_int(draws, "draws")
    if eps is not None:
        eps = check_eps(eps)
    check_inputs(x, y)
    if x.dim() != 4:
        raise ValueError(f"lrc needs NCHW images, got input of shape {tuple(x.shape)}")
    generator = require_generator(generator, "lrc")
    x = x.detach()

    def noise() -> torch.Tensor:
        delta = sigma * field(x, generator)
        return delta if eps is None else project_linf(delta, eps)

    return worst_of_draws(model, x, y, draws, noise)
