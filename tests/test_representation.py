"""AFD's representation analyses: sensitivity ‖E(x) − E(x′)‖/‖E(x)‖, dimensionality of E(x), and the
angles between the perturbations of E by different attacks (Table A7)."""

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from robust.errors import ConfigError
from robust.models import build_model
from robust.representation import (
    active_units,
    check_splittable,
    features,
    normalized_change,
    parse_representation,
    pca_dims,
    perturbation_angles,
    representation_rows,
    sensitivity,
)
from robust.results import RESULT_COLUMNS


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("resnet18-mnist", in_shape=[1, 28, 28], num_classes=10, width=0.25).eval()


@pytest.fixture(scope="module")
def data():
    generator = torch.Generator().manual_seed(1)
    return torch.rand(12, 1, 28, 28, generator=generator), torch.randint(0, 10, (12,), generator=generator)


def test_sensitivity_is_zero_when_the_input_does_not_move(model, data):
    x, y = data
    h = features(model, x, batch_size=5)
    assert torch.equal(normalized_change(h, h), torch.zeros(len(x)))
    # PGD with ε = 0 returns x itself
    change = sensitivity(model, x, y, eps=0.0, steps=3, step_size=0.01, batch_size=5,
                         generator=torch.Generator().manual_seed(0))
    assert torch.allclose(change, torch.zeros(len(x)), atol=1e-6)


def test_sensitivity_is_the_normalised_feature_change(model, data):
    x, y = data
    change = sensitivity(model, x, y, eps=0.3, steps=2, step_size=0.1, batch_size=12,
                         generator=torch.Generator().manual_seed(0))
    assert change.shape == (len(x),) and bool((change > 0).all())
    # by hand: the same PGD examples, the formula written out
    from robust.attacks import run_attack
    x_adv = run_attack("pgd", model, x, y, generator=torch.Generator().manual_seed(0), eps=0.3, steps=2,
                       step_size=0.1, random_start=True)
    with torch.no_grad():
        clean, perturbed = model.embed(x), model.embed(x_adv)
    expected = (clean - perturbed).norm(dim=1) / clean.norm(dim=1)
    assert torch.allclose(change, expected, atol=1e-6)


