"""Plot data for `dvc plots`: one accuracy-vs-ε file per study and attack setting, a line per run."""

import json
import math
from pathlib import Path

import pandas as pd
import yaml

from robust.plots import sweep_curves

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
    (plot,) = dvc["plots"]
    (path, settings), = plot.items()
    assert path in dvc["stages"]["aggregate"]["cmd"] and settings["x"] == "eps" and settings["y"] == "accuracy"
    template = json.loads((REPO / ".dvc" / "plots" / f"{settings['template']}.json").read_text())
    assert template["encoding"]["color"]["field"] == "run"
    assert "<DVC_METRIC_DATA>" in json.dumps(template)
