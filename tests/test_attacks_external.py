"""Tests for robust.attacks.external: AutoAttack and Square (torchattacks), Foolbox's Boundary and B&B attacks.

AutoAttack: budget and box, fixed-generator determinism, the global RNG and the model's
modes untouched, and robust accuracy no higher than our PGD's at the same ε. Foolbox attacks:
they flip points within the budget, fall back to batch starting points where uniform noise
never leaves a class, and fail with a one-line MissingExtra when Foolbox is not installed.
The registry-wide contract (shape, dtype, grads) runs in test_attacks.py.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys

import pytest
import torch
from prototypes import accuracy, trained_classifier
from torch import nn

from robust.attacks import DEFAULT_NORM, run_attack
from robust.attacks.external import autoattack, boundary, brendel_bethge, missing_extra, square
from robust.attacks.pgd import pgd
from robust.errors import MissingExtra

HAS_FOOLBOX = importlib.util.find_spec("foolbox") is not None
HAS_NUMBA = importlib.util.find_spec("numba") is not None
needs_foolbox = pytest.mark.skipif(not HAS_FOOLBOX, reason="foolbox not installed: pip install 'robust[foolbox]'")
needs_numba = pytest.mark.skipif(not (HAS_FOOLBOX and HAS_NUMBA),
                                 reason="B&B needs foolbox and numba: pip install 'robust[foolbox]'")

QUICK_AA = {"steps": 10, "queries": 100}


@pytest.fixture(scope="module")
def trained():
    """A small CNN with BatchNorm fit to 4 noisy prototypes; 100 test points (1 point = 1 example)."""
    return trained_classifier(100, min_accuracy=0.85)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _norms(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    order = {"linf": float("inf"), "l2": 2.0, "l1": 1.0}[norm]
    return torch.linalg.vector_norm((x_adv - x).flatten(1), ord=order, dim=1)


def _flipped_fraction(model: nn.Module, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        correct = model(x).argmax(1) == y
        return (model(x_adv).argmax(1) != y)[correct].float().mean().item()


# ---------------------------------------------------------------- AutoAttack

def test_default_norms():
    assert DEFAULT_NORM["autoattack"] == "linf" and DEFAULT_NORM["brendel_bethge"] == "linf"
    assert DEFAULT_NORM["square"] == "linf"
    assert DEFAULT_NORM["boundary"] == "l2"


@pytest.mark.parametrize("norm, eps", [("linf", 0.03), ("linf", 0.2), ("l2", 0.3), ("l2", 2.0)])
def test_autoattack_stays_in_the_eps_ball_and_the_box(trained, norm, eps):
    model, x, y = trained
    x_adv = autoattack(model, x, y, eps=eps, norm=norm, generator=_gen(), **QUICK_AA)
    assert _norms(x_adv, x, norm).max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert _flipped_fraction(model, x_adv, x, y) > 0.2


def test_autoattack_same_seed_same_output_global_rng_and_modes_untouched(trained):
    model, x, y = trained
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    model[1].eval()  # a mixed mode: a blanket model.train() afterwards would lose it
    try:
        modes = [m.training for m in model.modules()]
        torch.manual_seed(123)
        rng_before = torch.get_rng_state()
        first = autoattack(model, x, y, eps=0.05, generator=_gen(7), **QUICK_AA)
        assert torch.equal(torch.get_rng_state(), rng_before)
        assert [m.training for m in model.modules()] == modes
        torch.manual_seed(456)  # a different global state must not change the result
        second = autoattack(model, x, y, eps=0.05, generator=_gen(7), **QUICK_AA)
        assert torch.equal(first, second)
        assert all(p.grad is None and p.requires_grad for p in model.parameters())
    finally:
        model.load_state_dict(state)
        model.eval()


def test_autoattack_without_generator_fails(trained):
    model, x, y = trained
    with pytest.raises(ValueError, match="Generator"):
        autoattack(model, x, y, eps=0.05, **QUICK_AA)


@pytest.mark.parametrize("eps", [0.02, 0.04])
def test_autoattack_is_at_least_as_strong_as_pgd(trained, eps):
    model, x, y = trained
    aa = accuracy(model, autoattack(model, x, y, eps=eps, steps=50, queries=500, generator=_gen()), y)
    pgd_acc = accuracy(model, pgd(model, x, y, eps=eps, steps=50, step_size=eps / 4, generator=_gen()), y)
    assert aa <= pgd_acc + 1 / len(y), (aa, pgd_acc)
    assert aa < accuracy(model, x, y)


def test_autoattack_reads_the_number_of_classes_from_the_model():
    # 3 classes: torchattacks' default of 10 would make APGD-T and FAB-T target classes that do not exist
    gen = _gen(3)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(32, 1, 4, 4, generator=gen)
    with torch.no_grad():
        y = model(x).argmax(1)
    x_adv = autoattack(model, x, y, eps=0.5, generator=gen, **QUICK_AA)
    assert _flipped_fraction(model, x_adv, x, y) > 0.5


class _Rounded(nn.Module):
    """Rounds its input to quarters first: zero input gradients everywhere, the classic masked model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 4) / 4)


