"""Memory-bounded Jacobian penalty: chunked and unchunked give the same value and parameter
gradients, chunks really hold fewer graphs at once, and the chunk chooser respects its budget."""

from __future__ import annotations

import weakref

import pytest
import torch
from torch import nn

from robust import jacobian
from robust.defenses import build_defense
from robust.defenses.jacobian import REDUCTIONS
from robust.errors import ConfigError
from robust.jacobian import (
    SavedTensorBytes,
    choose_chunk_size,
    frobenius_sq_from_logits,
    jacobian_penalty,
    measured_chunk_size,
)

K = 7
SHAPE = (2, 6, 6)


def net() -> nn.Module:
    # BatchNorm in train mode couples examples and dropout draws a mask: both must be shared by every chunk
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Tanh(), nn.Flatten(),
        nn.Linear(108, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, K),
    ).double().train()


def inputs(batch: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand((batch, *SHAPE), generator=g, dtype=torch.float64), torch.randint(0, K, (batch,), generator=g)


def penalty_and_grads(model, x, reduce, chunk_size, projections=None):
    """Penalty + a logits term (the caller's loss shares the forward graph) and its parameter gradients."""
    torch.manual_seed(2)  # same dropout mask for every call
    x = x.clone().requires_grad_(True)
    logits = model(x)
    params = list(model.parameters())
    generator = None if projections is None else torch.Generator().manual_seed(3)
    penalty, sq = jacobian_penalty(
        logits, x, reduce, params, chunk_size=chunk_size, projections=projections, generator=generator
    )
    grads = torch.autograd.grad(penalty + logits.pow(2).mean(), params, allow_unused=True)
    return penalty.detach(), sq, [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def plain_reference(model, x, reduce):
    torch.manual_seed(2)
    x = x.clone().requires_grad_(True)
    logits = model(x)
    sq = frobenius_sq_from_logits(logits, x, create_graph=True)
    params = list(model.parameters())
    grads = torch.autograd.grad(reduce(sq) + logits.pow(2).mean(), params, allow_unused=True)
    return reduce(sq).detach(), [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@pytest.mark.parametrize("reduction", sorted(REDUCTIONS))
def test_chunks_give_the_same_penalty_and_parameter_gradients(reduction):
    model, (x, _) = net(), inputs()
    reduce = REDUCTIONS[reduction]
    value, grads = plain_reference(model, x, reduce)
    assert value > 0 and all(torch.isfinite(g).all() for g in grads)
    for chunk_size in (1, 3, K):
        got_value, sq, got_grads = penalty_and_grads(model, x, reduce, chunk_size)
        assert not sq.requires_grad
        torch.testing.assert_close(got_value, value, rtol=1e-12, atol=0)
        for got, expected in zip(got_grads, grads):
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-13)
    # the weights before the Jacobian carry a penalty gradient, not only the logits term's
    assert grads[0].abs().sum() > 1e-3


@pytest.mark.parametrize("reduction", sorted(REDUCTIONS))
def test_chunks_match_when_the_penalty_skips_the_perturbed_examples(reduction):
    # the "& AT" rows reduce over the batch's original examples only (Defense.unperturbed)
    model, (x, _) = net(), inputs()
    reduce = lambda sq: REDUCTIONS[reduction](sq[2:])  # noqa: E731 - the defense's own shape
    value, grads = plain_reference(model, x, reduce)
    for chunk_size in (1, K):
        got_value, _, got_grads = penalty_and_grads(model, x, reduce, chunk_size)
        torch.testing.assert_close(got_value, value, rtol=1e-12, atol=0)
        for got, expected in zip(got_grads, grads):
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-13)


def test_chunks_of_random_projections_match():
    model, (x, _) = net(), inputs()
    reduce = REDUCTIONS["mean"]
    value, _, grads = penalty_and_grads(model, x, reduce, chunk_size=4, projections=4)
    for chunk_size in (1, 3):
        got_value, _, got_grads = penalty_and_grads(model, x, reduce, chunk_size, projections=4)
        torch.testing.assert_close(got_value, value, rtol=1e-12, atol=0)
        for got, expected in zip(got_grads, grads):
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-13)


class PeakSavedBytes:
    """Largest total size of tensors saved for backward that were alive at the same time."""

    def __init__(self):
        self.live = self.peak = 0

    def _pack(self, tensor):
        nbytes = tensor.numel() * tensor.element_size()
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        weakref.finalize(tensor, self._release, nbytes)
        return tensor

    def _release(self, nbytes):
        self.live -= nbytes

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)


