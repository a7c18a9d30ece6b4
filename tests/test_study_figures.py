"""Tests for the study figures: JARN Figs. 3–4 (loss surfaces, input Jacobians) and AFD Fig. 4.

Tiny fully-connected models on a few digits images, prepared and saved in a temporary folder in
the pipeline's formats: the directions of the loss surface (sign of the gradient; the random one
orthogonal and of equal L2 norm), its centre (the clean loss), batching, the true-class gradient,
the gradient matrix (log₁₀ class means; diagonal kept in the matrix and blanked for the colour
scale), every kind drawn twice to identical PNG bytes, and the settings' errors. The study files'
own entries are checked against their runs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from robust import data
from robust.errors import ConfigError
from robust.input_gradients import (class_gradient_matrix, class_gradient_norms, display_normalized,
                                    off_diagonal, true_class_gradient)
from robust.io import save_torch
from robust.loss_surface import fgsm_direction, grid_values, loss_surface, orthogonal_direction
from robust.models import build_model
from robust.study_figure_drawing import matrix_colour_range
from robust.study_figures import KINDS, draw_study_figure, parse_study_figure

REPO = Path(__file__).resolve().parents[1]
CLASSES = 10
PARAMS = {"profile": "smoke", "seed": 0, "profiles": {"smoke": {"eval_examples": 30}}}
RUNS = {"tiny-a": "A", "tiny-b": "B"}


def _model(seed: int, shape=(1, 28, 28)) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("critic-fc", in_shape=shape, num_classes=CLASSES, width=0.02).eval()


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
        pd.DataFrame(rows).to_parquet(results_dir / f"{run}.parquet")
    return {"root": root, "data_dir": data_dir, "runs_dir": runs_dir, "results_dir": results_dir,
            "x": x[:6], "y": y[:6], "model": _model(0, tuple(x.shape[1:]))}


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


ENTRIES = {
    "loss_surface": {"eps": 0.3, "grid": 5, "examples": 2, "batch_size": 64},
    "input_jacobians": {"examples": 3},
    "sensitivity_and_class_gradients": {"batch_size": 16},
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


@pytest.mark.parametrize("study", ["chan2020", "bashivan2021"])
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
