"""Frobenius norms of the input Jacobian at evaluated points (Jakubovitz & Giryes 2018, Table 1).

Table 1 reports (1/N) Σᵢ ‖J(xᵢ)‖_F at test points and at their DeepFool examples. The text does
not say which outputs J differentiates there. The regularizer (eq. 4) and the official code use
the Jacobian of the logits, but the table's values (0.14 for the undefended net) are about 100×
smaller than the logits norms of the same net trained the same way, and of the order of the
Jacobian of the softmax outputs (shared/papers/IMPLEMENTATION_NOTES.md). Both are computed:

- ``jacobian_fro``: ‖∂z/∂x‖_F, z the logits — what the penalty regularises;
- ``jacobian_fro_softmax``: ‖∂p/∂x‖_F with p = softmax(z), i.e. ‖(diag p − p pᵀ) ∂z/∂x‖_F.

Both come from one exact logits Jacobian (K backward passes for the whole batch, no per-example
loop); the softmax one is the K×K chain-rule factor applied to it, per example.

``logits_and_jacobian`` hands back the logits of the forward pass the Jacobian was built on, so
that an evaluation needing predictions, these norms and a saliency map (a row of J) at the same
points runs the model forward once instead of once per quantity.
"""

from __future__ import annotations

import torch
from torch import nn

from robust.jacobian import jacobian_from_logits


def logits_and_jacobian(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, K) and the exact logits Jacobian (B, K, D) from one forward pass, both detached.

    The logits are those of the pass with graph: in eval mode they equal a no-grad forward's,
    so predictions need no pass of their own.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        jacobian = jacobian_from_logits(logits, x).flatten(2)
    return logits.detach(), jacobian.detach()


def norms_from_jacobian(logits: torch.Tensor, jacobian: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example ‖J‖_F of the logits and of the softmax outputs, as CPU tensors (B,).

    Takes the logits too: the softmax norm needs p = softmax(z) at the same points.
    """
    probs = logits.softmax(1)
    chain = torch.diag_embed(probs) - probs.unsqueeze(2) * probs.unsqueeze(1)  # ∂p/∂z, (B, K, K)
    return {
        "jacobian_fro": torch.linalg.vector_norm(jacobian, dim=(1, 2)).cpu(),
        "jacobian_fro_softmax": torch.linalg.vector_norm(chain @ jacobian, dim=(1, 2)).cpu(),
    }


def jacobian_norms(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example ‖J‖_F of the logits and of the softmax outputs at ``x``, as CPU tensors (B,)."""
    return norms_from_jacobian(*logits_and_jacobian(model, x))
