"""L2 margin maximisation: Matyasko & Chau, "Margin Maximization for Robust Classification using
Deep Learning", IJCNN 2017 — the "l2-norm Margin Maximization [19] (λ = 0.1)" baseline of
Matyasko & Chau 2018 (arXiv 1810.12576, §5).

``objective: sensitivity`` (default) is the objective of the authors' code
(github.com/aam-at/margin_maximization, ``mnist/margin.py`` and ``mnist/train_margin.py``):
the SVM objective "hinge + λ‖w‖²" with w the local linearisation of the network,

    loss = mean_i max(0, 1 + max_{k≠y} f_k(x_i) − f_y(x_i))
         + λ · mean_i ‖∇ₓ f_y(x_i) − ∇ₓ f_l(x_i)‖²₂,   l = argmax_k ‖∇ₓ f_k(x_i) − ∇ₓ f_y(x_i)‖²₂,

the multiclass hinge on the logits (Crammer–Singer, margin 1; it replaces cross-entropy) plus
the "margin sensitivity" of the class whose gradient differs most from the label's. The choice
of l carries no gradient; the penalty keeps its full graph (double backpropagation). The 2018
text gives λ = 0.1, the value of the authors' script. Cost per step: K backward passes to pick l
(no graph), one with a graph for the penalty.

``objective: distance`` is the other standard form of the idea (the first-order geometric
margin of Elsayed et al. 2018, arXiv 1803.05598, and DeepFool's linearisation), kept for
comparison: the L2 distance of x to the linearised boundary between y and class k,

    d_k(x) = (f_y(x) − f_k(x)) / (‖∇ₓ(f_y − f_k)(x)‖₂ + δ),

pushed above a target γ at the closest boundary:

    loss = CE(f(x), y) + λ · mean_i max(0, γ − min_{k≠y} d_k(x_i)).

A misclassified example has a negative d and pays γ + |d|. Chosen: δ = 1e-6 (guards a zero
gradient); γ (input units, L2 over the whole image) has no default. K − 1 backward passes with
a graph per step.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robust.attacks.cw import margin as logit_margin
from robust.defenses.base import KEY, Defense, register_defense
from robust.defenses.critic import check_number
from robust.errors import ConfigError
from robust.jacobian import jacobian_from_logits

NORM_GUARD = 1e-6  # δ
OBJECTIVES = ("sensitivity", "distance")


def _other_classes(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(N, K − 1) indices of the classes other than each label, in class order."""
    others = torch.arange(n_classes - 1, device=y.device).expand(len(y), -1)
    return others + (others >= y.unsqueeze(1))


def linearized_margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                       create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, d) with d (N, K − 1) the first-order L2 distances to the boundaries y|k, k ≠ y, in class order."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    others = _other_classes(y, logits.shape[1])
    gaps = logits.gather(1, y.unsqueeze(1)) - logits.gather(1, others)  # f_y − f_k
    norms = []
    for j in range(others.shape[1]):
        # examples do not interact: the gradient of the summed gap holds every example's own
        (grad,) = torch.autograd.grad(gaps[:, j].sum(), x, create_graph=create_graph, retain_graph=True)
        norms.append(torch.linalg.vector_norm(grad.flatten(1), dim=1))
    return logits, gaps / (torch.stack(norms, dim=1) + NORM_GUARD)


def multiclass_hinge(logits: torch.Tensor, y: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Per-example max(0, margin + max_{k≠y} f_k − f_y)."""
    return (margin + logit_margin(logits, y)).clamp_min(0)


def margin_sensitivity(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                       create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, s) with s (N,) = max_k ‖∇ₓ(f_k − f_y)(x)‖²₂, the maximising k chosen without gradient."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    with torch.no_grad():
        jac = jacobian_from_logits(logits, x).flatten(2)  # (N, K, D)
        own = jac[torch.arange(len(y), device=y.device), y]
        rival = (jac - own.unsqueeze(1)).pow(2).sum(2).argmax(dim=1)
    cotangent = F.one_hot(y, logits.shape[1]).to(logits.dtype) - F.one_hot(rival, logits.shape[1]).to(logits.dtype)
    (grad,) = torch.autograd.grad(logits, x, cotangent, create_graph=create_graph, retain_graph=True)
    return logits, grad.flatten(1).pow(2).sum(1)


@register_defense("margin")
class MarginMaximization(Defense):
    """Params: ``lambda`` (→ ``lam``, required; 0.1 in the paper), ``objective`` ("sensitivity", the
    authors' code, or "distance"), ``gamma`` (target L2 margin; "distance" only, required there),
    ``adversarial`` (optional)."""

    example_params: ClassVar[dict[str, Any]] = {"lambda": 0.1}

    def __init__(self, *, lam: float, objective: str = "sensitivity", gamma: float | None = None,
                 adversarial: dict | None = None):
        super().__init__(adversarial=adversarial)
        self.lam = check_number("lambda", lam)
        if objective not in OBJECTIVES:
            raise ConfigError(f"{KEY}.objective", f"unknown objective {objective!r}", OBJECTIVES)
        self.objective = objective
        if objective == "distance":
            if gamma is None:
                raise ConfigError(f"{KEY}.gamma", "required by objective 'distance' (target L2 margin > 0)")
            self.gamma = check_number("gamma", gamma, strict=True)
        elif gamma is not None:
            raise ConfigError(f"{KEY}.gamma", "only objective 'distance' has a target margin; remove it")

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        if self.objective == "sensitivity":
            return self._sensitivity_loss(model, x, y)
        return self._distance_loss(model, x, y)

    def _sensitivity_loss(self, model, x, y):
        logits, sensitivity = margin_sensitivity(model, x, y)
        hinge = multiclass_hinge(logits, y).mean()
        loss = hinge + self.lam * sensitivity.mean()
        return loss, {"hinge": hinge.item(), "sensitivity": sensitivity.detach().mean().item(), "loss": loss.item()}

    def _distance_loss(self, model, x, y):
        logits, margins = linearized_margins(model, x, y)
        ce = F.cross_entropy(logits, y)
        closest = margins.min(dim=1).values
        hinge = (self.gamma - closest).clamp_min(0)
        loss = ce + self.lam * hinge.mean()
        return loss, {"ce": ce.item(), "margin": closest.detach().mean().item(),
                      "margin_hinge": hinge.detach().mean().item(), "loss": loss.item()}
