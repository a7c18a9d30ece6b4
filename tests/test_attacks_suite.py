"""Tests for the extended attack suite: FGM, PGD-L2/L1, MIM, DeepFool-L∞, C&W-L2 and DDN.

Norm bounds and box for every bounded attack and norm, determinism, accuracy monotone in ε
and in steps on a fixed trained model, the exact L1 projection against a reference computed
per example, minimality of the minimal-perturbation attacks, and agreement with torchattacks
on the same model and batch. The registry-wide contract (shape, dtype, mode, grads) is in
test_attacks.py; the norm variants it cannot reach through SETTINGS are covered here.
"""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
import torchattacks
from torch import nn

from robust.attacks import ATTACKS, DEFAULT_NORM, MINIMAL_PERTURBATION, norm_of, run_attack
from robust.attacks.base import project_l1
from robust.attacks.cw import cw, margin
from robust.attacks.ddn import MIN_STEP, ddn, step_sizes
from robust.attacks.deepfool import STEP_SLACK, deepfool
from robust.attacks.fgm import fgm
from robust.attacks.mim import mim
from robust.attacks.pgd import DEFAULT_SPARSITY, NORMS, pgd, sparse_l1_step
from robust.errors import ConfigError

from prototypes import accuracy, affine_classifier, trained_classifier

ORDER = {"linf": math.inf, "l2": 2.0, "l1": 1.0}


@pytest.fixture(scope="module")
def trained():
    """A small CNN with BatchNorm fit to 4 noisy prototypes; 200 test points (0.5 points = 1 example)."""
    return trained_classifier(200, min_accuracy=0.85)


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1) == y


