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
"""

from __future__ import annotations

import torch
from torch import nn

from robust.jacobian import jacobian_from_logits


def jacobian_norms(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example ‖J‖_F of the logits and of the softmax outputs at ``x``, as CPU tensors (B,)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        jacobian = jacobian_from_logits(logits, x).flatten(2).detach()  # (B, K, D)
    probs = logits.detach().softmax(1)
    chain = torch.diag_embed(probs) - probs.unsqueeze(2) * probs.unsqueeze(1)  # ∂p/∂z, (B, K, K)
    return {
        "jacobian_fro": torch.linalg.vector_norm(jacobian, dim=(1, 2)).cpu(),
        "jacobian_fro_softmax": torch.linalg.vector_norm(chain @ jacobian, dim=(1, 2)).cpu(),
    }