def test_square_needs_no_gradients_and_beats_pgd_on_a_masked_model(trained):
    model, x, y = trained
    masked = _Rounded(model).eval()
    eps = 0.3
    x_adv = square(masked, x, y, eps=eps, queries=300, generator=_gen())
    assert _norms(x_adv, x, "linf").max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    pgd_acc = accuracy(masked, pgd(masked, x, y, eps=eps, steps=20, step_size=eps / 8, generator=_gen()), y)
    # PGD's gradients are all zero, so it is no better than its random start; Square only reads scores
    assert accuracy(masked, x_adv, y) < pgd_acc - 0.2, (accuracy(masked, x_adv, y), pgd_acc)
    assert torch.equal(x_adv, square(masked, x, y, eps=eps, queries=300, generator=_gen()))


# ---------------------------------------------------------------- Foolbox attacks

class MeanBrightness(nn.Module):
    """Three classes by mean pixel value (dark, grey, bright): uniform noise blended into a grey
    image stays grey, so Foolbox's noise initialisation never finds a start for grey points."""

    centres = (0.3, 0.5, 0.7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.flatten(1).mean(dim=1, keepdim=True)
        return -100 * (mean - torch.tensor(self.centres, dtype=x.dtype)) ** 2


def _brightness_batch(levels: tuple[float, ...], per_level: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = _gen(5)
    # 256 pixels: the mean of uniform noise is 0.5 ± 0.018, never near another class
    x = torch.cat([(level + 0.02 * torch.randn(per_level, 1, 16, 16, generator=gen)).clamp(0, 1) for level in levels])
    with torch.no_grad():
        y = MeanBrightness()(x).argmax(1)
    return x, y


@needs_foolbox
@pytest.mark.parametrize("eps", [0.5, 2.0])
def test_boundary_flips_points_within_the_l2_ball(trained, eps):
    model, x, y = trained
    rng_before = torch.get_rng_state()
    x_adv = boundary(model, x, y, eps=eps, steps=300, generator=_gen())
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert _norms(x_adv, x, "l2").max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert _flipped_fraction(model, x_adv, x, y) > 0.2
    again = boundary(model, x, y, eps=eps, steps=300, generator=_gen())
    assert torch.equal(x_adv, again)


@needs_foolbox
def test_boundary_starts_from_batch_points_where_noise_fails(caplog):
    model = MeanBrightness()
    x, y = _brightness_batch((0.3, 0.5, 0.7))
    assert (y == 1).sum() == 4
    with caplog.at_level(logging.INFO, logger="robust.attacks.external"):
        x_adv = boundary(model, x, y, eps=5.0, steps=100, generator=_gen())  # other-class points lie 3.2 away
    assert "4 of 12 points start from another batch point" in caplog.text
    with torch.no_grad():
        assert (model(x_adv).argmax(1) != y).all(), "grey points were left without a start"


@needs_foolbox
def test_boundary_leaves_points_without_any_start_unchanged(caplog):
    model = MeanBrightness()
    x, y = _brightness_batch((0.5,))
    assert (y == 1).all()
    assert torch.equal(boundary(model, x, y, eps=5.0, steps=20, generator=_gen()), x)
    assert "no adversarial starting point for 4 of 4 points" in caplog.text


@needs_numba
def test_brendel_bethge_flips_points_within_the_linf_ball(trained):
    # one call only: numba compiles the B&B solver on first use (most of a minute)
    model, x, y = trained
    rng_before = torch.get_rng_state()
    x_adv = brendel_bethge(model, x, y, eps=0.05, steps=20, generator=_gen())
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert _norms(x_adv, x, "linf").max() <= 0.05 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert _flipped_fraction(model, x_adv, x, y) > 0.5
    assert all(p.grad is None for p in model.parameters())


MISSING = [
    ("boundary", "foolbox", "foolbox", {"eps": 1.0, "steps": 5}),
    ("brendel_bethge", "foolbox", "foolbox", {"eps": 0.1, "steps": 5}),
    pytest.param("brendel_bethge", "numba", "foolbox", {"eps": 0.1, "steps": 5}, marks=needs_foolbox),
]


@pytest.mark.parametrize("name, package, extra, settings", MISSING)
def test_missing_package_raises_missing_extra_in_one_line(trained, monkeypatch, name, package, extra, settings):
    model, x, y = trained
    monkeypatch.setitem(sys.modules, package, None)  # `import package` now raises ImportError
    expected = f"attack '{name}' needs {package}: pip install 'robust[{extra}]'"
    assert str(missing_extra(name)) == expected
    with pytest.raises(MissingExtra, match=f"^{re.escape(expected)}$"):
        run_attack(name, model, x, y, generator=_gen(), **settings)


def test_missing_extra_is_none_for_attacks_that_can_run():
    assert missing_extra("pgd") is None
    assert missing_extra("autoattack") is None  # torchattacks is a dependency of robust
    assert (missing_extra("boundary") is None) == HAS_FOOLBOX
