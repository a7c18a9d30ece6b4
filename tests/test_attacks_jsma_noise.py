"""Tests for JSMA (single-feature, targeted) and the SGR noise attacks (uniform, long-range correlated).

JSMA: box, increase-only, ‖δ‖∞ ≤ ε and ‖δ‖₀ ≤ steps, success towards the target non-decreasing in
steps, examples frozen once at their target, the first choice against the analytic saliency map of
an affine model, and the target rule. Noise: bounds, generator-only randomness, worst-of-k accuracy
non-increasing in k and equal to the all-draws-correct rate, the LRC covariance against
exp(−r/ζ) (and ρ·exp(−r/ζ) across channels), and ζ → 0 giving i.i.d. noise. The registry-wide
contract (shape, dtype, mode, grads) is in test_attacks.py.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from robust.attacks import DEFAULT_NORM, run_attack
from robust.attacks.base import uniform_noise as uniform_draw
from robust.attacks.jsma import choose_target, jsma, saliency_map
from robust.attacks.noise import (
    StationaryCovariance,
    correlated_field,
    exponential_covariance,
    lrc,
    spatial_factor,
    stationary_covariance_matrix,
    uniform_noise,
    worst_of_draws,
)
from robust.errors import ConfigError
from robust.perturbation_structure import data_profile

from prototypes import accuracy, affine_classifier, trained_classifier


@pytest.fixture(scope="module")
def trained():
    """A small CNN with BatchNorm fit to 4 noisy prototypes; 200 test points."""
    return trained_classifier(200, min_accuracy=0.85)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _predict(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


# ---------------------------------------------------------------- JSMA

@pytest.mark.parametrize("target", ["next", "random"])
@pytest.mark.parametrize("eps, steps", [(0.1, 3), (0.5, 15), (1.0, 15)])
def test_jsma_changes_at_most_steps_features_by_at_most_eps_upwards(trained, eps, steps, target):
    model, x, y = trained
    delta = jsma(model, x, y, eps=eps, steps=steps, target=target, generator=_gen()) - x
    assert (x + delta).min() >= 0 and (x + delta).max() <= 1
    assert delta.min() >= 0, "JSMA here only increases features"
    assert delta.max() <= eps + 1e-6
    assert (delta != 0).flatten(1).sum(1).max() <= steps
    assert DEFAULT_NORM["jsma"] == "linf"


def test_jsma_success_non_decreasing_in_steps_and_reaches_the_target(trained):
    model, x, y = trained
    goal = choose_target(y, 4, "random", _gen(3))
    success, acc = [], []
    for steps in (1, 2, 5, 10, 20, 40):
        x_adv = jsma(model, x, y, eps=0.2, steps=steps, generator=_gen(3))
        success.append((_predict(model, x_adv) == goal).float().mean().item())
        acc.append(accuracy(model, x_adv, y))
    assert all(a <= b for a, b in zip(success, success[1:])), success
    assert all(a >= b for a, b in zip(acc, acc[1:])), acc
    assert success[0] < 0.2 and success[-1] >= 0.8, success  # measured: 0.06 → 0.96


def test_jsma_stops_at_the_target_and_more_steps_extend_fewer(trained):
    model, x, y = trained
    short = jsma(model, x, y, eps=0.3, steps=4, target="next")
    long = jsma(model, x, y, eps=0.3, steps=12, target="next")
    done = _predict(model, short) == (y + 1) % 4
    assert 0 < done.sum() < len(y)
    assert torch.equal(long[done], short[done])
    # every feature changed in the short run is changed identically in the long one
    changed = short != x
    assert torch.equal(long[changed], short[changed])


def test_jsma_first_change_is_the_analytic_saliency_argmax_of_an_affine_model():
    model, linear, x, _, y = affine_classifier(torch.Generator().manual_seed(5), 5)
    x_adv = jsma(model, x, y, eps=0.05, steps=1, target="next")
    w, goal = linear.weight.detach(), (y + 1) % 5
    grad_target = w[goal]
    grad_other = w.sum(0, keepdim=True) - grad_target
    admissible = (grad_target > 0) & (grad_other < 0)
    expected = torch.where(admissible, grad_target * grad_other.abs(), torch.zeros_like(grad_target)).argmax(1)
    delta = (x_adv - x).flatten(1)
    assert ((delta != 0).sum(1) == 1).all()
    assert torch.equal(delta.argmax(1), expected)
    torch.testing.assert_close(delta.max(1).values, torch.full((len(y),), 0.05, dtype=delta.dtype))


def test_saliency_map_applies_both_sign_conditions_and_the_domain():
    grad_target = torch.tensor([[1.0, 2.0, -1.0, 3.0, 0.5]])
    grad_other = torch.tensor([[-1.0, 1.0, -2.0, -0.5, -4.0]])
    candidates = torch.tensor([[True, True, True, False, True]])
    expected = torch.tensor([[1.0, 0.0, 0.0, 0.0, 2.0]])
    assert torch.equal(saliency_map(grad_target, grad_other, candidates), expected)


def test_jsma_random_target_is_uniform_over_the_other_classes():
    y = torch.arange(6000) % 4
    goal = choose_target(y, 4, "random", _gen(1))
    assert (goal != y).all()
    assert torch.equal(goal, choose_target(y, 4, "random", _gen(1)))
    counts = torch.bincount((goal - y) % 4, minlength=4)[1:].float()
    assert (counts / counts.sum() - 1 / 3).abs().max() < 0.03, counts
    assert torch.equal(choose_target(y, 4, "next", None), (y + 1) % 4)
    with pytest.raises(ValueError, match="Generator"):
        choose_target(y, 4, "random", None)


# ---------------------------------------------------------------- noise attacks

NOISE = {
    "uniform_noise": lambda k: dict(eps=0.3, draws=k),
    "lrc": lambda k: dict(sigma=0.3, decay_length=4.0, draws=k),
}


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3])
def test_noise_attacks_respect_eps_and_the_box(trained, eps):
    model, x, y = trained
    for x_adv in (uniform_noise(model, x, y, eps=eps, draws=3, generator=_gen()),
                  lrc(model, x, y, sigma=0.2, decay_length=2.0, draws=3, eps=eps, generator=_gen())):
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        assert (x_adv - x).abs().max() <= eps + 1e-6


def test_lrc_without_eps_is_unclipped_gaussian_with_std_sigma(trained):
    model, _, _ = trained
    x = torch.full((400, 1, 8, 8), 0.5)  # mid-grey: the box never binds at σ = 0.05
    delta = lrc(model, x, torch.zeros(400, dtype=torch.long), sigma=0.05, decay_length=2.0, draws=1,
                generator=_gen()) - x
    assert abs(delta.std().item() / 0.05 - 1) < 0.05
    assert delta.abs().max() > 0.05 * 3  # no silent clip at σ


@pytest.mark.parametrize("name", sorted(NOISE))
def test_noise_attacks_use_only_the_generator(trained, name):
    model, x, y = trained
    rng_before = torch.get_rng_state()
    first = run_attack(name, model, x, y, generator=_gen(7), **NOISE[name](3))
    assert torch.equal(first, run_attack(name, model, x, y, generator=_gen(7), **NOISE[name](3)))
    assert not torch.equal(first, run_attack(name, model, x, y, generator=_gen(8), **NOISE[name](3)))
    assert torch.equal(torch.get_rng_state(), rng_before)
    with pytest.raises(ValueError, match="Generator"):
        run_attack(name, model, x, y, **NOISE[name](3))


@pytest.mark.parametrize("name", sorted(NOISE))
def test_worst_of_k_accuracy_non_increasing_in_k(trained, name):
    model, x, y = trained
    accs = [accuracy(model, run_attack(name, model, x, y, generator=_gen(), **NOISE[name](k)), y)
            for k in (1, 3, 10, 30)]
    assert all(a >= b for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] < 0.5 * accs[0], accs  # measured: uniform 0.75 → 0.05, lrc 0.74 → 0.02


def test_worst_of_k_counts_an_example_correct_only_if_every_draw_is(trained):
    model, x, y = trained
    x_adv = uniform_noise(model, x, y, eps=0.3, draws=5, generator=_gen(2))
    gen = _gen(2)  # replay the same draws in the same order
    all_correct = torch.ones_like(y, dtype=torch.bool)
    for _ in range(5):
        all_correct &= _predict(model, (x + uniform_draw(x, -0.3, 0.3, gen)).clamp(0, 1)) == y
    assert torch.equal(_predict(model, x_adv) == y, all_correct)
    assert 0 < all_correct.sum() < len(y)


class _LogitsByBrightness(nn.Module):
    """Fixed logits chosen by the input's mean: a misclassified draw can have the lower loss."""

    LOGITS = torch.tensor([[0.0, 0.1, -9.0, -9.0],  # mean < 0.4: wrong, CE ≈ 0.74
                           [1.0, 0.9, 0.9, 0.9],  # 0.4 ≤ mean < 0.6: right, CE ≈ 1.29
                           [0.0, 2.0, -9.0, -9.0]])  # mean ≥ 0.6: wrong, CE ≈ 2.13

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level = (x.flatten(1).mean(1) >= 0.4).long() + (x.flatten(1).mean(1) >= 0.6).long()
        return self.LOGITS[level]


