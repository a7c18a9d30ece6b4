"""Second moments of adversarial perturbations for structured gradient regularization.

Roth, Lucchi, Nowozin & Hofmann, "Adversarially Robust Training through Structured Gradient
Regularization", arXiv 1805.08736, §3.3. Two representations of Σ = E[ξξᵀ] (raw second
moments, not centred: eq. 15 and footnote 4), both kept as a running exponentially weighted
average over batches, eq. 14: Σ_t = (1 − β)·Σ_{t−1} + β·Σ̂(batch).

- ``MatrixCovariance``: the full D×D matrix Σ̂ = (1/m) Σ_i ξ_i ξ_iᵀ, D = C·H·W (eq. 15); for
  MNIST-size inputs.
- ``FunctionCovariance``: the covariance *function* of pixel displacement (eq. 16, Fig. 2):
  Σ[(c, p), (c′, q)] ≈ f_intra(r) if c = c′ else f_inter(r), with r = round(‖p − q‖₂) the
  rounded Euclidean displacement. Each f is an array indexed by integer r, estimated as the
  average of the products ξ[c, p]·ξ[c′, q] over every pair at that distance (all examples,
  channel pairs and positions weigh the same): the stationary, isotropic approximation of the
  paper. The products at every displacement come from FFT cross-correlations, and Σg is one
  convolution of g with a (C, C, 2H−1, 2W−1) kernel (by FFT), so no D×D tensor is ever built.

Chosen where the text is silent: the EMA starts from the first batch estimate (Σ_0 is not
given); the inter-channel function is zero for one-channel inputs. The isotropic average of a
positive semi-definite matrix need not be positive semi-definite; the paper does not address
this and nothing here corrects it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def ema(previous: torch.Tensor | None, estimate: torch.Tensor, beta: float) -> torch.Tensor:
    """Eq. 14: (1 − β)·previous + β·estimate; the first estimate stands alone."""
    if previous is None:
        return estimate.clone()
    # a resumed run's state is loaded on the CPU; the estimate is on the batch's device
    return (1 - beta) * previous.to(estimate.device) + beta * estimate


class MatrixCovariance:
    """Full D×D running second-moment matrix."""

    def __init__(self, beta: float):
        self.beta = beta
        self.matrix: torch.Tensor | None = None

    @staticmethod
    def batch_estimate(xi: torch.Tensor) -> torch.Tensor:
        flat = xi.detach().flatten(1)
        return flat.T @ flat / len(flat)

    def update(self, xi: torch.Tensor) -> None:
        self.matrix = ema(self.matrix, self.batch_estimate(xi), self.beta)

    def average_diagonal(self) -> torch.Tensor:
        return self.matrix.diagonal().mean()

    def apply(self, g: torch.Tensor) -> torch.Tensor:
        """Σg per example, same shape as g."""
        return (g.flatten(1) @ self.matrix.to(g.device)).view_as(g)  # Σ is symmetric

    def state_dict(self) -> dict[str, Any]:
        return {"matrix": self.matrix}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.matrix = state["matrix"]


def displacement_radius(height: int, width: int, *, centred: bool) -> torch.Tensor:
    """round(‖Δ‖₂) on a (2H−1, 2W−1) grid of displacements Δ = (dy, dx).

    ``centred``: Δ = index − (H−1, W−1), the layout of a convolution kernel; otherwise FFT
    layout, where negative displacements wrap to the end of each axis.
    """
    dy, dx = _displacements(height, width, centred=centred)
    return torch.sqrt(dy.double() ** 2 + dx.double() ** 2).round().long()


def _displacements(height: int, width: int, *, centred: bool) -> tuple[torch.Tensor, torch.Tensor]:
    def axis(n: int) -> torch.Tensor:
        index = torch.arange(2 * n - 1)
        return index - (n - 1) if centred else torch.where(index < n, index, index - (2 * n - 1))

    return torch.meshgrid(axis(height), axis(width), indexing="ij")


def max_radius(height: int, width: int) -> int:
    return round(((height - 1) ** 2 + (width - 1) ** 2) ** 0.5)


class FunctionCovariance:
    """Intra- and inter-channel covariance functions of the rounded pixel distance."""

    def __init__(self, beta: float):
        self.beta = beta
        self.intra: torch.Tensor | None = None  # f_intra[r], r = 0 … max_radius
        self.inter: torch.Tensor | None = None

    @staticmethod
    def batch_estimate(xi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(f_intra, f_inter): the mean product over all pairs at each rounded distance."""
        m, channels, height, width = xi.shape
        size = (2 * height - 1, 2 * width - 1)  # zero padding: linear, not circular, correlation
        spectra = torch.fft.rfft2(xi.detach(), s=size)
        # Σ_i Σ_p ξ[c, p]·ξ[c′, p + Δ] summed over c = c′, and over all (c, c′)
        same = torch.fft.irfft2(spectra.abs().pow(2).sum((0, 1)), s=size)
        every = torch.fft.irfft2(spectra.sum(1).abs().pow(2).sum(0), s=size)
        dy, dx = _displacements(height, width, centred=False)
        pairs = ((height - dy.abs()) * (width - dx.abs())).to(same)  # positions per displacement
        radius = displacement_radius(height, width, centred=False).flatten().to(same.device)
        bins = max_radius(height, width) + 1

        def binned(values: torch.Tensor) -> torch.Tensor:
            return values.new_zeros(bins).index_add_(0, radius, values.flatten())

        count = binned(pairs)
        intra = binned(same) / (m * channels * count)
        inter_pairs = m * channels * (channels - 1) * count
        inter = binned(every - same) / inter_pairs if channels > 1 else torch.zeros_like(intra)
        return intra, inter

    def update(self, xi: torch.Tensor) -> None:
        intra, inter = self.batch_estimate(xi)
        self.intra = ema(self.intra, intra, self.beta)
        self.inter = ema(self.inter, inter, self.beta)

    def average_diagonal(self) -> torch.Tensor:
        return self.intra[0]

    def kernel(self, channels: int, height: int, width: int, *, centred: bool = True) -> torch.Tensor:
        """(C, C, 2H−1, 2W−1) kernel k[c, c′, Δ] = f(round‖Δ‖₂), intra on the channel diagonal.

        ``centred``: Σg = conv2d(g, kernel, padding=(H−1, W−1)); otherwise FFT layout.
        """
        radius = displacement_radius(height, width, centred=centred).to(self.intra.device)
        intra, inter = self.intra[radius], self.inter[radius]
        eye = torch.eye(channels, dtype=intra.dtype, device=intra.device)[:, :, None, None]
        return inter + (intra - inter) * eye

    def apply(self, g: torch.Tensor) -> torch.Tensor:
        """Σg per example, same shape as g: a convolution with the kernel, computed by FFT.

        On the (2H−1, 2W−1) grid every displacement within the image has its own index, so the
        circular convolution is exact on the image; the kernel is symmetric (it depends on |Δ|
        only), so convolution and correlation agree.
        """
        _, channels, height, width = g.shape
        size = (2 * height - 1, 2 * width - 1)
        kernel = torch.fft.rfft2(self.kernel(channels, height, width, centred=False).to(g), s=size)
        spectra = torch.fft.rfft2(g, s=size)
        product = torch.einsum("bjuv,ijuv->biuv", spectra, kernel)
        return torch.fft.irfft2(product, s=size)[..., :height, :width]

    def state_dict(self) -> dict[str, Any]:
        return {"intra": self.intra, "inter": self.inter}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.intra, self.inter = state["intra"], state["inter"]


