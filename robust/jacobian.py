"""Input Jacobian of the logits, J(x) = ∂z(x)/∂x, and its squared Frobenius norm.

Jakubovitz & Giryes, "Improving DNN Robustness to Adversarial Attacks using Jacobian
Regularization", arXiv 1803.08680, eqs. 2–3: z are the logits (pre-softmax), J(x_i) ∈ R^{K×D}
and ‖J(x_i)‖²_F = Σ_k ‖∇ₓ z_k(x_i)‖². Exact computation as in the official code: K
vector–Jacobian products, one backward pass per class row.

Random-projection estimate: Hoffman, Roberts & Yaida, "Robust Learning with Jacobian
Regularization", arXiv 1908.02729: with v uniform on the unit sphere of R^K,
E[‖vᵀJ‖²] = ‖J‖²_F / K, so K/n Σ_p ‖v_pᵀJ‖² is unbiased (one backward pass per projection;
each example draws its own v_p).

Batched, no per-example loop: one backward pass of Σ_i ⟨c_i, z(x_i)⟩ gives c_iᵀJ(x_i) for
every example at once. This is exact when examples do not interact (per-example layers,
dropout, BatchNorm in eval mode). With BatchNorm in train mode the batch statistics couple
examples and the rows become those of Σ_j ⟨c_j, z(x_j)⟩, an approximation that improves
with the batch size.

Speed, measured on CPU (2 threads, the TF-tutorial MNIST CNN, batch 128, create_graph=True,
including the double backward of Σ‖J‖²): one row per backward pass 1.07 s; rows batched with
``autograd.grad(is_grads_batched=True)`` 3.3 s (2 per pass) to 7.4 s (10 per pass);
``torch.func.vmap(jacrev)`` 3.2 s (same order with 1 thread). Hence the default of one row
per pass; ``chunk_size`` > 1 batches rows (more memory per pass; may pay off on an accelerator).

Memory of the training penalty (``jacobian_penalty``). With ``create_graph=True`` every row
keeps a double-backward graph until the loss is differentiated: memory ≈ B·(F + M·R), F the
bytes the forward pass saves per example, R those one row's graph saves (M rows: K, or the
number of projections). ``jacobian_penalty`` holds at most ``chunk_size`` row graphs at a
time (a value pass without graphs, then one gradient pass per chunk); value and parameter
gradients equal the unchunked ones up to rounding. Cost measured on CPU (1 thread, the MNIST
tutorial net, batch 64, K = 10): 0.98 s per step unchunked, 1.41 s in 2 chunks, 1.57 s in 10.
``choose_chunk_size`` picks the largest chunk with B·(F + D) + chunk·B·1.5·(R + D) within a
budget (D: the input, one row of J). F and R are counted with saved-tensor hooks on the real
batch (``SavedTensorBytes``), so they hold on any device. Peak process memory measured on CPU
(CIFAR stand-in below, batch 16, chunk 1, 25 and 100 rows) grew by 1.05× the counted bytes per
row, plus a constant ≈ 0.1 GiB; the 1.5 leaves room for allocator caching and cuDNN workspaces,
which were not measured on a GPU.

Default budget (``DEFAULT_MEMORY_BUDGET`` = 12 GiB): the paper's CIFAR-100 setting (K = 100,
batch 96) must fit a 16 GB GPU (≈ 14.9 GiB usable, minus the CUDA context and workspaces). The
paper's CIFAR net (§4, App. E: four blocks of two convolutions, max-pooling and dropout, then
two fully connected layers) lost its widths and kernel sizes; the estimate uses 3×3 convolutions
of 32/64/128/256 channels and a 512-unit layer, the common Keras CIFAR CNN. Counted in fp32:
F = 0.74 MB, R = 0.50 MB per example, so all 100 rows need ≈ 96·(0.74 + 100·0.51) MB ≈ 5.0 GB
(planned 7.4 GB with the 1.5 margin): one chunk, nothing changes. With channels doubled
(F = 1.48 MB, R = 0.99 MB) the chooser takes 88 rows per chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn


def _row_products(
    logits: torch.Tensor, x: torch.Tensor, cotangents: torch.Tensor, *, create_graph: bool, chunk_size: int
):
    """Yield (m, c_mᵀJ) blocks: rows of shape (B, m, *x.shape[1:]) for cotangents (M, B, K)."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    for start in range(0, len(cotangents), chunk_size):
        block = cotangents[start : start + chunk_size]
        # retain_graph: later rows, and the caller's loss on the same logits, reuse the graph;
        # materialize_grads: an input the logits ignore has a zero Jacobian, not an error
        kwargs = {"retain_graph": True, "create_graph": create_graph, "materialize_grads": True}
        if len(block) == 1:
            (rows,) = torch.autograd.grad(logits, x, block[0], **kwargs)
            yield rows.unsqueeze(1)
        else:
            (rows,) = torch.autograd.grad(logits, x, block, is_grads_batched=True, **kwargs)
            yield rows.transpose(0, 1)