@pytest.mark.parametrize("shifts, chosen", [((0.0, 0.2), 0.0), ((0.2, 0.0), 0.0), ((0.0, 0.2, 0.4), 0.4)])
def test_worst_draw_prefers_a_misclassified_draw_then_the_higher_loss(shifts, chosen):
    x, y = torch.full((1, 1, 2, 2), 0.3), torch.zeros(1, dtype=torch.long)
    draws = iter(shifts)
    x_adv = worst_of_draws(_LogitsByBrightness(), x, y, len(shifts), lambda: torch.full_like(x, next(draws)))
    torch.testing.assert_close(x_adv, x + chosen)


# ---------------------------------------------------------------- LRC covariance

def _empirical_covariance(field: torch.Tensor) -> torch.Tensor:
    flat = field.flatten(1).double()
    return flat.T @ flat / len(flat)  # the field has zero mean by construction


def _mean_covariance_at(cov: torch.Tensor, c1: int, c2: int, dr: int, dc: int) -> float:
    """Mean of cov[(c1, i, j), (c2, i + dr, j + dc)] over the pixels (i, j) that have such a neighbour."""
    _, height, width, _, _, _ = cov.shape
    rows, cols = torch.meshgrid(torch.arange(height - dr), torch.arange(width - dc), indexing="ij")
    return cov[c1, rows, cols, c2, rows + dr, cols + dc].mean().item()