def test_batched_equals_per_example(model, data):
    x, y = data
    whole = features(model, x, batch_size=len(x))
    assert torch.allclose(features(model, x, batch_size=1), whole, atol=1e-6)
    # FGSM-like PGD (no random start, one step) draws nothing: batching cannot change it
    one = dict(eps=0.2, steps=1, step_size=0.2, random_start=False, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(sensitivity(model, x, y, batch_size=len(x), **one),
                          sensitivity(model, x, y, batch_size=1, **one), atol=1e-5)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_pca_dims_of_points_on_a_k_dimensional_subspace_is_k(k):
    generator = torch.Generator().manual_seed(k)
    basis = torch.linalg.qr(torch.randn(20, k, generator=generator)).Q  # 20-d space, k orthonormal directions
    coefficients = torch.randn(500, k, generator=generator)
    points = coefficients @ basis.T + torch.randn(20, generator=generator)  # an offset: PCA centres the points
    assert pca_dims(points) == k
    assert pca_dims(points, variance=0.5) <= k


def test_pca_dims_counts_components_up_to_the_variance_share():
    # variances 90, 9, 1 (in %): 99% needs the first two components, 99.5% all three
    points = torch.randn(4000, 3, generator=torch.Generator().manual_seed(0))
    points = (points - points.mean(0)) / points.std(0)
    points = points @ torch.linalg.cholesky(torch.cov(points.T)).inverse().T  # exactly white
    points = points * torch.tensor([90.0, 9.0, 1.0]).sqrt()
    assert pca_dims(points, variance=0.89) == 1
    assert pca_dims(points, variance=0.99) == 2
    assert pca_dims(points, variance=0.995) == 3
    assert pca_dims(torch.ones(10, 4)) == 0  # no variance at all


def test_active_units_counts_dimensions_non_zero_somewhere():
    h = torch.zeros(5, 6)
    h[0, 1], h[3, 4], h[2, 4] = 0.5, 1.0, -2.0
    assert active_units(h) == 2
    assert active_units(h, atol=1.5) == 1


def test_rows_follow_the_results_schema(model, data):
    x, y = data
    settings = parse_representation({"eps": [0.1, 0.3], "steps": 2, "step_size": [0.05, 0.15]}, "attack.representation")
    rows = representation_rows(model, x, y, settings, batch_size=5, seed=0)
    assert all(set(row) == set(RESULT_COLUMNS) - {"run", "study", "dataset", "arch", "defense", "profile", "seed",
                                                   "source"} for row in rows)
    by_metric = {(row["metric"], None if math.isnan(row["eps"]) else row["eps"]): row for row in rows}
    assert by_metric[("feature_dims", None)]["value"] == 16  # 64-d features at a quarter width
    assert 1 <= by_metric[("pca_dims_99", None)]["value"] <= by_metric[("active_units", None)]["value"] <= 16
    assert {eps for metric, eps in by_metric if metric == "sensitivity"} == {0.1, 0.3}
    assert all(row["attack"] == "representation" and row["n"] == len(y) for row in rows)
    assert by_metric[("sensitivity", 0.3)]["norm"] == "linf" and by_metric[("sensitivity", 0.3)]["steps"] == 2
    # deterministic: its own seeded generator
    assert pd.DataFrame(rows).equals(pd.DataFrame(representation_rows(model, x, y, settings, batch_size=5, seed=0)))


def test_perturbation_angles_are_arccos_of_the_cosine_where_both_move():
    clean = torch.zeros(5, 2)
    reference = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [2.0, 2.0]])
    other = torch.tensor([[3.0, 0.0], [0.0, 2.0], [-1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    angles = perturbation_angles(clean, reference, other)  # row 3: the reference did not move E, no angle
    assert angles == pytest.approx(torch.tensor([0.0, math.pi / 2, math.pi, math.pi / 4]), abs=1e-6)
    shifted = perturbation_angles(clean + 5, reference + 5, other + 5)  # only the perturbations matter
    assert shifted == pytest.approx(angles, abs=1e-5)


def test_angle_rows_compare_each_attack_with_the_reference(model, data):
    x, y = data
    fgsm = {"name": "fgsm", "eps": 0.3}
    settings = parse_representation({"eps": [0.3], "steps": 2, "step_size": 0.1, "angles": {
        "reference": fgsm, "attacks": [fgsm, {"name": "fgm", "eps": 2.0}, {"name": "ddn", "steps": 5}]}},
        "attack.representation")
    rows = [row for row in representation_rows(model, x, y, settings, batch_size=5, seed=0)
            if row["metric"] == "representation_angle"]
    by_attack = {row["attack"]: row for row in rows}
    assert list(by_attack) == ["fgsm", "fgm", "ddn"]
    assert by_attack["fgsm"]["value"] == pytest.approx(0.0, abs=1e-3)  # the reference itself: FGSM is deterministic
    assert 0.0 < by_attack["fgm"]["value"] < math.pi and by_attack["fgm"]["n"] == len(y)
    assert (by_attack["fgm"]["norm"], by_attack["fgm"]["eps"]) == ("l2", 2.0)
    assert math.isnan(by_attack["ddn"]["eps"]) and by_attack["ddn"]["steps"] == 5 and by_attack["ddn"]["n"] <= len(y)


@pytest.mark.parametrize("angles, key", [
    ([{"name": "fgsm", "eps": 0.3}], r"representation\.angles'"),
    ({"reference": {"name": "fgsm", "eps": 0.3}}, r"representation\.angles'"),
    ({"reference": {"name": "fgsm", "eps": [0.1, 0.3]}, "attacks": [{"name": "fgsm", "eps": 0.1}]},
     r"representation\.angles\.reference'"),
    ({"reference": {"name": "fgsm", "eps": 0.3}, "attacks": [{"name": "fgsn", "eps": 0.1}]},
     r"representation\.angles\.attacks\[0\]"),
    ({"reference": {"name": "fgsm", "eps": 0.3}, "attacks": [{"name": "ddn", "budgets": [0, 1]}]},
     r"representation\.angles': budgets"),
])
def test_bad_angle_settings_name_their_key(angles, key):
    with pytest.raises(ConfigError, match=key):
        parse_representation({"eps": [0.3], "steps": 2, "step_size": 0.1, "angles": angles}, "attack.representation")


@pytest.mark.parametrize("config, key", [
    ({"eps": 0.3, "steps": 2, "step_size": 0.1}, r"attack\.representation\.eps'"),
    ({"eps": [0.3, 0.3], "steps": 2, "step_size": 0.1}, r"attack\.representation\.eps'"),
    ({"eps": [0.3], "steps": 0, "step_size": 0.1}, r"attack\.representation\.steps'"),
    ({"eps": [0.1, 0.3], "steps": 2, "step_size": [0.1]}, r"attack\.representation\.step_size'"),
    ({"eps": [0.3], "steps": 2}, r"attack\.representation\.step_size': required"),
    ({"eps": [0.3], "steps": 2, "step_size": 0.1, "norm": "l2"}, r"attack\.representation\.norm'"),
])
def test_bad_settings_name_their_key(config, key):
    with pytest.raises(ConfigError, match=key):
        parse_representation(config, "attack.representation")


def test_a_model_without_an_embedding_is_refused():
    unsplit = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.ReLU())
    with pytest.raises(ConfigError, match=r"attack\.representation'"):
        check_splittable(unsplit, "attack.representation")


# ---- the attack stage's optional `representation` key --------------------------------------------

def _workspace(root, arch):
    from robust.io import save_torch
    from robust.params import load_params
    from robust.pipeline import prepare_dataset

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    params["profiles"]["smoke"].update(max_train=30, max_test=12)
    prepare_dataset(params, "data", root / "prepared")
    model = build_model(arch, in_shape=[1, 28, 28], num_classes=10, width=0.25)
    config = {"arch": arch, "in_shape": [1, 28, 28], "num_classes": 10, "width": 0.25, "dataset": "digits",
              "profile": "smoke", "base": "b", "run": "r", "study": "s", "defense": {"name": "none"}}
    save_torch({"model": model.state_dict(), "config": config}, root / "run" / "model.pt")
    params["attack"] = {"batch_size": 8, "suite": [{"name": "fgsm", "eps": 0.1}],
                        "representation": {"eps": [0.3], "steps": 2, "step_size": 0.15},
                        "profiles": {"smoke": {"representation": {"eps": [0.1, 0.3], "steps": 2, "step_size": 0.15}}}}
    return params


def test_the_attack_stage_appends_representation_rows(tmp_path):
    from robust.pipeline import attack_run

    params = _workspace(tmp_path, "resnet18-mnist-norm")
    frame = attack_run(params, "attack", tmp_path / "run", tmp_path / "prepared", tmp_path / "rows.parquet",
                       tmp_path / "adv.pt")
    rows = frame[frame.attack == "representation"]
    assert set(rows.metric) == {"feature_dims", "active_units", "pca_dims_99", "sensitivity", "sensitivity_std"}
    assert sorted(rows[rows.metric == "sensitivity"].eps) == [0.1, 0.3]  # the smoke profile's grid
    assert (rows.run == "r").all() and (rows.source == "").all()
    assert set(frame[frame.attack == "fgsm"].metric) >= {"accuracy"}  # the suite's rows are still there


def test_the_attack_stage_refuses_a_model_without_an_embedding(tmp_path, monkeypatch):
    from robust.models import ARCHS
    from robust.pipeline import attack_run

    # every registered architecture has an embedding: one without, for this test only
    monkeypatch.setitem(ARCHS._entries, "unsplit", lambda *, in_shape, num_classes, width: nn.Sequential(
        nn.Flatten(), nn.Linear(784, num_classes), nn.ReLU()))
    params = _workspace(tmp_path, "unsplit")
    with pytest.raises(ConfigError, match=r"attack\.representation'"):
        attack_run(params, "attack", tmp_path / "run", tmp_path / "prepared", tmp_path / "rows.parquet",
                   tmp_path / "adv.pt")
    params["attack"]["profiles"]["smoke"]["representation"] = {"eps": [0.3], "steps": 2, "step_size": 0.1,
                                                                "layer": 3}
    with pytest.raises(ConfigError, match=r"attack\.representation\.layer'"):
        attack_run(params, "attack", tmp_path / "run", tmp_path / "prepared", tmp_path / "rows.parquet",
                   tmp_path / "adv.pt")
    assert not (tmp_path / "rows.parquet").exists()