def _one_hot_cotangents(logits: torch.Tensor) -> torch.Tensor:
    batch, n_classes = logits.shape
    eye = torch.eye(n_classes, dtype=logits.dtype, device=logits.device)
    return eye[:, None, :].expand(n_classes, batch, n_classes)


def jacobian_from_logits(
    logits: torch.Tensor, x: torch.Tensor, *, create_graph: bool = False, chunk_size: int = 1
) -> torch.Tensor:
    """J (B, K, *x.shape[1:]) of ``logits`` (B, K), computed from ``x`` (which requires grad)."""
    cotangents = _one_hot_cotangents(logits)
    return torch.cat(list(_row_products(logits, x, cotangents, create_graph=create_graph, chunk_size=chunk_size)), 1)


def _cotangents(
    logits: torch.Tensor, projections: int | None, generator: torch.Generator | None
) -> tuple[torch.Tensor, float]:
    """Cotangents (M, B, K) and the scale that turns Σ_m ‖c_mᵀJ‖² into ‖J‖²_F or its estimate."""
    if projections is None:
        return _one_hot_cotangents(logits), 1.0
    if isinstance(projections, bool) or not isinstance(projections, int) or projections < 1:
        raise ValueError(f"projections must be None or a positive integer, got {projections!r}")
    batch, n_classes = logits.shape
    if not isinstance(generator, torch.Generator):
        raise ValueError("random projections need an explicit seeded torch.Generator")  # noqa: TRY004 (API: ValueError)
    # drawn on the generator's device, then moved, so the draw does not depend on the model's device
    v = torch.randn((projections, batch, n_classes), generator=generator, device=generator.device, dtype=logits.dtype)
    return (v / v.norm(dim=2, keepdim=True)).to(logits.device), n_classes / projections


def _sum_of_squared_rows(
    logits: torch.Tensor, x: torch.Tensor, cotangents: torch.Tensor, *, create_graph: bool, chunk_size: int
) -> torch.Tensor:
    total = logits.new_zeros(len(logits))
    for rows in _row_products(logits, x, cotangents, create_graph=create_graph, chunk_size=chunk_size):
        total = total + rows.pow(2).flatten(1).sum(1)
    return total


def frobenius_sq_from_logits(
    logits: torch.Tensor,
    x: torch.Tensor,
    *,
    create_graph: bool = False,
    projections: int | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int = 1,
) -> torch.Tensor:
    """Per-example ‖J(x_i)‖²_F (B,): exact, or estimated from ``projections`` random directions.

    Lets a caller reuse one forward pass for its loss and the Jacobian (same dropout mask).
    """
    cotangents, scale = _cotangents(logits, projections, generator)
    return scale * _sum_of_squared_rows(logits, x, cotangents, create_graph=create_graph, chunk_size=chunk_size)


