"""Tests for the study figures: Jakubovitz Figs. 1–3 (accuracy curves), JARN Figs. 3–4 (loss surfaces, input Jacobians), AFD Fig. 4, SGR Fig. 2,
the adversary critic's Fig. 2 (targeted grid).

Tiny fully-connected models on a few digits images, prepared and saved in a temporary folder in
the pipeline's formats: the directions of the loss surface (sign of the gradient; the random one
orthogonal and of equal L2 norm), its centre (the clean loss), batching, the true-class gradient,
the gradient matrix (log₁₀ class means; diagonal kept in the matrix and blanked for the colour
scale), the covariance functions of SGR Fig. 2 on noise of known structure (white: decay length
below a pixel; Gaussian-smoothed: about 2σ; box-smoothed: longer with the box), the targeted grid
(two small models trained on the test images, so that every class has a correctly classified
image: the clean diagonal, targets reached, the same cells as one attack call per pair, the
explicit-target attack against the closest-boundary one), the accuracy curves (white-box accuracy
rows by ε from the clean point; an ambiguous attack setting refused), every kind drawn twice to identical PNG
bytes, and the settings' errors. The study files' own entries are checked against their runs.
"""

from __future__ import annotations

import copy
from math import exp
from pathlib import Path

import matplotlib.axes
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from prototypes import fit

from robust import data
from robust.accuracy_curves import accuracy_curves, panel_curve, parse_panels
from robust.errors import ConfigError
from robust.input_gradients import (class_gradient_matrix, class_gradient_norms, display_normalized,
                                    off_diagonal, true_class_gradient)
from robust.io import save_torch
from robust.attacks import run_attack
from robust.attacks.high_confidence import (_attack_loop, _logits_and_targets, closest_boundary_target,
                                            high_confidence_targeted)
from robust.loss_surface import fgsm_direction, grid_values, loss_surface, orthogonal_direction
from robust.models import build_model
from robust.perturbation_structure import covariance_profile, data_profile, decay_length, perturbation_profile
from robust.study_figure_drawing import class_ticks, matrix_colour_range, sensitivity_and_gradients
from robust.study_figures import KINDS, draw_study_figure, parse_study_figure, targeted_grid

REPO = Path(__file__).resolve().parents[1]
CLASSES = 10
PARAMS = {"profile": "smoke", "seed": 0, "profiles": {"smoke": {"eval_examples": 30}}}
RUNS = {"tiny-a": "A", "tiny-b": "B"}
TRAINED = {"tiny-t0": "T0", "tiny-t1": "T1"}  # fit to the test images: every class has a correct one


def _model(seed: int, shape=(1, 28, 28), width: float = 0.02) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("critic-fc", in_shape=shape, num_classes=CLASSES, width=width).eval()


