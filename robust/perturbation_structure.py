"""The covariance structure of adversarial perturbations against that of the data (SGR Fig. 2).

Roth, Lucchi, Nowozin & Hofmann 2018, §4.2 and Fig. 2: adversarial perturbations ξ = x_adv − x of
a clean model over the test set, their covariance function f(r) of the rounded pixel
displacement r (§3.3, eq. 16; ``robust.covariance.FunctionCovariance``), compared with the data's.
The paper's reading: the perturbations' f decays within a pixel or two, the data's much more
slowly. Decay length (footnote 5): the displacement over which f falls to 1/e of f(0).

- Perturbations: raw second moments, not centred, as the paper's Σ (footnote 4: the outer
  product of the mean perturbation is "safely negligible" beside them), over every point
  attacked, fooled or not ("for every data point in the test set").
- Data: the images minus their mean image, i.e. the covariance proper. Raw second moments of
  images are dominated by the mean image (every pair of pixels in the digit's stroke area
  correlates through it), which is not the structure the paper contrasts. Which images is the
  caller's choice (§4.3 names the CIFAR-10 *training* set's covariance as "shown in Fig. 2").
- Each function is normalised by its own f(0) (the mean square per pixel), so the curves
  share one axis; the inter-channel function by the intra-channel f(0). The decay length is
  read from the intra-channel function: the first r at which f(r)/f(0) ≤ 1/e, linearly
  interpolated between r − 1 and r; None if it never gets there.
- The estimate sums per batch (``FunctionCovariance.batch_estimate``, a mean per pair bin,
  weighted by the batch's size), in float64, so batching changes only the last bits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from robust.attacks import run_attack
from robust.covariance import FunctionCovariance

ONE_OVER_E = math.exp(-1)


@dataclass(frozen=True)
class CovarianceProfile:
    """A covariance function normalised to f(0) = 1, with what it was estimated from."""

    intra: torch.Tensor  # f_intra(r) / f_intra(0), r = 0 … max radius (CPU, float64)
    inter: torch.Tensor  # f_inter(r) / f_intra(0); zeros for one-channel inputs
    mean_square: float   # f_intra(0): the mean square per pixel the curves are divided by
    examples: int

    @property
    def decay_length(self) -> float | None:
        return decay_length(self.intra)


def decay_length(normalized: torch.Tensor) -> float | None:
    """The first r where ``normalized`` (f(r)/f(0), f(0) = 1) reaches 1/e, linear between samples."""
    below = (normalized <= ONE_OVER_E).nonzero()
    if len(below) == 0:
        return None
    r = int(below[0])
    if r == 0:
        return 0.0
    before, after = float(normalized[r - 1]), float(normalized[r])
    return r - 1 + (before - ONE_OVER_E) / (before - after)


def covariance_profile(batches: Iterable[torch.Tensor]) -> CovarianceProfile:
    """The (uncentred) covariance function of all examples of ``batches`` (N×C×H×W each), normalised."""
    total_intra = total_inter = None
    examples = 0
    for batch in batches:
        intra, inter = FunctionCovariance.batch_estimate(batch.detach().double())
        weight = len(batch)
        total_intra = weight * intra if total_intra is None else total_intra + weight * intra
        total_inter = weight * inter if total_inter is None else total_inter + weight * inter
        examples += weight
    if examples == 0:
        raise ValueError("no examples to estimate a covariance function from")
    mean_square = float(total_intra[0]) / examples
    if not mean_square > 0:
        raise ValueError("every value is zero: the covariance function has no scale to normalise by")
    scale = total_intra[0]
    return CovarianceProfile((total_intra / scale).cpu(), (total_inter / scale).cpu(), mean_square, examples)


def perturbations(model: nn.Module, x: torch.Tensor, y: torch.Tensor, name: str, settings: dict, *,
                  batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """ξ = x_adv − x of one attack, batch by batch, on the model's device."""
    device = next(model.parameters()).device
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        xb, yb = xb.to(device), yb.to(device)
        yield run_attack(name, model, xb, yb, generator=generator, **settings) - xb


def perturbation_profile(model: nn.Module, x: torch.Tensor, y: torch.Tensor, name: str, settings: dict, *,
                         batch_size: int, seed: int) -> CovarianceProfile:
    """The covariance function of one attack's perturbations of every point; its own seeded generator,
    so an attack's draws (PGD's random start) do not depend on which attacks ran before it."""
    model.eval()
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    return covariance_profile(perturbations(model, x, y, name, settings, batch_size=batch_size, generator=generator))


def data_profile(x: torch.Tensor, *, batch_size: int) -> CovarianceProfile:
    """The covariance function of the images centred by their mean image."""
    mean_image = x.double().mean(0)
    return covariance_profile(xb.double() - mean_image for xb in x.split(batch_size))