def input_jacobian(
    model: nn.Module, x: torch.Tensor, *, create_graph: bool = False, chunk_size: int = 1
) -> torch.Tensor:
    """Exact Jacobian of the logits w.r.t. the input, (B, K, *x.shape[1:]), for the whole batch.

    Uses the model in the mode the caller left it in. ``x`` is detached first: with
    ``create_graph=True`` gradients of a function of J reach the model's parameters, not
    the history of ``x``. ``chunk_size`` rows are computed per backward pass.
    """
    x = x.detach().requires_grad_(True)
    return jacobian_from_logits(model(x), x, create_graph=create_graph, chunk_size=chunk_size)


def jacobian_frobenius_sq(
    model: nn.Module,
    x: torch.Tensor,
    *,
    create_graph: bool = False,
    projections: int | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int = 1,
) -> torch.Tensor:
    """Per-example ‖J(x_i)‖²_F (B,): exact when ``projections`` is None, else the unbiased
    random-projection estimate with ``projections`` directions drawn from ``generator``."""
    x = x.detach().requires_grad_(True)
    return frobenius_sq_from_logits(
        model(x), x, create_graph=create_graph, projections=projections, generator=generator, chunk_size=chunk_size
    )


# ---- memory-bounded penalty -------------------------------------------------------------

# Memory the chunk chooser may plan for, in bytes; see the module docstring for the estimate.
DEFAULT_MEMORY_BUDGET = 12 * 2**30
# Peak bytes per row as a multiple of the bytes its graph saves: 1.05 measured on CPU, the
# rest a margin for allocator caching and kernel workspaces (module docstring).
_TEMPORARIES = 1.5


class SavedTensorBytes:
    """Context manager counting the bytes autograd saves for backward inside it.

    Each storage counts once; storages of ``exclude`` (parameters, the input) and any counted
    earlier are skipped, so re-entering measures only what a later pass adds.
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()):
        self._seen = {t.untyped_storage().data_ptr() for t in exclude}
        self.bytes = 0

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self._seen:
            self._seen.add(storage.data_ptr())
            self.bytes += storage.nbytes()
        return tensor

    def __enter__(self):
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def choose_chunk_size(
    n_rows: int,
    batch_size: int,
    input_numel: int,
    activation_bytes: float,
    *,
    row_bytes: float | None = None,
    budget_bytes: float = DEFAULT_MEMORY_BUDGET,
    element_size: int = 4,
) -> int:
    """Largest number of Jacobian rows (≤ ``n_rows``) whose double-backward graphs fit the budget.

    Per example: ``activation_bytes`` saved by the forward pass; ``row_bytes`` saved by one
    row's create_graph pass (default ``activation_bytes``: about one gradient per saved
    activation), plus the row itself (``input_numel`` elements). Peak ≈ batch·(forward + input
    + chunk·_TEMPORARIES·(row + input)). Raises ``ValueError`` if not even one row fits.
    """
    for name, value in {"n_rows": n_rows, "batch_size": batch_size, "input_numel": input_numel}.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    row_bytes = activation_bytes if row_bytes is None else row_bytes
    input_bytes = input_numel * element_size
    fixed = batch_size * (activation_bytes + input_bytes)
    per_row = batch_size * _TEMPORARIES * (row_bytes + input_bytes)
    fits = int((budget_bytes - fixed) // per_row)
    if fits < 1:
        raise ValueError(
            f"Jacobian penalty: one row of a batch of {batch_size} needs about {_gib(fixed + per_row)}, "
            f"the memory budget is {_gib(budget_bytes)}; lower the batch size, use random projections, "
            "or set the chunk size (defense.chunk_size) explicitly"
        )
    return min(n_rows, fits)


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.3g} GiB"


def measured_chunk_size(
    logits: torch.Tensor, x: torch.Tensor, saved: SavedTensorBytes, n_rows: int, *,
    budget_bytes: float | None = None,
) -> int:
    """``choose_chunk_size`` from this batch: ``saved`` counted the forward pass that gave
    ``logits``; one row's double-backward graph is built here, counted, and dropped.
    ``budget_bytes`` defaults to ``DEFAULT_MEMORY_BUDGET``, read at call time."""
    forward_bytes = saved.bytes
    with saved:
        next(_row_products(logits, x, _one_hot_cotangents(logits)[:1], create_graph=True, chunk_size=1))
    # nothing counted (hooks not reaching the backward's thread): fall back to the analytic default
    row_bytes = (saved.bytes - forward_bytes) or None
    batch = len(x)
    return choose_chunk_size(
        n_rows, batch, x[0].numel(), forward_bytes / batch,
        row_bytes=None if row_bytes is None else row_bytes / batch,
        budget_bytes=DEFAULT_MEMORY_BUDGET if budget_bytes is None else budget_bytes, element_size=x.element_size(),
    )


class _WithParameterGradients(torch.autograd.Function):
    """``value`` unchanged; backward hands ``grads`` (already computed) to ``params``."""

    @staticmethod
    def forward(ctx, value: torch.Tensor, grads: list[torch.Tensor | None], *params: torch.Tensor) -> torch.Tensor:
        ctx.grads = grads
        return value.clone()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return None, None, *(None if g is None else grad_output * g for g in ctx.grads)


def _weighted_gradient(
    logits: torch.Tensor, x: torch.Tensor, block: torch.Tensor, weight: torch.Tensor, params: Sequence[torch.Tensor]
) -> tuple[torch.Tensor | None, ...]:
    """∂/∂params Σ_i weight_i Σ_{c in block} ‖c_iᵀJ(x_i)‖²; the block's graphs die on return."""
    block_sq = _sum_of_squared_rows(logits, x, block, create_graph=True, chunk_size=1)
    # retain_graph keeps the forward graph, which later blocks and the caller's loss still use
    return torch.autograd.grad((weight * block_sq).sum(), params, retain_graph=True, allow_unused=True)