COVARIANCES = {"matrix": MatrixCovariance, "function": FunctionCovariance}


def normalize_per_example(xi: torch.Tensor) -> torch.Tensor:
    """ξ_i scaled to a mean square of 1 per example; an all-zero ξ_i stays zero."""
    rms = xi.flatten(1).pow(2).mean(1).sqrt()
    scale = torch.where(rms > 0, 1 / rms.clamp_min(torch.finfo(xi.dtype).tiny), torch.zeros_like(rms))
    return xi * scale.view(-1, *[1] * (xi.dim() - 1))


class DataVariance:
    """Average diagonal of the data covariance (mean per-feature variance), over all batches seen."""

    def __init__(self):
        self.count = 0
        self.total: torch.Tensor | None = None  # Σ x, per feature, float64
        self.total_sq: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> None:
        flat = x.detach().flatten(1).double()
        self.count += len(flat)
        total, total_sq = flat.sum(0), flat.pow(2).sum(0)
        self.total = total if self.total is None else self.total.to(total.device) + total
        self.total_sq = total_sq if self.total_sq is None else self.total_sq.to(total.device) + total_sq

    def value(self) -> float:
        mean = self.total / self.count
        return float((self.total_sq / self.count - mean.pow(2)).mean())

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "total": self.total, "total_sq": self.total_sq}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.count, self.total, self.total_sq = state["count"], state["total"], state["total_sq"]
