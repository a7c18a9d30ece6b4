"""ε sweeps and AUC, perturbation-norm and success-rate rows, sanity checks, transfer matrices."""

from __future__ import annotations

import functools

import logging
import math

import pandas as pd
import pytest
import torch
from prototypes import trained_classifier
from torch import nn

import robust.evaluate as evaluate_module
from robust.aggregate import summarize
from robust.errors import ConfigError, MissingExtra
from robust.evaluate import Outcome, evaluate, parse_suite, predictions, sweep_auc
from robust.results import RESULT_COLUMNS, metric_key
from robust.plots import sweep_curves
from robust.sanity import LARGE_EPS_LABEL, large_eps_check, large_eps_settings, suite_checks, violations
from robust.tables.transfer import transfer_matrices
from robust.transfer import load_sources, save_adversarial, transfer_rows


@pytest.fixture(scope="module")
def trained():
    return trained_classifier(120, min_accuracy=0.85)


def _by(rows, **match):
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def _value(rows, **match):
    (row,) = _by(rows, **match)
    return row["value"]


# ---------------------------------------------------------------- sweeps and AUC

def test_a_sweep_expands_list_settings_element_by_element():
    specs = parse_suite([{"name": "pgd", "eps": [0.1, 0.2, 0.3], "step_size": [0.01, 0.02, 0.03], "steps": 5},
                         {"name": "fgsm", "eps": 0.1}])
    assert [(s.eps, s.settings["step_size"], s.steps, s.sweep) for s in specs[:3]] == [
        (0.1, 0.01, 5, 0), (0.2, 0.02, 5, 0), (0.3, 0.03, 5, 0)]
    assert specs[3].sweep is None and specs[3].eps == 0.1


@pytest.mark.parametrize("entry, key", [
    ({"name": "pgd", "eps": [0.1, 0.2], "step_size": [0.01], "steps": 5}, r"attack\.suite\[0\]\.step_size"),
    ({"name": "pgd", "eps": 0.1, "step_size": [0.01, 0.02], "steps": 5}, r"attack\.suite\[0\]\.step_size"),
    ({"name": "pgd", "eps": [0.1, 0.1], "step_size": 0.01, "steps": 5}, r"attack\.suite\[0\]\.eps"),
    ({"name": "pgd", "eps": [0.1, 1.5], "step_size": 0.01, "steps": 5}, r"attack\.suite\[0\]\.eps"),
])
def test_bad_sweeps_name_the_key(entry, key):
    with pytest.raises(ConfigError, match=key):
        parse_suite([entry])


def test_entries_differing_only_in_other_settings_need_distinct_labels():
    lrc = {"name": "uniform_noise", "eps": 0.1}
    with pytest.raises(ConfigError, match=r"attack\.suite\[1\]\.label"):
        parse_suite([{**lrc, "draws": 1}, {**lrc, "draws": 10}])
    specs = parse_suite([{**lrc, "draws": 1}, {**lrc, "draws": 10, "label": "noise-worst-of-10"}])
    assert [s.label for s in specs] == ["", "noise-worst-of-10"]
    row = pd.DataFrame([dict(attack="uniform_noise", label="noise-worst-of-10", source="", norm="linf", eps=0.1,
                             steps=-1, metric="accuracy")]).iloc[0]
    assert metric_key(row) == "noise-worst-of-10_linf_eps0.1_accuracy"