def test_lrc_covariance_matches_exponential_decay_within_and_across_channels():
    decay, rho, n = 2.0, 0.5, 40000
    field = correlated_field(torch.empty(n, 3, 8, 8), decay, rho, _gen(4))
    cov = _empirical_covariance(field).view(3, 8, 8, 3, 8, 8)
    for dr, dc in [(0, 0), (0, 1), (1, 1), (0, 3), (2, 2)]:
        expected = math.exp(-math.hypot(dr, dc) / decay)
        for c1, c2 in [(0, 0), (1, 1), (2, 2), (0, 1), (2, 0)]:
            want = expected if c1 == c2 else rho * expected
            got = _mean_covariance_at(cov, c1, c2, dr, dc)
            assert abs(got - want) < 0.015, (c1, c2, dr, dc, got, want)
    analytic = torch.kron(torch.full((3, 3), rho).fill_diagonal_(1.0).double(), exponential_covariance(8, 8, decay))
    assert (cov.reshape(192, 192) - analytic).abs().max() < 0.06


def test_spatial_factor_reproduces_the_kernel_and_is_cached():
    kernel = exponential_covariance(3, 3, 2.0)
    assert kernel[0, 4].item() == pytest.approx(math.exp(-math.sqrt(2) / 2.0))  # (0, 0) to (1, 1)
    factor = spatial_factor(32, 32, 16.0, torch.device("cpu"), torch.float64)  # CIFAR size, longest ζ
    torch.testing.assert_close(factor @ factor.T, exponential_covariance(32, 32, 16.0), rtol=0, atol=1e-8)
    hits = spatial_factor.cache_info().hits
    assert spatial_factor(32, 32, 16.0, torch.device("cpu"), torch.float64) is factor
    assert spatial_factor.cache_info().hits == hits + 1