def jacobian_penalty(
    logits: torch.Tensor,
    x: torch.Tensor,
    reduce: Callable[[torch.Tensor], torch.Tensor],
    params: Sequence[torch.Tensor],
    *,
    chunk_size: int,
    projections: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(reduce(sq), sq.detach())`` with sq the per-example ‖J‖²_F of ``frobenius_sq_from_logits``,
    holding the double-backward graphs of at most ``chunk_size`` rows at a time.

    With ``chunk_size`` ≥ the number of rows the penalty carries its graph as usual. Otherwise
    its gradient reaches ``params`` only (not ``x`` or other leaves), is computed here, chunk
    by chunk, and is first-order only: a first pass without graphs gives sq and ∂reduce/∂sq,
    then each chunk's rows are rebuilt with graphs and differentiated at once.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    cotangents, scale = _cotangents(logits, projections, generator)
    if chunk_size >= len(cotangents):
        sq = scale * _sum_of_squared_rows(logits, x, cotangents, create_graph=True, chunk_size=1)
        return reduce(sq), sq.detach()
    sq = scale * _sum_of_squared_rows(logits, x, cotangents, create_graph=False, chunk_size=1)
    sq_leaf = sq.detach().requires_grad_(True)
    with torch.enable_grad():
        value = reduce(sq_leaf)
    (weight,) = torch.autograd.grad(value, sq_leaf)
    grads: list[torch.Tensor | None] = [None] * len(params)
    for start in range(0, len(cotangents), chunk_size):
        partial = _weighted_gradient(logits, x, cotangents[start : start + chunk_size], scale * weight, params)
        grads = [p if g is None else g if p is None else g + p for g, p in zip(grads, partial)]
    return _WithParameterGradients.apply(value.detach(), grads, *params), sq.detach()