def test_auc_is_the_normalised_trapezoid_area():
    assert sweep_auc([0.0, 0.1, 0.2], [1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert sweep_auc([0.0, 0.3], [1.0, 0.0]) == pytest.approx(0.5)
    assert sweep_auc([0.2, 0.0, 0.1], [0.0, 1.0, 0.5]) == pytest.approx(0.5)  # order of the grid is irrelevant
    with pytest.raises(ValueError):
        sweep_auc([0.1], [0.5])


def test_evaluate_writes_a_monotone_sweep_and_its_auc(trained):
    model, x, y = trained
    grid = [0.0, 0.05, 0.1, 0.2]
    suite = parse_suite([{"name": "pgd", "eps": grid, "step_size": [max(e / 4, 1e-3) for e in grid], "steps": 8,
                          "random_start": False}])
    rows = evaluate(model, x, y, suite, batch_size=64, seed=0).rows
    accuracy = [_value(rows, attack="pgd", eps=e, metric="accuracy") for e in grid]
    assert accuracy[0] == _value(rows, attack="clean", metric="accuracy")  # ε = 0 is the clean accuracy
    assert all(a >= b for a, b in zip(accuracy, accuracy[1:])) and accuracy[-1] < accuracy[0]
    auc = _value(rows, attack="pgd", metric="auc")
    assert auc == pytest.approx(sweep_auc(grid, accuracy)) and 0 < auc < accuracy[0]
    assert math.isnan(_by(rows, metric="auc")[0]["eps"])


# ---------------------------------------------------------------- norms and success rates

def test_success_rate_and_norms_describe_the_flipped_points(trained):
    model, x, y = trained
    suite = parse_suite([{"name": "fgsm", "eps": 0.1}, {"name": "deepfool", "steps": 50, "overshoot": 0.02}])
    result = evaluate(model, x, y, suite, batch_size=64, seed=0)
    rows, correct = result.rows, result.correct
    for outcome in result.outcomes:
        name = outcome.spec.name
        flipped = outcome.flipped
        assert _value(rows, attack=name, metric="success_rate") == pytest.approx(flipped.sum() / correct.sum())
        assert _value(rows, attack=name, metric="median_norm") == pytest.approx(outcome.norms[flipped].median())
        assert _value(rows, attack=name, metric="mean_norm") == pytest.approx(outcome.norms[flipped].mean())
    assert _value(rows, attack="fgsm", metric="median_norm") == pytest.approx(0.1, abs=1e-6)  # one full sign step
    assert _value(rows, attack="deepfool", metric="success_rate") == 1.0
    assert _value(rows, attack="fgsm", metric="accuracy") + _value(rows, attack="fgsm", metric="success_rate") * \
        correct.float().mean() == pytest.approx(correct.float().mean())


def test_attacks_missing_an_extra_are_skipped_with_a_warning(trained, monkeypatch, caplog):
    model, x, y = trained
    real = evaluate_module.run_attack

    def without_fgm(name, *args, **kwargs):
        if name == "fgm":
            raise MissingExtra("attack 'fgm'", "somepackage", "extra")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(evaluate_module, "run_attack", without_fgm)
    with caplog.at_level(logging.WARNING):
        rows = evaluate(model, x, y, parse_suite([{"name": "fgm", "eps": 0.5}, {"name": "fgsm", "eps": 0.05}]),
                        batch_size=64, seed=0).rows
    assert not _by(rows, attack="fgm") and _by(rows, attack="fgsm")
    assert "pip install 'robust[extra]'" in caplog.text


# ---------------------------------------------------------------- sanity checks

def _acc(attack, norm, eps, value, steps=-1, n=100):
    return {"attack": attack, "label": "", "norm": norm, "eps": eps, "steps": steps, "metric": "accuracy",
            "value": value, "n": n}


@pytest.mark.parametrize("iterative, holds", [(0.30, True), (0.41, True), (0.43, False)])
def test_iterative_attack_must_not_be_weaker_than_single_step(iterative, holds):
    rows = [_acc("fgsm", "linf", 0.1, 0.40), _acc("pgd", "linf", 0.1, iterative, steps=10),
            _acc("pgd", "linf", 0.2, 0.9, steps=10)]  # no FGSM at 0.2: nothing to compare
    (check,) = suite_checks(rows)
    assert check["metric"] == "check_iterative_le_single_step" and check["eps"] == 0.1
    assert check["value"] == float(holds)


def test_autoattack_must_not_be_weaker_than_pgd():
    rows = [_acc("pgd", "linf", 0.1, 0.30, steps=10), _acc("pgd", "linf", 0.1, 0.25, steps=40),
            _acc("autoattack", "linf", 0.1, 0.28)]
    (check,) = suite_checks(rows)
    assert check["metric"] == "check_autoattack_le_pgd" and check["value"] == 0.0  # weaker than PGD-40


@pytest.mark.parametrize("square, holds", [(0.30, True), (0.28, True), (0.20, False)])
def test_pgd_must_not_be_weaker_than_the_gradient_free_square_attack(square, holds):
    rows = [_acc("pgd", "linf", 0.1, 0.29, steps=40), _acc("square", "linf", 0.1, square),
            _acc("pgd", "linf", 0.1, 0.1, steps=40, n=20)]  # other points: not compared
    (check,) = suite_checks(rows)
    # stored on the PGD row: its number is the one a masked gradient inflates
    assert (check["attack"], check["steps"], check["metric"]) == ("pgd", 40, "check_pgd_le_gradient_free")
    assert check["value"] == float(holds)


def test_checks_compare_only_attacks_on_the_same_points():
    # AutoAttack on a 20-point subset (``examples``) against PGD and FGSM on all 100 points: not comparable
    rows = [_acc("pgd", "linf", 0.1, 0.25, steps=40), _acc("fgsm", "linf", 0.1, 0.2),
            _acc("autoattack", "linf", 0.1, 0.5, n=20), _acc("pgd", "linf", 0.1, 0.3, steps=10, n=20)]
    checks = {(c["attack"], c["n"]): c["value"] for c in suite_checks(rows)}
    assert checks == {("pgd", 100): 0.0, ("autoattack", 20): 0.0}


class _Quantized(nn.Module):
    """Rounds its input first: zero input gradients everywhere, the classic masked model."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 4) / 4)


def test_large_eps_check_passes_a_plain_model_and_flags_a_masked_one(trained):
    model, x, y = trained
    settings, limit = large_eps_settings(None, "attack.sanity")
    for candidate, holds in [(model, True), (_Quantized(model).eval(), False)]:
        result = evaluate(candidate, x, y, [], batch_size=64, seed=0)
        accuracy, check = large_eps_check(candidate, x, y, result, settings, limit, batch_size=64, seed=0)
        assert check["metric"] == "check_large_eps_reaches_zero" and check["value"] == float(holds), accuracy
        assert (accuracy["eps"], accuracy["steps"]) == (0.5, 20)
        assert accuracy["label"] == check["label"] == LARGE_EPS_LABEL


def test_the_large_eps_pgd_stays_off_the_suites_pgd_curve(trained):
    model, x, y = trained
    settings, limit = large_eps_settings(None, "attack.sanity")
    suite = parse_suite([{"name": "pgd", "eps": [0.1, 0.2], "steps": 20, "step_size": 0.02}])
    result = evaluate(model, x, y, suite, batch_size=64, seed=0)
    rows = result.rows + large_eps_check(model, x, y, result, settings, limit, batch_size=64, seed=0)
    frame = pd.DataFrame([{**row, "run": "r", "source": ""} for row in rows])
    (name, curve), = sweep_curves(frame.assign(study="s")).items()
    assert name == "s-pgd_linf_steps20.csv" and sorted(curve.eps) == [0.1, 0.2]


def test_a_large_eps_pgd_the_suite_ran_is_not_reported_twice(trained):
    model, x, y = trained
    settings, limit = large_eps_settings(None, "attack.sanity")
    result = evaluate(model, x, y, parse_suite([{"name": "pgd", **settings}]), batch_size=64, seed=0)
    check, = large_eps_check(model, x, y, result, settings, limit, batch_size=64, seed=0)
    assert check["metric"] == "check_large_eps_reaches_zero" and check["label"] == ""


def test_large_eps_settings_are_validated():
    with pytest.raises(ConfigError, match=r"attack\.sanity\.large_eps"):
        large_eps_settings({"large_eps": 2.0}, "attack.sanity")
    with pytest.raises(ConfigError, match=r"attack\.sanity\.eps"):
        large_eps_settings({"eps": 0.3}, "attack.sanity")


# ---------------------------------------------------------------- transfer

def _twin(seed: int) -> nn.Module:
    """A second model of the fixture's task, trained from another initialisation."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 4)).eval()


def test_transfer_matrix_diagonal_is_white_box_and_checks_flag_masking(trained, tmp_path):
    model, x, y = trained
    indices = torch.arange(len(y))
    spec = parse_suite([{"name": "pgd", "eps": 0.1, "steps": 10, "step_size": 0.025, "random_start": False}])
    result = evaluate(model, x, y, spec, batch_size=64, seed=0, keep=spec)
    predict = functools.partial(predictions, model, batch_size=64)
    save_adversarial(result.outcomes, indices, tmp_path / "a.pt", predict)
    # a "source" whose examples are the clean points: transfer from it beats nothing
    clean = Outcome(spec[0], result.correct, ~result.correct, torch.zeros(len(y)), x.clone())
    save_adversarial([clean], indices, tmp_path / "b.pt", predict)
    sources = load_sources(tmp_path)
    assert list(sources) == ["a", "b"]

    rows = transfer_rows(model, x, y, indices, sources, target="a", batch_size=64)
    whitebox = _value(result.rows, attack="pgd", metric="accuracy")
    assert _value(rows, source="a", metric="accuracy") == pytest.approx(whitebox)
    assert _value(rows, source="b", metric="accuracy") == pytest.approx(result.correct.float().mean())
    assert _value(rows, source="b", metric="check_transfer_ge_whitebox") == 1.0

    # the same examples judged as if "b" were the target: transfer from "a" beats b's "white-box"
    rows = transfer_rows(model, x, y, indices, sources, target="b", batch_size=64)
    assert _value(rows, source="a", metric="check_transfer_ge_whitebox") == 0.0

    with pytest.raises(ValueError, match="other test points"):
        transfer_rows(model, x, y, indices.flip(0), sources, target="a", batch_size=64)


def test_target_agreement_is_the_share_of_fooling_examples_given_the_source_adversarial_class(trained, tmp_path):
    model, x, y = trained
    indices = torch.arange(len(y))
    spec = parse_suite([{"name": "deepfool", "steps": 50}])
    result = evaluate(model, x, y, spec, batch_size=64, seed=0, keep=spec)
    save_adversarial(result.outcomes, indices, tmp_path / "a.pt", functools.partial(predictions, model, batch_size=64))
    sources = load_sources(tmp_path)
    flipped = result.outcomes[0].flipped
    assert flipped.sum() > 10, "too few fooled examples for a meaningful test"

    # judged by the model that was fooled: it agrees with itself on every example
    rows = transfer_rows(model, x, y, indices, sources, target="a", batch_size=64)
    assert _value(rows, source="a", metric="target_agreement") == 1.0
    assert next(r["n"] for r in rows if r["metric"] == "target_agreement") == int(flipped.sum())
    # a judge that always predicts class 0 agrees exactly where the source was fooled into class 0
    constant = nn.Sequential(nn.Flatten(), nn.Linear(64, 4)).eval()
    with torch.no_grad():
        constant[1].weight.zero_()
        constant[1].bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    rows = transfer_rows(constant, x, y, indices, sources, target="judge", batch_size=64)
    fooled_into_zero = (sources["a"]["attacks"][0]["pred"][flipped] == 0).float().mean().item()
    assert _value(rows, source="a", metric="target_agreement") == pytest.approx(fooled_into_zero)


# ---------------------------------------------------------------- summary keys

def test_metric_keys_separate_steps_norms_and_sources():
    frame = pd.DataFrame([dict(row, label="") for row in [
        dict(run="r", source="", attack="pgd", norm="linf", eps=0.1, steps=5, metric="accuracy", value=0.5),
        dict(run="r", source="", attack="pgd", norm="linf", eps=0.1, steps=20, metric="accuracy", value=0.4),
        dict(run="r", source="", attack="deepfool", norm="l2", eps=math.nan, steps=50, metric="rho_adv", value=0.2),
        dict(run="r", source="s", attack="pgd", norm="linf", eps=0.1, steps=5, metric="accuracy", value=0.7),
        dict(run="r", source="", attack="pgd", norm="linf", eps=0.1, steps=5, metric="median_norm", value=math.nan),
        dict(run="r", source="", attack="pgd", norm="linf", eps=0.5, steps=20, metric="check_large_eps_reaches_zero",
             value=0.0),
    ]])
    keys = [metric_key(row) for row in frame.itertuples()]
    assert keys[:4] == ["pgd_linf_eps0.1_steps5_accuracy", "pgd_linf_eps0.1_steps20_accuracy",
                        "deepfool_l2_steps50_rho_adv", "from_s_pgd_linf_eps0.1_steps5_accuracy"]
    summary = summarize(frame)["r"]
    assert summary["checks_violated"] == 1 and len(violations(frame)) == 1
    assert not any("median_norm" in key for key in summary)  # NaN and non-headline metrics stay in the parquet
    assert set(RESULT_COLUMNS) >= set(frame.columns)


def test_transfer_matrix_has_targets_as_rows_and_marks_failed_checks():
    def row(run, source, metric, value):
        return dict(run=run, study="s", profile="smoke", source=source, attack="pgd", label="", norm="linf", eps=0.1,
                    steps=10, metric=metric, value=value, n=100)

    frame = pd.DataFrame([row("a", "a", "accuracy", 0.10), row("a", "b", "accuracy", 0.60),
                          row("b", "a", "accuracy", 0.05), row("b", "b", "accuracy", 0.50),
                          row("b", "a", "check_transfer_ge_whitebox", 0.0),
                          row("a", "b", "check_transfer_ge_whitebox", 1.0)])
    page = transfer_matrices(frame)["s"]
    lines = [line for line in page.splitlines() if line.startswith("| a") or line.startswith("| b")]
    assert [line.split("|")[1].strip() for line in lines] == ["a", "b"]
    assert [cell.strip() for cell in lines[0].split("|")[2:4]] == ["10.0", "60.0"]
    assert [cell.strip() for cell in lines[1].split("|")[2:4]] == ["5.0 ⚠", "50.0"]
    assert "pgd (linf, ε = 0.1, 10 steps)" in page
    assert transfer_matrices(frame[frame.source == frame.run]) == {}  # diagonals only: nothing to show
