"""Loss surfaces along the adversarial direction and a random orthogonal one: Chan, Tay, Ong & Fu,
"Jacobian Adversarially Regularized Networks for Robustness" (JARN), ICLR 2020, arXiv 1912.10185,
Figure 3 ("Loss surfaces of models along the adversarial perturbation and a random direction").

For a test point x with label y the surface is

    L(α, β) = CE(f(clip(x + α·d_adv + β·d_rand, 0, 1)), y)

on a square grid α, β ∈ [−ε, ε]. d_adv = sign(∇ₓCE(f(x), y)), the direction of FGSM (so
α·d_adv at α = ε is the FGSM perturbation of the study's ε); d_rand is a random Gaussian
vector with its component along d_adv removed (Gram–Schmidt) and scaled to ‖d_adv‖₂, so that
both axes move the image by the same L2 distance per unit. The text says no more than "a random
orthogonal direction": the Gaussian draw, the equal L2 norm, the symmetric grid and the clipping
to the image box are chosen (the clipping keeps every evaluated point an image, as the attacks'
are; the grid's centre is x itself, where L equals the clean loss).

The random vector is drawn by the caller, once per test point, so that every model of a figure
is cut along the same random draw (each orthogonalised against its own d_adv). The grid is
evaluated in batches of points built from flat indices, without a Python loop over examples or
grid points.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LossSurface:
    """CE on the grid: ``loss[b, i, j]`` at α = ``alphas[i]``, β = ``betas[j]`` for example b."""

    alphas: torch.Tensor
    betas: torch.Tensor
    loss: torch.Tensor
    adversarial: torch.Tensor  # d_adv per example, shaped like x
    random: torch.Tensor       # d_rand per example, shaped like x


def fgsm_direction(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sign(∇ₓCE(f(x), y)) per example (the model's eval-mode gradient; a zero gradient gives 0)."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return grad.sign()


def orthogonal_direction(direction: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """``raw`` minus its projection on ``direction``, scaled to ‖direction‖₂, per example.

    Raises ValueError where ``raw`` is (numerically) parallel to ``direction``: no orthogonal
    direction is left to draw.
    """
    d, r = direction.flatten(1).double(), raw.flatten(1).double()
    d_sq = (d * d).sum(1, keepdim=True)
    coefficient = torch.where(d_sq > 0, (d * r).sum(1, keepdim=True) / d_sq.clamp_min(1e-300), 0.0)
    orthogonal = r - coefficient * d
    norm = orthogonal.norm(dim=1, keepdim=True)
    if (norm <= 1e-12 * r.norm(dim=1, keepdim=True)).any():
        raise ValueError("a random vector is parallel to its adversarial direction; draw another")
    scaled = orthogonal / norm * d_sq.sqrt()
    return scaled.to(direction.dtype).view_as(direction)


def grid_values(eps: float, points: int) -> torch.Tensor:
    """``points`` evenly spaced values in [−eps, eps]; an odd count puts 0 (the clean point) on the grid."""
    if points < 2:
        raise ValueError(f"a grid needs at least 2 points per axis, got {points}")
    return torch.linspace(-eps, eps, points, dtype=torch.float64)


@torch.no_grad()
def _grid_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, adversarial: torch.Tensor,
               random: torch.Tensor, alphas: torch.Tensor, betas: torch.Tensor, batch_size: int) -> torch.Tensor:
    n, a, b = len(x), len(alphas), len(betas)
    shape = (-1, *[1] * (x.dim() - 1))
    alphas, betas = alphas.to(x.device, x.dtype), betas.to(x.device, x.dtype)
    losses = []
    for start in range(0, n * a * b, batch_size):
        flat = torch.arange(start, min(start + batch_size, n * a * b), device=x.device)
        example, i, j = flat // (a * b), (flat // b) % a, flat % b
        points = x[example] + alphas[i].view(shape) * adversarial[example] + betas[j].view(shape) * random[example]
        losses.append(F.cross_entropy(model(points.clamp(0.0, 1.0)), y[example], reduction="none"))
    return torch.cat(losses).view(n, a, b)


def loss_surface(model: nn.Module, x: torch.Tensor, y: torch.Tensor, raw_random: torch.Tensor, *, eps: float,
                 points: int, batch_size: int = 1024) -> LossSurface:
    """The CE surface of every example of ``x`` on a ``points`` × ``points`` grid over [−eps, eps]².

    ``raw_random`` (shaped like ``x``) is the random draw each example's second direction is
    made from (see the module docstring). The model is put in eval mode; ``x`` and ``y`` are on
    its device, and so is the result (the grid values stay on the CPU).
    """
    if raw_random.shape != x.shape:
        raise ValueError(f"raw_random must be shaped like x {tuple(x.shape)}, got {tuple(raw_random.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    model.eval()
    adversarial = fgsm_direction(model, x, y)
    random = orthogonal_direction(adversarial, raw_random.to(x.device, x.dtype))
    alphas = betas = grid_values(eps, points)
    loss = _grid_loss(model, x, y, adversarial, random, alphas, betas, batch_size)
    return LossSurface(alphas, betas, loss, adversarial, random)
