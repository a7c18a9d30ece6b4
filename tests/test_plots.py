"""Plot data for `dvc plots`: one accuracy-vs-ε file per study and attack setting, a line per run; tables
swept over a setting (training curves: tests/test_aggregate_training.py)."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from robust.plots import sweep_curves, sweep_tables, table_sweep
from robust.tables import Column, Row, Sweep, Table

REPO = Path(__file__).resolve().parents[1]


def _row(run, attack, eps, value, *, study="s", steps=-1, source="", metric="accuracy", label=""):
    return {"run": run, "study": study, "source": source, "attack": attack, "label": label, "norm": "linf",
            "eps": eps, "steps": steps, "metric": metric, "value": value}


def test_every_swept_white_box_attack_becomes_one_file_with_a_row_per_run_and_eps():
    results = pd.DataFrame([
        _row("b", "fgsm", 0.3, 0.1), _row("b", "fgsm", 0.1, 0.5), _row("a", "fgsm", 0.1, 0.6),
        _row("a", "fgsm", 0.3, 0.2),
        _row("a", "fgsm", 0.1, 0.4, source="b"),  # transfer: not a white-box curve
        _row("a", "fgsm", 0.1, 0.9, metric="success_rate"),
        _row("a", "pgd", 0.1, 0.3, steps=10),  # one ε: no curve
        _row("a", "pgd", 0.3, 0.1, steps=40),  # another setting of the same attack
        _row("a", "clean", math.nan, 0.99),
    ])
    curves = sweep_curves(results)
    assert list(curves) == ["s-fgsm_linf.csv"]
    curve = curves["s-fgsm_linf.csv"]
    assert list(curve.columns) == ["run", "eps", "accuracy"]
    assert curve.values.tolist() == [["a", 0.1, 0.6], ["a", 0.3, 0.2], ["b", 0.1, 0.5], ["b", 0.3, 0.1]]


def test_labelled_entries_and_step_counts_name_their_files():
    results = pd.DataFrame([_row("a", "pgd", eps, 0.5, steps=40, label="pgd-long") for eps in (0.1, 0.2)]
                           + [_row("a", "pgd", eps, 0.5, steps=10) for eps in (0.1, 0.2)])
    assert set(sweep_curves(results)) == {"s-pgd-long_linf_steps40.csv", "s-pgd_linf_steps10.csv"}


def test_dvc_yaml_declares_the_plots_with_a_template_that_draws_a_line_per_run():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    plots = dict(entry for plot in dvc["plots"] for entry in plot.items())
    settings = plots["metrics/plots"]
    assert settings["x"] == "eps" and settings["y"] == "accuracy"
    assert json.loads((REPO / ".dvc/plots/runs.json").read_text())["encoding"]["color"]["field"] == "run"
    for name, settings in plots.items():  # every plot: data the aggregate stage writes, a template that exists
        # a plot is named by its data folder, or by an id with its data file(s) under y
        paths = [name] if isinstance(settings["y"], str) else list(settings["y"])
        assert all(str(Path(path).parent if path.endswith(".csv") else path) in dvc["stages"]["aggregate"]["cmd"]
                   for path in paths), name
        template = json.loads((REPO / ".dvc" / "plots" / f"{settings['template']}.json").read_text())
        assert "<DVC_METRIC_DATA>" in json.dumps(template)
    # a plot of one file's column: every swept table, and the training curves' logged terms (AFD Fig. A5)
    files = [Path(path) for settings in plots.values() if isinstance(settings["y"], dict) for path in settings["y"]]
    assert {path.parent for path in files} == {Path("metrics/sweeps"), Path("metrics/training")}
    swept = {path.stem for path in files if path.parent == Path("metrics/sweeps")}
    assert swept == {name.removesuffix(".csv") for name in sweep_tables(pd.DataFrame(columns=[
        "run", "attack", "source", "metric", "value", "label", "norm", "eps", "steps"]))}


SWEPT = Table(id="t", title="λ sweep", source="x.txt, Table 9", sweep=Sweep("lambda", (0.0, 0.1, 1.0)),
              columns=(Column("Acc %", attack="clean", metric="accuracy", scale=100.0),
                       Column("ρ", attack="deepfool", metric="rho_adv", digits=3)),
              rows=(Row("λ = 0", "r0", (99.0, 0.2)), Row("λ = 0.1", "r1", (98.0, None)), Row("λ = 1", "r2", (95.0, 0.3))))


def test_a_table_swept_over_a_setting_gives_our_curve_beside_the_papers():
    results = pd.DataFrame([
        {**_row("r0", "clean", math.nan, 0.981234567), "steps": -1},
        {**_row("r0", "deepfool", math.nan, 0.15, metric="rho_adv"), "norm": "l2"},
        {**_row("r2", "clean", math.nan, 0.95), "steps": -1},  # r1 not run: only the paper's point
    ])
    frame = table_sweep(SWEPT, results)
    assert list(frame.columns) == ["lambda", "curve", "accuracy", "rho_adv"]
    # a cell without a number stays empty in the CSV (NaN), so the line skips it
    assert frame.fillna(-1).to_dict("records") == [
        {"lambda": 0.0, "curve": "reproduced", "accuracy": 98.1235, "rho_adv": 0.15},
        {"lambda": 0.0, "curve": "paper", "accuracy": 99.0, "rho_adv": 0.2},
        {"lambda": 0.1, "curve": "paper", "accuracy": 98.0, "rho_adv": -1},
        {"lambda": 1.0, "curve": "reproduced", "accuracy": 95.0, "rho_adv": -1},
        {"lambda": 1.0, "curve": "paper", "accuracy": 95.0, "rho_adv": 0.3},
    ]


def test_every_registered_sweep_table_has_a_value_per_row_and_a_field_per_column():
    files = sweep_tables(pd.DataFrame(columns=["run", "attack", "source", "metric", "value", "label", "norm",
                                               "eps", "steps"]))
    assert {"jakubovitz2018-table11.csv", "jakubovitz2018-table12.csv", "jakubovitz2018-table13.csv"} <= set(files)
    assert (files["jakubovitz2018-table13.csv"].curve == "paper").sum() == 10  # nothing run: the paper's curve
    with pytest.raises(ValueError, match="2 sweep values for 3 rows"):
        Table(id="bad", title="", source="", columns=SWEPT.columns, rows=SWEPT.rows, sweep=Sweep("lambda", (0, 1)))