def peak_saved(model, x, chunk_size) -> int:
    peak = PeakSavedBytes()
    with peak.hooks():
        x = x.clone().requires_grad_(True)
        logits = model(x)
        penalty, _ = jacobian_penalty(logits, x, REDUCTIONS["eq4"], list(model.parameters()), chunk_size=chunk_size)
        penalty.backward()
    return peak.peak


def test_smaller_chunks_hold_fewer_graphs_at_once():
    model, (x, _) = net(), inputs(batch=16)
    peaks = {c: peak_saved(model, x, c) for c in (1, 3, K)}
    # peak = forward graph + chunk × one row's graph: linear in the chunk size, so no two
    # chunks are ever alive together (chunk 3 runs blocks of 3, 3, 1)
    per_row = (peaks[3] - peaks[1]) / 2
    assert per_row > 0
    assert peaks[K] == pytest.approx(peaks[1] + (K - 1) * per_row, rel=0.02)
    assert peaks[K] > 3 * peaks[1]


def test_chooser_fits_the_budget_and_shrinks_with_it():
    sizes = {"n_rows": 100, "batch_size": 96, "input_numel": 3 * 32 * 32, "activation_bytes": 750e3}
    chunks = [choose_chunk_size(**sizes, budget_bytes=gib * 2**30) for gib in (0.3, 1, 4, 8, 64)]
    assert chunks == sorted(chunks) and chunks[0] < chunks[2] < chunks[-1]
    assert min(chunks) >= 1 and chunks[-1] == 100
    for gib, chunk in zip((0.3, 1, 4, 8), chunks):
        per_row = 96 * jacobian._TEMPORARIES * (750e3 + 3 * 32 * 32 * 4)
        fixed = 96 * (750e3 + 3 * 32 * 32 * 4)
        # the largest chunk that fits: one more row would not
        assert fixed + chunk * per_row <= gib * 2**30 < fixed + (chunk + 1) * per_row
    # a measured row size smaller than the activations allows a larger chunk
    default_rows = choose_chunk_size(**sizes, budget_bytes=2**30)
    assert choose_chunk_size(**sizes, row_bytes=300e3, budget_bytes=2**30) > default_rows


def test_impossible_budget_is_a_clear_error():
    with pytest.raises(ValueError, match=r"one row of a batch of 96 needs about .* GiB, the memory budget is"):
        choose_chunk_size(100, 96, 3072, 750e3, budget_bytes=2**20)
    with pytest.raises(ValueError, match="n_rows"):
        choose_chunk_size(0, 96, 3072, 750e3)


def test_measured_chunk_size_counts_real_graphs():
    model, (x, _) = net(), inputs()
    x = x.requires_grad_(True)
    saved = SavedTensorBytes(exclude=[*model.parameters(), x])
    with saved:
        logits = model(x)
    forward = saved.bytes
    # conv input + BatchNorm/activation outputs + the rest: more than the input itself
    assert forward > x.numel() * x.element_size()
    assert measured_chunk_size(logits, x, saved, K) == K
    assert saved.bytes > forward  # the probe row's graph was counted
    assert measured_chunk_size(logits, x, SavedTensorBytes(), K, budget_bytes=12 * forward) < K


def defense_step(defense, model, x, y):
    torch.manual_seed(2)
    loss, logs = defense.loss(model, x, y)
    params = list(model.parameters())
    return loss.detach(), logs, torch.autograd.grad(loss, params)


def test_defense_chunk_size_auto_and_explicit_agree(monkeypatch):
    model, (x, y) = net(), inputs()
    auto = build_defense({"name": "jacobian", "lambda": 0.5, "reduction": "mean"})
    loss, logs, grads = defense_step(auto, model, x, y)
    assert auto._chosen_chunks == {x.shape: K}
    explicit = build_defense({"name": "jacobian", "lambda": 0.5, "reduction": "mean", "chunk_size": 2})
    # for this batch the forward graph is ≈ 13 kB and one row ≈ 25 kB at the peak: room for two rows
    monkeypatch.setattr(jacobian, "DEFAULT_MEMORY_BUDGET", 80_000)
    small = build_defense({"name": "jacobian", "lambda": 0.5, "reduction": "mean"})
    for defense in (explicit, small):
        got_loss, got_logs, got_grads = defense_step(defense, model, x, y)
        torch.testing.assert_close(got_loss, loss, rtol=1e-12, atol=0)
        assert got_logs == pytest.approx(logs, rel=1e-12)
        for got, expected in zip(got_grads, grads):
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-13)
    assert 1 <= small._chosen_chunks[x.shape] < K


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "auto"])
def test_defense_rejects_bad_chunk_size(bad):
    with pytest.raises(ConfigError, match="defense.chunk_size"):
        build_defense({"name": "jacobian", "lambda": 0.1, "chunk_size": bad})