def test_lrc_decay_to_zero_gives_iid_noise():
    assert torch.equal(spatial_factor(8, 8, 0.0, torch.device("cpu"), torch.float64), torch.eye(64).double())
    near = spatial_factor(8, 8, 0.05, torch.device("cpu"), torch.float64)
    torch.testing.assert_close(near, torch.eye(64).double(), rtol=0, atol=1e-8)
    for channels, rho in [(1, 0.5), (3, 0.0)]:
        cov = _empirical_covariance(correlated_field(torch.empty(20000, channels, 8, 8), 0.05, rho, _gen(5)))
        std = cov.diagonal().sqrt()
        corr = cov / std.outer(std)
        assert (cov.diagonal() - 1).abs().max() < 0.06
        assert (corr - torch.eye(len(corr), dtype=corr.dtype)).abs().max() < 0.05


# ---------------------------------------------------------------- LRC from a covariance function (data covariance)

def test_stationary_covariance_matrix_reads_the_rounded_distance_and_the_channel():
    intra, inter = torch.arange(1.0, 7.0), -torch.arange(1.0, 7.0)  # f(r) = r + 1 and −(r + 1): every r tells apart
    matrix = stationary_covariance_matrix(intra, inter, 2, 3, 4).view(2, 3, 4, 2, 3, 4)
    for (c1, i, j), (c2, k, m) in [((0, 0, 0), (0, 0, 0)), ((0, 0, 0), (0, 2, 3)), ((1, 1, 2), (1, 0, 0)),
                                   ((0, 2, 1), (1, 0, 3)), ((1, 0, 0), (0, 1, 1))]:
        r = round(math.hypot(i - k, j - m))
        want = r + 1.0 if c1 == c2 else -(r + 1.0)
        assert matrix[c1, i, j, c2, k, m].item() == want, ((c1, i, j), (c2, k, m))
    flat = matrix.reshape(24, 24)
    assert torch.equal(flat, flat.T)
    with pytest.raises(ValueError, match="r = 4"):
        stationary_covariance_matrix(intra[:4], inter[:4], 1, 4, 4)  # the 4×4 grid reaches r = round(√18) = 4


def test_stationary_covariance_factor_reproduces_a_positive_semi_definite_sigma():
    # ½·I plus channel-structured constants: positive semi-definite with unit diagonal
    intra = torch.full((6,), 0.5).index_put_((torch.tensor(0),), torch.tensor(1.0))
    inter = torch.full((6,), 0.25)
    sigma = stationary_covariance_matrix(intra, inter, 2, 3, 4)
    assert torch.linalg.eigvalsh(sigma).min() > -1e-12
    factor = StationaryCovariance(intra, inter, (2, 3, 4)).factor
    torch.testing.assert_close(factor @ factor.T, sigma, rtol=0, atol=1e-10)


def test_stationary_covariance_clips_an_indefinite_sigma_to_unit_variance():
    intra = torch.tensor([1.0, -0.9, 0.0, 0.0, 0.0, 0.0])  # neighbours anti-correlated too strongly
    sigma = stationary_covariance_matrix(intra, torch.zeros(6), 1, 4, 4)
    assert torch.linalg.eigvalsh(sigma).min() < -0.5
    covariance = (lambda f: f @ f.T)(StationaryCovariance(intra, torch.zeros(6), (1, 4, 4)).factor)
    torch.testing.assert_close(covariance.diagonal(), torch.ones(16, dtype=torch.float64))
    assert torch.linalg.eigvalsh(covariance).min() > -1e-10


