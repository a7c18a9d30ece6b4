"""Jacobian regularization: Jakubovitz & Giryes, "Improving DNN Robustness to Adversarial
Attacks using Jacobian Regularization", ECCV 2018, arXiv 1803.08680, eq. 4.

Loss = cross-entropy + λ·R, where R is built from ‖J(x_i)‖_F, J the Jacobian of the logits
(pre-softmax, eq. 2) with respect to the input. J is built with ``create_graph=True`` so the
loss backpropagates to the parameters (double backpropagation). Params ``reduction``:

- ``eq4`` (default): mean CE + (λ/N)·sqrt(Σ_i ‖J(x_i)‖²_F) — the paper's eq. 4 (summed CE +
  λ·sqrt of the batch's summed squared norms) divided by the batch size N, so the minimiser is
  eq. 4's exactly. The penalty per example then scales like λ·rms‖J‖/√N: λ is tied to the
  batch size (paper: N = 500, λ = 0.1 on MNIST; N = 128, λ = 0.5 on CIFAR-10).
- ``mean``: mean CE + λ·mean_i ‖J(x_i)‖_F — independent of the batch size.
- ``first_example``: mean CE + λ·‖J(x_1)‖_F — the official code's behaviour (it differentiates
  only the first example's logits; other examples get no Jacobian gradient).

Faithful: logits Jacobian; exact with all K rows (one backward pass per class, as the official
code's K ``tf.gradients`` calls); dropout stays on during the step (the trainer's train mode),
as in the official post-processing. Added: ``projections`` = n estimates ‖J‖²_F with n random
projections (Hoffman et al. 2019, arXiv 1908.02729), cheaper for large K. The square root is
taken of max(‖J‖², 1e-12) so an all-zero Jacobian gives a zero gradient, not NaN.

``layer`` (Appendix C/D) chooses whose Jacobian is penalised: ``L`` (default) the logits, as in
eq. 4; ``L-1`` the input of the last fully connected layer, z^(L−1) (M rows: 1024 on MNIST);
``L-2`` the input of the one before it (3136 rows on MNIST). With M ≫ K rows the exact
penalty costs M double-backward passes per batch, which is why the paper cut the batch to 50
for L − 1 (a study setting) and why ``projections`` exists. The weights after the layer may be
fixed to orthonormal columns: a property of the network (``fixed_orthonormal`` of its base,
``robust.models.head``), not of the penalty.

Memory: the double-backward graphs of all K rows (or n projections) are held until the
backward pass, about K·B times a per-example activation's worth. ``chunk_size`` bounds how many
rows are held at once (``robust.jacobian.jacobian_penalty``: same value and parameter
gradients, more passes); null chooses it from ``robust.jacobian.DEFAULT_MEMORY_BUDGET`` using
the graph sizes measured on the first batch of each shape. A chunk covering every row is the
plain computation, so the default changes nothing where the budget suffices.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from robust.defenses.base import KEY, Defense, is_number, register_defense
from robust.errors import ConfigError
from robust.jacobian import SavedTensorBytes, jacobian_penalty, measured_chunk_size
from robust.models.head import layer_input

_TINY = 1e-12


def _sqrt(sq: torch.Tensor) -> torch.Tensor:
    return sq.clamp_min(_TINY).sqrt()


def _eq4(sq: torch.Tensor) -> torch.Tensor:
    return _sqrt(sq.sum()) / len(sq)


def _mean(sq: torch.Tensor) -> torch.Tensor:
    return _sqrt(sq).mean()


def _first_example(sq: torch.Tensor) -> torch.Tensor:
    return _sqrt(sq[0])


# reduction name → R(per-example ‖J‖²_F); the loss is mean CE + λ·R
REDUCTIONS = {"eq4": _eq4, "mean": _mean, "first_example": _first_example}
# layer name → how many linear layers before the logits its output is taken (0: the logits)
LAYERS = {"L": 0, "L-1": 1, "L-2": 2}


@register_defense("jacobian")
class JacobianRegularization(Defense):
    """Params: ``lambda`` (→ argument ``lam``, ≥ 0, required), ``reduction`` (eq4 | mean |
    first_example), ``layer`` (L | L-1 | L-2), ``projections`` (null = exact, or a positive
    int), ``chunk_size`` (null = from the memory budget, or a positive int: rows held at once),
    ``adversarial`` (optional)."""

    example_params = {"lambda": 0.1}
    penalizes_originals = True

    def __init__(
        self,
        *,
        lam: float,
        reduction: str = "eq4",
        layer: str = "L",
        projections: int | None = None,
        chunk_size: int | None = None,
        adversarial: dict | None = None,
    ):
        super().__init__(adversarial=adversarial)
        if not is_number(lam) or lam < 0:
            raise ConfigError(f"{KEY}.lambda", f"must be a number >= 0, got {lam!r}")
        if reduction not in REDUCTIONS:
            raise ConfigError(f"{KEY}.reduction", f"got {reduction!r}", REDUCTIONS)
        if layer not in LAYERS:
            raise ConfigError(f"{KEY}.layer", f"got {layer!r}", LAYERS)
        if projections is not None and not _positive_int(projections):
            raise ConfigError(f"{KEY}.projections", f"must be null (exact) or a positive integer, got {projections!r}")
        if chunk_size is not None and not _positive_int(chunk_size):
            problem = f"must be null (chosen from the memory budget) or a positive integer, got {chunk_size!r}"
            raise ConfigError(f"{KEY}.chunk_size", problem)
        self.lam = float(lam)
        self.reduction = reduction
        self.layer = layer
        self.projections = projections
        self.chunk_size = chunk_size
        # batch shape → chunk size chosen from the budget (chunk_size null)
        self._chosen_chunks: dict[torch.Size, int] = {}

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        # one forward pass serves the CE and the Jacobian, so both see the same dropout mask
        x = x.detach().requires_grad_(True)
        params = [p for p in model.parameters() if p.requires_grad]
        # graph sizes depend on the batch's shape only: measured once per shape
        saved = None
        if self.chunk_size is None and x.shape not in self._chosen_chunks:
            saved = SavedTensorBytes(exclude=[*params, x])
        with saved or contextlib.nullcontext(), self._regularized_output(model) as hidden:
            logits = model(x)
        outputs = hidden[0] if hidden else logits
        ce = F.cross_entropy(logits, y)
        reduction = REDUCTIONS[self.reduction]
        penalty, sq = jacobian_penalty(
            outputs, x, lambda sq: reduction(self.unperturbed(sq)), params,
            chunk_size=self._chunk_size(outputs, x, saved), projections=self.projections, generator=self.generator,
        )
        loss = ce + self.lam * penalty
        norm = self.unperturbed(sq).clamp_min(0).sqrt().mean()
        return loss, {"ce": ce.item(), "jacobian_norm": norm.item(), "loss": loss.item()}

    def _regularized_output(self, model: nn.Module) -> contextlib.AbstractContextManager[list[torch.Tensor]]:
        """Inside it, a forward pass records the hidden layer's output (nothing for ``L``)."""
        depth = LAYERS[self.layer]
        if depth == 0:
            return contextlib.nullcontext([])
        return layer_input(model, depth, f"{KEY}.layer")

    def _chunk_size(self, logits: torch.Tensor, x: torch.Tensor, saved: SavedTensorBytes | None) -> int:
        if self.chunk_size is not None:
            return self.chunk_size
        if saved is not None:
            n_rows = logits.shape[1] if self.projections is None else self.projections
            self._chosen_chunks[x.shape] = measured_chunk_size(logits, x, saved, n_rows)
        return self._chosen_chunks[x.shape]


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
