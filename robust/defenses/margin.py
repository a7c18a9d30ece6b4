"""L2 margin maximisation: Matyasko & Chau, "Margin Maximization for Robust Classification using
Deep Learning", IJCNN 2017 — the "l2-norm Margin Maximization [19] (λ = 0.1)" baseline of
Matyasko & Chau 2018 (arXiv 1810.12576, §5).

The 2018 text states only that [19] "generalizes SVM objective to deep neural networks" and
"is equivalent to the robust optimization with the margin loss", and gives λ = 0.1; the
formula of [19] is not in the text available here. Implemented is the standard form of that
idea (the first-order geometric margin, as in Elsayed et al. 2018, arXiv 1803.05598, and
DeepFool's linearisation): the L2 distance of x to the linearised boundary between its label
y and class k,

    d_k(x) = (f_y(x) − f_k(x)) / (‖∇ₓ(f_y − f_k)(x)‖₂ + δ),

is pushed above a target margin γ at the closest boundary, SVM-style ("maximizes the minimum
margin"):

    loss = CE(f(x), y) + λ · mean_i max(0, γ − min_{k≠y} d_k(x_i)).

A misclassified example has a negative d and pays γ + |d|. The distance keeps its full graph
(double backpropagation through the gradient norm). Chosen: δ = 1e-6 (guards a zero
gradient); γ has no default since the text lost it (in input units, L2 over the whole image).
K − 1 extra backward passes per step.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robust.defenses.base import Defense, register_defense
from robust.defenses.critic import check_number

NORM_GUARD = 1e-6  # δ


def linearized_margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                       create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, d) with d (N, K − 1) the first-order L2 distances to the boundaries y|k, k ≠ y, in class order."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    n, n_classes = logits.shape
    others = torch.arange(n_classes - 1, device=y.device).expand(n, -1)
    others = others + (others >= y.unsqueeze(1))
    gaps = logits.gather(1, y.unsqueeze(1)) - logits.gather(1, others)  # f_y − f_k
    norms = []
    for j in range(n_classes - 1):
        # examples do not interact: the gradient of the summed gap holds every example's own
        (grad,) = torch.autograd.grad(gaps[:, j].sum(), x, create_graph=create_graph, retain_graph=True)
        norms.append(torch.linalg.vector_norm(grad.flatten(1), dim=1))
    return logits, gaps / (torch.stack(norms, dim=1) + NORM_GUARD)


@register_defense("margin")
class MarginMaximization(Defense):
    """Params: ``lambda`` (→ ``lam``, required; 0.1 in the paper), ``gamma`` (target L2 margin, required),
    ``adversarial`` (optional)."""

    example_params: ClassVar[dict[str, Any]] = {"lambda": 0.1, "gamma": 1.0}

    def __init__(self, *, lam: float, gamma: float, adversarial: dict | None = None):
        super().__init__(adversarial=adversarial)
        self.lam = check_number("lambda", lam)
        self.gamma = check_number("gamma", gamma, strict=True)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        logits, margins = linearized_margins(model, x, y)
        ce = F.cross_entropy(logits, y)
        closest = margins.min(dim=1).values
        hinge = (self.gamma - closest).clamp_min(0)
        loss = ce + self.lam * hinge.mean()
        return loss, {"ce": ce.item(), "margin": closest.detach().mean().item(),
                      "margin_hinge": hinge.detach().mean().item(), "loss": loss.item()}