def test_fully_correlated_covariance_draws_one_value_per_image():
    covariance = StationaryCovariance(torch.ones(6), torch.ones(6), (2, 3, 4))
    field = covariance.field(torch.empty(500, 2, 3, 4), _gen(3))
    assert (field - field[:, :1, :1, :1]).abs().max() < 1e-5
    assert abs(field[:, 0, 0, 0].std().item() - 1) < 0.1
    with pytest.raises(ValueError, match=r"\(2, 3, 4\) images"):
        covariance.field(torch.empty(5, 1, 3, 4), _gen())


def _data_covariance(x: torch.Tensor) -> StationaryCovariance:
    profile = data_profile(x, batch_size=64)
    return StationaryCovariance(profile.intra, profile.inter, tuple(x.shape[1:]))


def test_lrc_with_a_data_covariance_is_a_seeded_worst_of_k_attack(trained):
    model, x, y = trained
    covariance = _data_covariance(x)
    first = lrc(model, x, y, sigma=0.2, covariance=covariance, draws=3, eps=0.1, generator=_gen(7))
    assert first.min() >= 0 and first.max() <= 1 and (first - x).abs().max() <= 0.1 + 1e-6
    assert torch.equal(first, lrc(model, x, y, sigma=0.2, covariance=covariance, draws=3, eps=0.1, generator=_gen(7)))
    accs = [accuracy(model, lrc(model, x, y, sigma=0.3, covariance=covariance, draws=k, generator=_gen()), y)
            for k in (1, 3, 10)]
    assert accs[0] >= accs[1] >= accs[2] and accs[2] < accs[0], accs


@pytest.mark.parametrize("settings, key", [
    (dict(sigma=0.1), "attack.decay_length"),
    (dict(sigma=0.1, covariance="data"), "attack.covariance"),
    (dict(sigma=0.1, covariance="gaussian", decay_length=2.0), "attack.covariance"),
])
def test_lrc_covariance_settings_raise_config_error_naming_the_key(trained, settings, key):
    model, x, y = trained
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        run_attack("lrc", model, x, y, generator=_gen(), **settings)


def test_a_data_covariance_takes_no_decay_length(trained):
    model, x, y = trained
    with pytest.raises(ConfigError, match="'attack.decay_length'"):
        lrc(model, x, y, sigma=0.1, decay_length=2.0, covariance=_data_covariance(x), generator=_gen())


# ---------------------------------------------------------------- settings

BAD_SETTINGS = [
    ("jsma", dict(eps=-0.1, steps=5), "attack.eps"),
    ("jsma", dict(eps=1.5, steps=5), "attack.eps"),
    ("jsma", dict(eps=0.5, steps=0), "attack.steps"),
    ("jsma", dict(eps=0.5), "attack.steps"),
    ("jsma", dict(eps=0.5, steps=5, target="least_likely"), "attack.target"),
    ("uniform_noise", dict(eps=1.2), "attack.eps"),
    ("uniform_noise", dict(eps=0.1, draws=0), "attack.draws"),
    ("uniform_noise", dict(), "attack.eps"),
    ("lrc", dict(sigma=0.0, decay_length=2.0), "attack.sigma"),
    ("lrc", dict(sigma=0.1, decay_length=-1.0), "attack.decay_length"),
    ("lrc", dict(sigma=0.1, decay_length=2.0, draws=2.5), "attack.draws"),
    ("lrc", dict(sigma=0.1, decay_length=2.0, channel_correlation=1.0), "attack.channel_correlation"),
    ("lrc", dict(sigma=0.1, decay_length=2.0, eps=-0.1), "attack.eps"),
    ("lrc", dict(decay_length=2.0), "attack.sigma"),
    ("lrc", dict(sigma=0.1, decay_length=2.0, decay=2.0), "attack.decay"),
]


@pytest.mark.parametrize("name, settings, key", BAD_SETTINGS)
def test_bad_settings_raise_config_error_naming_the_key(trained, name, settings, key):
    model, x, y = trained
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        run_attack(name, model, x, y, generator=_gen(), **settings)