def _fitted(seed: int, x: torch.Tensor, y: torch.Tensor) -> torch.nn.Module:
    model = fit(_model(seed, tuple(x.shape[1:]), width=0.05).train(), x, y, steps=150)
    with torch.no_grad():
        assert (model(x).argmax(1) == y).all(), "fixture model failed to fit; the grid tests would be vacuous"
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Prepared digits (40 test images), two saved tiny models and their sensitivity rows."""
    root = tmp_path_factory.mktemp("study_figures")
    data_dir = root / "prepared"
    data.prepare("digits", data_dir, max_train=20, max_test=40, seed=0)
    x, y = data.load_split(data_dir, "test")
    runs_dir, results_dir = root / "runs", root / "results"
    results_dir.mkdir()
    for k, run in enumerate(RUNS):
        model = _model(k, tuple(x.shape[1:]))
        config = {"arch": "critic-fc", "in_shape": list(x.shape[1:]), "num_classes": CLASSES, "width": 0.02}
        save_torch({"model": model.state_dict(), "config": config}, runs_dir / run / "model.pt")
        rows = [{"run": run, "source": "", "attack": "representation", "eps": eps, "metric": metric,
                 "value": value, "n": 30}
                for eps in (0.1, 0.3)
                for metric, value in (("sensitivity", eps * (k + 1)), ("sensitivity_std", 0.05))]
        rows.append({"run": run, "source": "", "attack": "representation", "eps": float("nan"),
                     "metric": "pca_dims_99", "value": 3.0, "n": 30})
        rows += _accuracy_rows(run, clean=0.9 - 0.1 * k)
        pd.DataFrame(rows).to_parquet(results_dir / f"{run}.parquet")
    trained = {}
    for k, run in enumerate(TRAINED):
        trained[run] = _fitted(k, x, y)
        config = {"arch": "critic-fc", "in_shape": list(x.shape[1:]), "num_classes": CLASSES, "width": 0.05}
        save_torch({"model": trained[run].state_dict(), "config": config}, runs_dir / run / "model.pt")
    return {"root": root, "data_dir": data_dir, "runs_dir": runs_dir, "results_dir": results_dir,
            "x": x[:6], "y": y[:6], "model": _model(0, tuple(x.shape[1:])), "trained": trained,
            "per_class": _one_per_class(x, y)}


def _accuracy_rows(run: str, clean: float) -> list[dict]:
    """Clean accuracy, an FGSM sweep (listed out of ε order), PGD swept at two step counts and at one ε."""
    def row(attack, eps, value, norm="linf", steps=-1, metric="accuracy", source=""):
        return {"run": run, "source": source, "attack": attack, "label": "", "norm": norm, "eps": eps,
                "steps": steps, "metric": metric, "value": value, "n": 30}

    nan = float("nan")
    return [row("clean", nan, clean, norm=""), row("fgsm", 0.3, clean / 4), row("fgsm", 0.1, clean / 2),
            row("fgsm", 0.1, 0.99, metric="success_rate"), row("fgsm", 0.1, 0.01, source="other-run"),
            row("pgd", 0.1, clean / 3, steps=5), row("pgd", 0.3, clean / 8, steps=5),
            row("pgd", 0.1, clean / 4, steps=10), row("pgd", 0.3, clean / 9, steps=10),
            row("pgd", 0.5, 0.0, steps=20)]  # a sanity check's single ε: not a curve


def _one_per_class(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    first = [int((y == k).nonzero()[0]) for k in y.unique().tolist()]
    return x[first], y[first]


def test_random_direction_is_orthogonal_and_as_long_as_the_adversarial_one(setup):
    direction = fgsm_direction(setup["model"], setup["x"], setup["y"])
    raw = torch.randn(setup["x"].shape, generator=torch.Generator().manual_seed(0))
    random = orthogonal_direction(direction, raw)
    d, r = direction.flatten(1).double(), random.flatten(1).double()
    assert torch.allclose((d * r).sum(1), torch.zeros(len(d), dtype=torch.float64), atol=1e-3)
    assert torch.allclose(r.norm(dim=1), d.norm(dim=1), rtol=1e-5)
    assert set(direction.unique().tolist()) <= {-1.0, 0.0, 1.0}
    with pytest.raises(ValueError, match="parallel"):
        orthogonal_direction(direction, 2 * direction)


def test_fgsm_direction_is_the_sign_of_the_loss_gradient(setup):
    x = setup["x"].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(setup["model"](x), setup["y"], reduction="sum"), x)
    assert torch.equal(fgsm_direction(setup["model"], setup["x"], setup["y"]), grad.sign())


def test_loss_surface_centre_is_the_clean_loss_and_batching_changes_nothing(setup):
    model, x, y = setup["model"], setup["x"], setup["y"]
    raw = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    surface = loss_surface(model, x, y, raw, eps=0.3, points=5, batch_size=7)
    assert surface.loss.shape == (len(x), 5, 5) and surface.alphas.shape == surface.betas.shape == (5,)
    assert surface.adversarial.shape == surface.random.shape == x.shape
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y, reduction="none")
    assert torch.allclose(surface.loss[:, 2, 2], clean, atol=1e-6)
    # the α axis at β = 0 is FGSM at each α, clipped to the image box
    with torch.no_grad():
        fgsm = F.cross_entropy(model((x + 0.3 * surface.adversarial).clamp(0, 1)), y, reduction="none")
    assert torch.allclose(surface.loss[:, 4, 2], fgsm, atol=1e-6)
    again = loss_surface(model, x, y, raw, eps=0.3, points=5, batch_size=1000)
    assert torch.allclose(again.loss, surface.loss, atol=1e-6)
    assert grid_values(0.3, 5).tolist() == pytest.approx([-0.3, -0.15, 0.0, 0.15, 0.3])
    with pytest.raises(ValueError, match="shaped like x"):
        loss_surface(model, x, y, raw[:1], eps=0.3, points=5)


def test_true_class_gradient_is_minus_the_loss_gradient_and_display_scales_to_one(setup):
    x = setup["x"].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(setup["model"](x), setup["y"], reduction="sum"), x)
    ours = true_class_gradient(setup["model"], setup["x"], setup["y"])
    assert torch.allclose(ours, -grad)
    shown = display_normalized(ours)
    assert torch.allclose(shown.flatten(1).abs().amax(1), torch.ones(len(ours)))
    assert torch.equal(display_normalized(torch.zeros(2, 1, 3, 3)), torch.zeros(2, 1, 3, 3))


def test_class_gradient_norms_match_per_example_autograd(setup):
    model, x = setup["model"], setup["x"]
    norms = class_gradient_norms(model, x, batch_size=4)
    assert norms.shape == (len(x), CLASSES)
    for n, i in [(0, 0), (3, 7), (5, 9)]:
        point = x[n:n + 1].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(point).softmax(1)[0, i], point)
        assert norms[n, i].item() == pytest.approx(grad.norm().item(), rel=1e-4)


def test_gradient_matrix_means_per_true_class_and_keeps_the_diagonal_out_of_the_colour_scale():
    y = torch.tensor([0, 0, 1])
    norms = torch.tensor([[1.0, 10.0, 100.0], [3.0, 30.0, 300.0], [1000.0, 0.1, 1.0]])
    matrix = class_gradient_matrix(norms, y, 3)
    assert matrix[0].tolist() == pytest.approx([torch.log10(torch.tensor(2.0)).item(), 1 + 0.30103, 2 + 0.30103],
                                               abs=1e-4)
    assert matrix[1].tolist() == pytest.approx([3.0, -1.0, 0.0])
    assert torch.isnan(matrix[2]).all()  # no point of class 2: a NaN row, not an error
    blank = off_diagonal(matrix)
    assert torch.isnan(blank.diagonal()).all() and not torch.isnan(matrix[:2].diagonal()).any()
    assert torch.equal(blank[0, 1:], matrix[0, 1:]) and blank[1, 0] == matrix[1, 0]
    # the colour scale is that of the non-target entries of all matrices: 3.0 (row 1, column 0)
    # and −1.0 (row 1, column 1 is the diagonal, left out: its −1.0 must not set the minimum)
    low, high = matrix_colour_range({"m": matrix})
    assert (low, high) == pytest.approx((0.0, 3.0))
    with pytest.raises(ValueError, match="norms must be"):
        class_gradient_matrix(norms[:, :2], y, 3)


def test_a_hundred_class_matrix_names_every_tenth_class_and_prints_no_diagonal(tmp_path, monkeypatch):
    assert class_ticks(10) == list(range(10)) and class_ticks(100) == list(range(0, 100, 10))
    texts = []
    monkeypatch.setattr(matplotlib.axes.Axes, "text", lambda self, *args, **kwargs: texts.append(args))
    sensitivity = {"m": pd.DataFrame({"sensitivity": [0.1], "sensitivity_std": [0.01]}, index=[0.03])}
    for k in (10, 100):
        texts.clear()
        sensitivity_and_gradients(sensitivity, {"m": torch.zeros(k, k)}, tmp_path / f"{k}.png", title="t",
                                  classes=[str(i) for i in range(k)])
        assert len(texts) == (k if k == 10 else 0)  # the diagonal's numbers, where the cells have room


def _noise(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def _smoothed(kernel: torch.Tensor, n: int = 64, size: int = 28, seed: int = 0) -> torch.Tensor:
    """White noise filtered by a 2-D ``kernel`` (valid convolution: no border effects)."""
    pad = kernel.shape[-1] - 1
    return F.conv2d(_noise(n, size + pad, seed), kernel[None, None])


def test_decay_length_interpolates_linearly_to_one_over_e():
    e = exp(-1)
    assert decay_length(torch.tensor([1.0, 0.5, 0.2, 0.1])) == pytest.approx(1 + (0.5 - e) / (0.5 - 0.2))
    assert decay_length(torch.tensor([1.0, 0.8, e, 0.0])) == pytest.approx(2.0)
    assert decay_length(torch.tensor([1.0, 0.0])) == pytest.approx(1 - e)
    assert decay_length(torch.tensor([1.0, 0.9, 0.5])) is None


def test_covariance_profile_is_the_mean_pair_product_per_rounded_distance_over_f0():
    """Brute force over every ordered pixel pair of tiny images, in unequal batches."""
    xi = _noise(5, 4, seed=3).expand(5, 1, 4, 4) + torch.linspace(0, 1, 16).view(1, 1, 4, 4)
    profile = covariance_profile(xi.split(2))
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    p = torch.stack([rows.flatten(), cols.flatten()], 1).double()
    radius = torch.cdist(p, p).round().long()
    flat = xi.flatten(1).double()
    products = (flat[:, :, None] * flat[:, None, :]).mean(0)
    expected = torch.stack([products[radius == r].mean() for r in range(int(radius.max()) + 1)])
    assert profile.mean_square == pytest.approx(float(flat.pow(2).mean()))
    assert profile.intra[0] == 1.0 and profile.examples == 5
    assert torch.allclose(profile.intra, expected / expected[0], atol=1e-12)
    assert torch.equal(profile.inter, torch.zeros_like(profile.inter))  # one channel


def test_three_identical_channels_have_the_inter_channel_function_of_the_intra():
    xi = _noise(4, 6, seed=1).expand(4, 3, 6, 6)
    profile = covariance_profile([xi])
    assert torch.allclose(profile.inter, profile.intra, atol=1e-12)


def test_white_noise_decays_within_a_pixel_and_smoothing_lengthens_the_decay():
    assert decay_length(covariance_profile([_noise(64, 28, 0)]).intra) < 1
    boxes = [covariance_profile([_smoothed(torch.ones(w, w) / w**2)]).decay_length for w in (1, 3, 5, 7)]
    assert boxes[0] < 1 and all(a < b for a, b in zip(boxes, boxes[1:]))
    for sigma in (1.5, 2.0):
        # a Gaussian filter of width σ gives the correlation exp(−d²/4σ²): 1/e at d = 2σ
        axis = torch.exp(-torch.arange(-10, 11.0) ** 2 / (2 * sigma**2))
        length = covariance_profile([_smoothed(axis[:, None] * axis[None, :])]).decay_length
        assert length == pytest.approx(2 * sigma, abs=0.25)
    assert covariance_profile([torch.ones(2, 1, 5, 5)]).decay_length is None  # never decays
    with pytest.raises(ValueError, match="zero"):
        covariance_profile([torch.zeros(2, 1, 5, 5)])


def test_data_profile_centres_the_images_by_their_mean_image():
    x = _smoothed(torch.ones(3, 3) / 9, n=40, size=12)
    shifted = data_profile(x + torch.linspace(0, 5, 144).view(1, 1, 12, 12), batch_size=7)
    plain = data_profile(x - x.mean(0), batch_size=100)
    assert torch.allclose(shifted.intra, plain.intra, atol=1e-9)
    assert shifted.mean_square == pytest.approx(plain.mean_square)


def test_perturbation_profile_is_that_of_x_adv_minus_x_in_any_batching(setup):
    model, x, y = setup["model"], setup["x"], setup["y"]
    profile = perturbation_profile(model, x, y, "fgsm", {"eps": 0.3}, batch_size=4, seed=0)
    direct = covariance_profile([run_attack("fgsm", model, x, y, eps=0.3) - x])
    assert torch.allclose(profile.intra, direct.intra, atol=1e-9) and profile.examples == len(x)
    assert 0 < profile.mean_square <= 0.3**2 + 1e-6
    pgd = {"eps": 0.3, "steps": 2, "step_size": 0.1, "random_start": True}
    first, again = (perturbation_profile(model, x, y, "pgd", pgd, batch_size=100, seed=5) for _ in range(2))
    assert torch.equal(first.intra, again.intra)  # the seeded random start


def test_targeted_grid_keeps_the_clean_diagonal_and_reaches_targets(setup):
    model = setup["trained"]["tiny-t0"]
    images, labels = setup["per_class"]
    grid = targeted_grid(model, images, labels, CLASSES, step_clip=0.5, steps=30, confidence="clean", batch_size=32)
    rows = len(images)
    assert rows >= 8 and grid.images.shape == (rows, CLASSES, *images.shape[1:])
    assert grid.predicted.shape == grid.confidence.shape == grid.reached.shape == (rows, CLASSES)
    attacked = grid.off_diagonal
    assert int((~attacked).sum()) == rows and not grid.reached[~attacked].any()
    for r in range(rows):
        assert torch.equal(grid.images[r, labels[r]], images[r])
        assert grid.predicted[r, labels[r]] == labels[r]
    with torch.no_grad():
        p = model(grid.images.flatten(0, 1)).softmax(1).view(rows, CLASSES, CLASSES)
        clean = model(images).softmax(1).amax(1)
    assert torch.allclose(grid.target_confidence, clean) and torch.allclose(grid.confidence, p.amax(2))
    columns = torch.arange(CLASSES).expand(rows, CLASSES)
    target_p = p.gather(2, columns.unsqueeze(2)).squeeze(2)
    # reached: predicted as the column's class with at least the source's clean confidence
    assert torch.equal(grid.predicted[grid.reached], columns[grid.reached])
    assert (target_p[grid.reached] >= clean.unsqueeze(1).expand(rows, CLASSES)[grid.reached] - 1e-6).all()
    missed = attacked & ~grid.reached
    assert ((grid.predicted[missed] != columns[missed]) | (target_p[missed] < clean.unsqueeze(1).expand_as(
        target_p)[missed] + 1e-6)).all()
    assert grid.reached.sum() >= attacked.sum() // 2
    assert (grid.images[attacked] != images.unsqueeze(1).expand_as(grid.images)[attacked]).flatten(1).any(1).all()


def test_targeted_grid_cells_are_those_of_one_attack_call_per_pair(setup):
    # float64: a batch's rounding then cannot decide whether a step is the last
    model = copy.deepcopy(setup["trained"]["tiny-t1"]).double()
    images, labels = setup["per_class"]
    images = images[:3].double()
    labels = labels[:3]
    grid = targeted_grid(model, images, labels, CLASSES, step_clip=0.5, steps=20, confidence=0.9, batch_size=7)
    for r in range(len(images)):
        for k in range(CLASSES):
            alone = high_confidence_targeted(model, images[r:r + 1], labels[r:r + 1], torch.tensor([k]),
                                             step_clip=0.5, steps=20, confidence=0.9)
            # on the diagonal the fixed C = 0.9 may push the clean image further: the grid keeps it clean
            expected = images[r] if k == labels[r] else alone[0]
            assert torch.allclose(grid.images[r, k], expected, atol=1e-12), (r, k)
    assert (grid.target_confidence == 0.9).all()
    assert (grid.confidence[grid.reached] >= 0.9).all()


@pytest.mark.parametrize("confidence", ["clean", 0.7])
def test_explicit_targets_equal_the_closest_boundary_attack_where_they_agree(setup, confidence):
    model = setup["trained"]["tiny-t0"]
    x, y = data.load_split(setup["data_dir"], "test")
    x, y = x[:12], y[:12].clone()
    y[:2] = (y[:2] + 1) % CLASSES  # misclassified: both return them unchanged
    settings = {"step_clip": 0.3, "steps": 15, "confidence": confidence}
    closest = closest_boundary_target(model, x, y)
    untargeted = run_attack("high_confidence", model, x, y, **settings)
    assert torch.equal(high_confidence_targeted(model, x, y, closest, **settings), untargeted)
    assert torch.equal(untargeted[:2], x[:2])
    # the registered attack is still Algorithm 1 towards the closest boundary, as before targets were added
    logits, target = _logits_and_targets(model, x, y)
    c = logits.softmax(1).amax(1) if confidence == "clean" else torch.full((len(x),), confidence)
    loop, _ = _attack_loop(model, x, target, c, logits.argmax(1) == y, steps=15, step_clip=0.3, ste_slope=0.0,
                           differentiable=False)
    assert torch.equal(untargeted, loop)
    other = (closest + 1) % CLASSES
    other = torch.where(other == y, (other + 1) % CLASSES, other)
    assert not torch.equal(high_confidence_targeted(model, x, y, other, **settings)[2:], untargeted[2:])
    with pytest.raises(ValueError, match="class indices"):
        high_confidence_targeted(model, x, y, torch.full_like(y, CLASSES), **settings)
    with pytest.raises(TypeError, match="long tensor"):
        high_confidence_targeted(model, x, y, closest[:3], **settings)


ENTRIES = {
    "loss_surface": {"eps": 0.3, "grid": 5, "examples": 2, "batch_size": 64},
    "input_jacobians": {"examples": 3},
    "sensitivity_and_class_gradients": {"batch_size": 16},
    "perturbation_covariance": {"runs": {"tiny-a": "A"}, "batch_size": 16, "max_displacement": 10,
                                "attacks": [{"name": "fgsm", "eps": 0.3},
                                            {"name": "pgd", "eps": 0.3, "steps": 3, "step_size": 0.1,
                                             "random_start": True}]},
    # one model: two 10 × 10 grids drawn twice take ~10 s (the stage's two-model layout is the same loop)
    "targeted_grid": {"runs": {"tiny-t0": "T0"}, "step_clip": 0.5, "steps": 10, "batch_size": 32},
    "accuracy_curves": {"panels": [{"attack": "fgsm"}, {"attack": "pgd", "steps": 10, "title": "PGD-10"}]},
}


def _params(figure_kind: str, **changes) -> dict:
    entry = {"params_file": "params.yaml", "kind": figure_kind, "dataset": "main", "runs": dict(RUNS),
             "title": "A test", "note": "a note", **ENTRIES[figure_kind], **changes}
    return {**PARAMS, "study_figures": {"fig": entry}}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_draws_the_same_png_twice(setup, tmp_path, kind):
    paths = [draw_study_figure(_params(kind), "study_figures.fig", setup["runs_dir"], setup["results_dir"],
                               setup["data_dir"], tmp_path / f"{i}.png") for i in range(2)]
    assert paths[0].read_bytes() == paths[1].read_bytes()
    with Image.open(paths[0]) as image:
        assert image.format == "PNG" and "Software" not in image.info
        assert image.size[0] > 500 and image.size[1] > 300


def test_settings_errors_name_the_key(setup, tmp_path):
    def draw(params):
        return draw_study_figure(params, "study_figures.fig", setup["runs_dir"], setup["results_dir"],
                                 setup["data_dir"], tmp_path / "x.png")

    with pytest.raises(ConfigError, match=r"study_figures\.fig\.kind"):
        draw(_params("input_jacobians", kind="histogram"))
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.grid': unknown key"):
        draw(_params("input_jacobians", grid=3))
    params = _params("loss_surface")
    del params["study_figures"]["fig"]["eps"]
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.eps': missing"):
        draw(params)
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.runs\.tiny-c': no trained model"):
        draw(_params("input_jacobians", runs={"tiny-c": "C"}))
    for runs in ({"tiny-a": ""}, {"tiny-a": "A", "tiny-b": "A"}):
        with pytest.raises(ConfigError, match=r"study_figures\.fig\.runs'"):
            draw(_params("input_jacobians", runs=runs))
    (setup["results_dir"] / "empty").mkdir(exist_ok=True)
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.runs\.tiny-a': no attack results"):
        draw_study_figure(_params("sensitivity_and_class_gradients"), "study_figures.fig", setup["runs_dir"],
                          setup["results_dir"] / "empty", setup["data_dir"], tmp_path / "x.png")


def test_perturbation_covariance_settings_errors_name_the_key(setup, tmp_path):
    def draw(**changes):
        return draw_study_figure(_params("perturbation_covariance", **changes), "study_figures.fig", setup["runs_dir"],
                                 setup["results_dir"], setup["data_dir"], tmp_path / "x.png")

    with pytest.raises(ConfigError, match=r"study_figures\.fig\.runs': a perturbation_covariance figure is of one"):
        draw(runs=dict(RUNS))
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.attacks'"):
        draw(attacks=[])
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.attacks\[0\]\.name"):
        draw(attacks=[{"name": "fgsn", "eps": 0.3}])
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.attacks\[1\]\.eps': required"):
        draw(attacks=[{"name": "fgsm", "eps": 0.3}, {"name": "pgd", "steps": 3}])
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.attacks\[0\]\.eps'"):
        draw(attacks=[{"name": "fgsm", "eps": 3}])
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.attacks\[0\]\.stepz': not a setting"):
        draw(attacks=[{"name": "pgd", "eps": 0.3, "stepz": 3}])
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.data_split'"):
        draw(data_split="validation")
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.max_displacement'"):
        draw(max_displacement=0)
    params = _params("perturbation_covariance")
    del params["study_figures"]["fig"]["attacks"]
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.attacks': missing"):
        draw_study_figure(params, "study_figures.fig", setup["runs_dir"], setup["results_dir"], setup["data_dir"],
                          tmp_path / "x.png")
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.attacks': unknown key"):
        draw_study_figure(_params("input_jacobians", attacks=[{"name": "fgsm", "eps": 0.3}]), "study_figures.fig",
                          setup["runs_dir"], setup["results_dir"], setup["data_dir"], tmp_path / "x.png")


def test_targeted_grid_settings_errors_name_the_key(setup, tmp_path):
    def draw(**changes):
        return draw_study_figure(_params("targeted_grid", **changes), "study_figures.fig", setup["runs_dir"],
                                 setup["results_dir"], setup["data_dir"], tmp_path / "x.png")

    params = _params("targeted_grid")
    del params["study_figures"]["fig"]["step_clip"]
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.step_clip': missing"):
        draw_study_figure(params, "study_figures.fig", setup["runs_dir"], setup["results_dir"], setup["data_dir"],
                          tmp_path / "x.png")
    for field, value in (("step_clip", 0), ("step_clip", "0.1"), ("steps", 0), ("steps", 2.5),
                         ("confidence", "high"), ("confidence", 1.5), ("confidence", 0), ("batch_size", 0)):
        with pytest.raises(ConfigError, match=rf"study_figures\.fig\.{field}'"):
            draw(**{field: value})
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.runs': a targeted_grid figure draws at most 2"):
        draw(runs={**TRAINED, **RUNS})
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.eps': unknown key"):
        draw(eps=0.3)
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.step_clip': unknown key"):
        draw_study_figure(_params("input_jacobians", step_clip=0.1), "study_figures.fig", setup["runs_dir"],
                          setup["results_dir"], setup["data_dir"], tmp_path / "x.png")
    figure = parse_study_figure(_params("targeted_grid", confidence=0.95)["study_figures"]["fig"], "f")
    assert figure.settings == {"batch_size": 32, "step_clip": 0.5, "steps": 10, "confidence": 0.95}
    assert parse_study_figure(_params("targeted_grid")["study_figures"]["fig"], "f").settings["confidence"] == "clean"


def test_accuracy_curves_read_white_box_accuracy_by_eps_from_the_clean_point(setup):
    panels = parse_panels([{"attack": "fgsm"}, {"attack": "pgd", "steps": 5}], "p")
    curves = accuracy_curves(setup["results_dir"], RUNS, panels, "f")
    assert list(curves) == ["FGSM", "PGD (5 steps)"] and list(curves["FGSM"]) == ["A", "B"]
    for label, clean in (("A", 0.9), ("B", 0.8)):
        # ε = 0 is the clean accuracy; ε ascending; success rates and transfer rows are not accuracy
        assert curves["FGSM"][label].to_dict() == pytest.approx({0.0: clean, 0.1: clean / 2, 0.3: clean / 4})
        assert curves["PGD (5 steps)"][label].to_dict() == pytest.approx({0.0: clean, 0.1: clean / 3, 0.3: clean / 8})
    with pytest.raises(ConfigError, match="over two or more ε"):  # the sanity check's single ε is no curve
        accuracy_curves(setup["results_dir"], RUNS, parse_panels([{"attack": "pgd", "steps": 20}], "p"), "f")


def test_a_grid_with_its_own_zero_has_one_point_there():
    # AFD's sweeps and budgets start at ε = 0: that point is the curve's, not a second clean point
    rows = pd.DataFrame({"attack": ["clean", "pgd", "pgd", "pgd"], "eps": [None, 0.0, 0.1, 0.3],
                         "norm": ["", "linf", "linf", "linf"], "steps": [None, 40, 40, 40], "label": ["", "", "", ""],
                         "value": [0.99, 0.98, 0.5, 0.1]})
    curve = panel_curve(rows, parse_panels([{"attack": "pgd"}], "p")[0], run="r", key="f")
    assert curve.to_dict() == {0.0: 0.98, 0.1: 0.5, 0.3: 0.1}


def test_accuracy_curves_settings_errors_name_the_key(setup, tmp_path):
    def draw(**changes):
        return draw_study_figure(_params("accuracy_curves", **changes), "study_figures.fig", setup["runs_dir"],
                                 setup["results_dir"], setup["data_dir"], tmp_path / "x.png")

    with pytest.raises(ConfigError, match=r"study_figures\.fig': PGD of run tiny-a is swept in several settings"):
        draw(panels=[{"attack": "pgd"}])
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.runs\.tiny-a': its results have no accuracy of JSMA"):
        draw(panels=[{"attack": "jsma"}])
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.runs\.tiny-t0': no attack results"):
        draw(runs=dict(TRAINED))
    for panels, where in (([], r"\.panels'"), ({"attack": "fgsm"}, r"\.panels'"),
                          ([{"attack": "fgsm", "eps": 0.1}], r"\.panels\[0\]\.eps': unknown key"),
                          ([{"norm": "linf"}], r"\.panels\[0\]\.attack': missing"),
                          ([{"attack": "pgd", "steps": 0}], r"\.panels\[0\]\.steps'"),
                          ([{"attack": "fgsm"}, {"attack": "fgsm"}], r"\.panels': two panels would share a title")):
        with pytest.raises(ConfigError, match=r"study_figures\.fig" + where):
            draw(panels=panels)
    params = _params("accuracy_curves")
    del params["study_figures"]["fig"]["panels"]
    with pytest.raises(ConfigError, match=r"study_figures\.fig\.panels': missing"):
        draw_study_figure(params, "study_figures.fig", setup["runs_dir"], setup["results_dir"], setup["data_dir"],
                          tmp_path / "x.png")


@pytest.mark.parametrize("study", ["chan2020", "bashivan2021", "roth2018", "matyasko2018", "jakubovitz2018"])
def test_study_files_figures_parse_and_name_runs_of_the_study(study):
    params = yaml.safe_load((REPO / "studies" / f"{study}.yaml").read_text())
    assert params["study_figures"]
    for name, entry in params["study_figures"].items():
        assert name.startswith(f"{study}-") and entry["params_file"] == f"studies/{study}.yaml"
        figure = parse_study_figure(entry, f"study_figures.{name}")
        assert set(figure.runs) <= set(params["runs"])
        assert all(params["runs"][run]["dataset"] == entry["dataset"] for run in figure.runs)
    root = yaml.safe_load((REPO / "params.yaml").read_text())
    assert root["study_figures"] == {}  # dvc.yaml's foreach needs the key when no study is listed