def _flipped(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return (model(x_adv).argmax(1) != y)[mask]


def _norms(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    return torch.linalg.vector_norm((x_adv - x).flatten(1), ord=ORDER[norm], dim=1)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# every attack/norm with an ε budget: settings as a function of ε, the norm, radii to check
BOUNDED = {
    "fgm": (lambda eps: dict(eps=eps), "l2", (0.05, 0.3, 3.0)),
    "pgd-l2": (lambda eps: dict(eps=eps, norm="l2", steps=5, step_size=eps / 2), "l2", (0.05, 0.3, 3.0)),
    "pgd-l1": (lambda eps: dict(eps=eps, norm="l1", steps=5, step_size=eps / 2), "l1", (0.2, 1.0, 20.0)),
    "mim": (lambda eps: dict(eps=eps, steps=5, step_size=eps / 3), "linf", (0.01, 0.1, 0.5)),
}
CASES = [(case, eps) for case, (_, _, radii) in BOUNDED.items() for eps in radii]


def _run(case: str, model, x, y, eps: float, generator=None, **overrides) -> torch.Tensor:
    settings, _, _ = BOUNDED[case]
    return run_attack(case.split("-")[0], model, x, y, generator=generator, **{**settings(eps), **overrides})


# ---------------------------------------------------------------- registry

def test_every_attack_has_a_default_norm_and_minimal_ones_are_marked():
    assert set(DEFAULT_NORM) == set(ATTACKS.names())
    assert {"cw", "ddn", "deepfool"} <= MINIMAL_PERTURBATION
    assert norm_of("pgd", {"norm": "l1"}) == "l1" and norm_of("fgm", {}) == "l2" and norm_of("mim", {}) == "linf"


# ---------------------------------------------------------------- norm ball, box, determinism

@pytest.mark.parametrize("case, eps", CASES)
def test_bounded_attacks_stay_in_the_ball_and_the_box(trained, case, eps):
    model, x, y = trained
    x_adv = _run(case, model, x, y, eps, generator=_gen())
    assert (_norms(x_adv, x, BOUNDED[case][1]) <= eps + 1e-5).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not torch.equal(x_adv, x)


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_pgd_random_start_is_seeded_by_the_generator_only(trained, norm):
    model, x, y = trained
    settings = dict(eps=0.5, norm=norm, steps=2, step_size=0.1)
    rng_before = torch.get_rng_state()
    first = pgd(model, x, y, **settings, generator=_gen(3))
    assert torch.equal(first, pgd(model, x, y, **settings, generator=_gen(3)))
    assert not torch.equal(first, pgd(model, x, y, **settings, generator=_gen(4)))
    assert torch.equal(torch.get_rng_state(), rng_before)


@pytest.mark.parametrize("norm, order", [("l2", 2.0), ("l1", 1.0)])
def test_pgd_random_start_is_uniform_in_the_ball(norm, order):
    # uniform in a D-ball: P(‖δ‖ ≤ r·ε) = r^D, so E‖δ‖ = ε·D/(D + 1) and the mean point is 0
    x = torch.full((4000, 1, 4, 4), 0.5)
    eps, dim = 0.3, 16
    delta = NORMS[norm].random_start(x, eps, _gen())
    radius = torch.linalg.vector_norm(delta.flatten(1), ord=order, dim=1)
    assert (radius <= eps + 1e-6).all()
    assert radius.mean().item() == pytest.approx(eps * dim / (dim + 1), rel=0.01)
    assert (radius / eps).pow(dim).mean().item() == pytest.approx(0.5, abs=0.03)  # r^D ~ U(0, 1)
    assert delta.mean(0).abs().max() < 0.01


@pytest.mark.parametrize("name, settings", [
    ("pgd", dict(eps=0.5, norm="l2", steps=3, step_size=0.2)),
    ("pgd", dict(eps=2.0, norm="l1", steps=3, step_size=0.5)),
    ("deepfool", dict(steps=10, norm="linf")),
])
def test_norm_variants_keep_the_contract(trained, name, settings):
    # the registry-wide contract of test_attacks.py runs each attack in its default norm only
    model, x, y = trained
    model = copy.deepcopy(model).double().train()  # train mode: BatchNorm makes the mode matter
    x = x.double()
    modes = [m.training for m in model.modules()]
    x_adv = run_attack(name, model, x, y, generator=_gen(), **settings)
    assert x_adv.dtype == torch.float64 and not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1 and not torch.equal(x_adv, x)
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------- accuracy monotone in ε and steps

@pytest.mark.parametrize("case", sorted(BOUNDED))
def test_accuracy_non_increasing_in_eps(trained, case):
    model, x, y = trained
    radii = {"l2": (0.05, 0.1, 0.2, 0.4), "l1": (0.25, 0.5, 1.0, 2.0), "linf": (0.01, 0.02, 0.04, 0.08)}
    norm = BOUNDED[case][1]
    overrides = dict(random_start=False) if case.startswith("pgd") else {}
    accs = [accuracy(model, x, y)]
    for eps in radii[norm]:
        accs.append(accuracy(model, _run(case, model, x, y, eps, **overrides), y))
    assert all(a >= b for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] < 0.5 * accs[0], f"{case} barely hurts the model: {accs}"


@pytest.mark.parametrize("case, eps, step_size", [
    ("pgd-l2", 0.2, 0.05), ("pgd-l1", 1.0, 0.25), ("mim", 0.03, 0.0075),
])
def test_accuracy_non_increasing_in_steps(trained, case, eps, step_size):
    model, x, y = trained
    overrides = dict(random_start=False) if case.startswith("pgd") else {}
    accs = [accuracy(model, _run(case, model, x, y, eps, steps=steps, step_size=step_size, **overrides), y)
            for steps in (1, 3, 10, 30)]
    assert all(a >= b for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] < accs[0]


# ---------------------------------------------------------------- L1 projection and step

def _duchi_reference(v: torch.Tensor, eps: float) -> torch.Tensor:
    """Duchi et al. 2008, Fig. 1, for one vector: sort |v| descending, find ρ, soft-threshold."""
    mag = v.abs()
    if mag.sum() <= eps:
        return v.clone()
    if eps == 0:  # the algorithm assumes a positive radius
        return torch.zeros_like(v)
    mu = mag.sort(descending=True).values
    cumsum = mu.cumsum(0)
    j = torch.arange(1, len(mu) + 1, dtype=v.dtype)
    rho = int((mu - (cumsum - eps) / j > 0).nonzero().max())
    theta = (cumsum[rho] - eps) / (rho + 1)
    return v.sign() * (mag - theta).clamp_min(0)


def _box_reference(v: torch.Tensor, eps: float, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Bisection on the KKT threshold θ for one vector: δ = clip(soft(v, θ), lower, upper)."""
    def at(theta: float) -> torch.Tensor:
        return (v.sign() * (v.abs() - theta).clamp_min(0)).clamp(lower, upper)

    if at(0.0).abs().sum() <= eps:
        return at(0.0)
    low, high = 0.0, v.abs().max().item()
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if at(mid).abs().sum() > eps else (low, mid)
    return at(high)


@pytest.mark.parametrize("dim", [1, 3, 64, 500])
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0, 7.0, 1e3])
def test_l1_projection_matches_per_example_references(dim, eps):
    gen = torch.Generator().manual_seed(dim)
    scale = torch.rand(16, 1, generator=gen, dtype=torch.float64)  # rows inside and outside the ball
    v = torch.randn(16, dim, generator=gen, dtype=torch.float64) * scale
    x = torch.rand(16, dim, generator=gen, dtype=torch.float64)
    ball = project_l1(v, eps)
    box = project_l1(v, eps, lower=-x, upper=1 - x)
    for i in range(len(v)):
        torch.testing.assert_close(ball[i], _duchi_reference(v[i], eps), rtol=0, atol=1e-10)
        torch.testing.assert_close(box[i], _box_reference(v[i], eps, -x[i], 1 - x[i]), rtol=0, atol=1e-10)
    outside = v.abs().sum(1) > eps
    # on the sphere when the point was outside, untouched when inside; never outside the box
    torch.testing.assert_close(ball.abs().sum(1)[outside], torch.full_like(v[:, 0], eps)[outside])
    torch.testing.assert_close(ball[~outside], v[~outside])
    assert (box.abs().sum(1) <= eps + 1e-9).all() and (box >= -x).all() and (box <= 1 - x).all()


def test_l1_projection_is_batched_over_image_shapes_and_float32():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(8, 3, 5, 5, generator=gen)
    out = project_l1(v, 2.0)
    assert out.shape == v.shape and out.dtype == torch.float32
    assert (out.flatten(1).abs().sum(1) <= 2.0 + 1e-5).all()
    torch.testing.assert_close(out[3].flatten(), _duchi_reference(v[3].flatten().double(), 2.0).float())


def test_sparse_l1_step_spends_the_step_on_the_top_quantile():
    gen = torch.Generator().manual_seed(0)
    grad = torch.randn(4, 1, 10, 10, generator=gen)
    x_adv = torch.full_like(grad, 0.5)
    x_adv[:, 0, 0, :] = 1.0  # the first row sits at the top of the box ...
    grad[:, 0, 0, :] = 10.0  # ... and has the largest gradient, pointing out of it
    step = sparse_l1_step(grad, 0.3, x_adv, DEFAULT_SPARSITY)
    flat, g = step.flatten(1), grad.flatten(1)
    torch.testing.assert_close(flat.abs().sum(1), torch.full((4,), 0.3))
    assert ((flat != 0).sum(1) == 1).all()  # 1 % of 100 coordinates
    assert (torch.sign(flat) == torch.sign(g))[flat != 0].all()
    assert not (step[:, 0, 0, :] > 0).any(), "a step pushed a saturated pixel past the box"
    unblocked = g.abs().masked_fill(((x_adv >= 1) & (grad > 0)).flatten(1), 0)
    assert torch.equal((flat != 0).nonzero()[:, 1], unblocked.argmax(1))
    wide = sparse_l1_step(grad, 0.3, x_adv, 0.9)
    assert ((wide.flatten(1) != 0).sum(1) == 10).all()


# ---------------------------------------------------------------- FGM, PGD-L2, MIM

def test_fgm_is_one_full_pgd_l2_step(trained):
    model, x, y = trained
    one_step = pgd(model, x, y, eps=0.3, norm="l2", steps=1, step_size=0.3, random_start=False)
    torch.testing.assert_close(fgm(model, x, y, eps=0.3), one_step, rtol=0, atol=1e-6)


def test_pgd_l2_robust_accuracy_matches_torchattacks(trained):
    # torchattacks adds 1e-10 to ‖g‖ of the batch-mean loss, which shortens the step of
    # confidently classified points (their ‖g‖ is ~1e-12 here); a negligible value gives
    # both attacks the same normalised step
    model, x, y = trained
    for eps in (0.1, 0.25, 0.5):
        ours = pgd(model, x, y, eps=eps, norm="l2", steps=10, step_size=eps / 4, random_start=False)
        theirs = torchattacks.PGDL2(model, eps=eps, alpha=eps / 4, steps=10, random_start=False,
                                    eps_for_division=1e-30)(x, y)
        assert abs(accuracy(model, ours, y) - accuracy(model, theirs, y)) <= 0.005
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_mim_robust_accuracy_matches_torchattacks(trained):
    model, x, y = trained
    for eps in (0.02, 0.05):
        ours = mim(model, x, y, eps=eps, steps=10, step_size=eps / 10, decay=1.0)
        theirs = torchattacks.MIFGSM(model, eps=eps, alpha=eps / 10, steps=10, decay=1.0)(x, y)
        assert abs(accuracy(model, ours, y) - accuracy(model, theirs, y)) <= 0.005
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_mim_without_momentum_is_iterative_fgsm(trained):
    model, x, y = trained
    ours = mim(model, x, y, eps=0.05, steps=5, step_size=0.02, decay=0.0)
    torch.testing.assert_close(ours, pgd(model, x, y, eps=0.05, steps=5, step_size=0.02, random_start=False),
                               rtol=0, atol=0)


# ---------------------------------------------------------------- DeepFool L∞

def test_deepfool_linf_flips_correct_points_with_a_smaller_linf_distance(trained):
    model, x, y = trained
    correct = _correct(model, x, y)
    x_inf = deepfool(model, x, y, norm="linf")
    x_two = deepfool(model, x, y, norm="l2")
    assert _flipped(model, x_inf, y, correct).float().mean() >= 0.95
    assert torch.equal(x_inf[~correct], x[~correct])
    # minimality in its own norm: well below the L∞ size of the L2 attack's perturbation
    assert _norms(x_inf, x, "linf")[correct].median() < 0.75 * _norms(x_two, x, "linf")[correct].median()


@pytest.mark.parametrize("overshoot", [0.0, 0.02])
def test_deepfool_linf_is_exact_on_affine_models(overshoot):
    # min L∞ distance from x to the facet {(w_y − w_k)·x + b_y − b_k = 0} is gap / ‖w_y − w_k‖₁
    gen = torch.Generator().manual_seed(1)
    model, linear, x, logits, y = affine_classifier(gen, 5)
    w, rows = linear.weight.detach(), torch.arange(len(y))
    w_diff = w.unsqueeze(0) - w[y].unsqueeze(1)
    dist = (logits[rows, y].unsqueeze(1) - logits) / w_diff.abs().sum(2)
    dist[rows, y] = math.inf
    d, target = dist.min(dim=1)
    expected = (1 + overshoot) * (d + STEP_SLACK).unsqueeze(1) * w_diff[rows, target].sign()

    x_adv = deepfool(model, x, y, steps=50, overshoot=overshoot, norm="linf")
    assert ((x_adv > 0) & (x_adv < 1)).all(), "box clipping would invalidate the analytic answer"
    torch.testing.assert_close((x_adv - x).flatten(1), expected, rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        assert (model(x_adv).argmax(1) != y).all()



def test_deepfool_step_clip_bounds_each_step_and_still_reaches_the_boundary(trained):
    model, x, y = trained
    correct = _correct(model, x, y)
    clip, overshoot = 0.05, 0.02
    free = _norms(deepfool(model, x, y, steps=1, overshoot=overshoot), x, "l2")
    one = _norms(deepfool(model, x, y, steps=1, overshoot=overshoot, step_clip=clip), x, "l2")
    assert (one <= (1 + overshoot) * (clip + STEP_SLACK) + 1e-6).all()
    assert (free[correct] > 1.5 * clip).any(), "no step long enough to be clipped: the test would be vacuous"
    # more, shorter steps: the examples still flip, and no farther than without the clip
    clipped = deepfool(model, x, y, steps=200, overshoot=overshoot, step_clip=clip)
    unclipped = deepfool(model, x, y, steps=200, overshoot=overshoot)
    assert _flipped(model, clipped, y, correct).float().mean() >= 0.95
    assert _norms(clipped, x, "l2")[correct].median() <= 1.05 * _norms(unclipped, x, "l2")[correct].median()


# ---------------------------------------------------------------- C&W and DDN

CW_FAST = dict(steps=50, binary_steps=4, initial_const=0.1)


@pytest.fixture(scope="module")
def cw_result(trained):
    model, x, y = trained
    return cw(model, x, y, **CW_FAST)


def test_cw_flips_correct_points_and_leaves_misclassified_alone(trained, cw_result):
    model, x, y = trained
    correct = _correct(model, x, y)
    assert (~correct).any(), "the batch should hold misclassified points"
    assert _flipped(model, cw_result, y, correct).float().mean() >= 0.95
    assert torch.equal(cw_result[~correct], x[~correct])
    assert cw_result.min() >= 0 and cw_result.max() <= 1


def test_cw_is_no_larger_than_torchattacks_and_binary_search_helps(trained, cw_result):
    # torchattacks.CW has no binary search: compare at its c (one binary step, same steps and
    # lr), then check that the search over c shrinks the perturbation well below that
    model, x, y = trained
    correct = _correct(model, x, y)
    theirs = torchattacks.CW(model, c=1.0, kappa=0, steps=50, lr=0.01)(x, y)
    model.zero_grad(set_to_none=True)  # torchattacks backpropagates into the parameters
    same_c = cw(model, x, y, steps=50, binary_steps=1, initial_const=1.0)
    theirs_flip = _flipped(model, theirs, y, correct).sum()
    theirs_median = _norms(theirs, x, "l2")[correct].median()
    for ours, factor in ((same_c, 1.05), (cw_result, 0.9)):
        assert _flipped(model, ours, y, correct).sum() >= theirs_flip
        assert _norms(ours, x, "l2")[correct].median() <= factor * theirs_median


def test_cw_confidence_is_honoured_and_failures_return_the_input(trained):
    model, x, y = trained
    x_adv = cw(model, x, y, steps=50, binary_steps=3, initial_const=1.0, confidence=2.0)
    with torch.no_grad():
        gap = margin(model(x_adv), y)
    changed = (x_adv != x).flatten(1).any(1)
    assert changed.float().mean() > 0.9
    assert (gap[changed] > 2.0).all()
    # one step at a tiny c cannot succeed: every input comes back unchanged
    assert torch.equal(cw(model, x, y, steps=1, binary_steps=1, initial_const=1e-6), x)


def test_ddn_step_size_schedule_is_the_cosine_annealing_of_the_paper():
    alphas = step_sizes(100)
    assert alphas[-1] == pytest.approx(MIN_STEP) and alphas[0] == pytest.approx(1.0, abs=1e-3)
    assert alphas[49] == pytest.approx((1 + MIN_STEP) / 2)
    assert all(a > b for a, b in zip(alphas, alphas[1:]))


def test_ddn_flips_correct_points_as_close_as_cw(trained, cw_result):
    model, x, y = trained
    correct = _correct(model, x, y)
    x_adv = ddn(model, x, y, steps=100)
    assert _flipped(model, x_adv, y, correct).float().mean() >= 0.95
    assert torch.equal(x_adv[~correct], x[~correct])
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert _norms(x_adv, x, "l2")[correct].median() <= 1.05 * _norms(cw_result, x, "l2")[correct].median()
    assert torch.equal(x_adv, ddn(model, x, y, steps=100))


def test_minimal_attacks_find_points_that_pgd_confirms(trained, cw_result):
    # a point's minimal L2 distance bounds the ε at which PGD-L2 must succeed on it
    model, x, y = trained
    correct = _correct(model, x, y)
    eps = 1.2 * _norms(cw_result, x, "l2")[correct].median().item()
    x_pgd = pgd(model, x, y, eps=eps, norm="l2", steps=20, step_size=eps / 8, random_start=False)
    assert _flipped(model, x_pgd, y, correct).float().mean() >= 0.5


# ---------------------------------------------------------------- arguments

BAD_SETTINGS = [
    ("fgm", dict(eps=-0.1), "attack.eps"),
    ("fgm", dict(eps="0.5"), "attack.eps"),
    ("fgm", dict(), "attack.eps"),
    ("pgd", dict(eps=-1.0, norm="l2", steps=5, step_size=0.1), "attack.eps"),
    ("pgd", dict(eps=2.0, norm="linf", steps=5, step_size=0.1), "attack.eps"),
    ("pgd", dict(eps=0.1, steps=5, step_size=0.01, sparsity=0.9), "attack.sparsity"),
    ("pgd", dict(eps=1.0, norm="l1", steps=5, step_size=0.1, sparsity=1.0), "attack.sparsity"),
    ("pgd", dict(eps=1.0, norm="l1", steps=5, step_size=0.1, sparsity="high"), "attack.sparsity"),
    ("mim", dict(eps=0.1, steps=5), "attack.step_size"),
    ("mim", dict(eps=0.1, steps=5, step_size=0.01, decay=-1.0), "attack.decay"),
    ("mim", dict(eps=0.1, steps=5, step_size=0.01, momentum=1.0), "attack.momentum"),
    ("deepfool", dict(norm="l1"), "attack.norm"),
    ("cw", dict(steps=0), "attack.steps"),
    ("cw", dict(binary_steps=2.5), "attack.binary_steps"),
    ("cw", dict(initial_const=0.0), "attack.initial_const"),
    ("cw", dict(confidence=-1.0), "attack.confidence"),
    ("cw", dict(lr=0), "attack.lr"),
    ("cw", dict(abort_early="yes"), "attack.abort_early"),
    ("cw", dict(c=1.0), "attack.c"),
    ("ddn", dict(steps=0), "attack.steps"),
    ("ddn", dict(gamma=1.5), "attack.gamma"),
    ("ddn", dict(init_norm=0.0), "attack.init_norm"),
]


@pytest.mark.parametrize("name, settings, key", BAD_SETTINGS)
def test_bad_settings_raise_config_error_naming_the_key(trained, name, settings, key):
    model, x, y = trained
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        run_attack(name, model, x, y, generator=_gen(), **settings)


def test_l2_and_l1_radii_above_one_are_valid(trained):
    model, x, y = trained
    x_adv = pgd(model, x, y, eps=4.0, norm="l1", steps=2, step_size=1.0, random_start=False)
    assert (_norms(x_adv, x, "l1") <= 4.0 + 1e-5).all()
