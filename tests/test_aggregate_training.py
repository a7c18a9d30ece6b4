"""Training curves for `dvc plots`: a run's base pretraining and its own fine-tune on one epoch axis."""

import importlib.util
import json
import logging
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from robust.aggregate import aggregate
from robust.io import save_parquet
from robust.plots import TRAINING_COLUMNS, training_curves
from robust.results import RESULT_COLUMNS

REPO = Path(__file__).resolve().parents[1]

# Two bases, three runs of study "s": r1 and r2 share base b1, r2 fine-tunes 0 epochs, b2 and r3 log
# only their cross-entropy. Study "t" has r4, whose fine-tune never ran here, and r5, not in the index.
INDEX = {"runs": {"r1": {"base": "b1", "study": "s"}, "r2": {"base": "b1", "study": "s"},
                  "r3": {"base": "b2", "study": "s"}, "r4": {"base": "b1", "study": "t"}}}
STUDIES = {"r1": "s", "r2": "s", "r3": "s", "r4": "t", "r5": "t"}


def _history(epochs, accuracy, **logs):
    return pd.DataFrame({"epoch": list(epochs), "lr": 0.1, **logs, "held_out_accuracy": accuracy})


def _layout(root: Path) -> tuple[Path, Path]:
    bases, runs = root / "data" / "bases", root / "data" / "runs"
    histories = {
        bases / "b1": _history([1, 2, 3], [0.5, 0.7, 0.8], ce=[2.0, 1.0, 0.5], loss=[2.5, 1.5, 1.0]),
        bases / "b2": _history([1, 2], [0.4, 0.6], ce=[2.2, 1.1]),
        runs / "r1": _history([1, 2], [0.85, 0.9], ce=[0.4, 0.3], jacobian_norm=[5.0, 4.0], loss=[0.9, 0.8]),
        runs / "r2": pd.DataFrame(),  # what a 0-epoch fine-tune saves
        runs / "r3": _history([1], [0.65], ce=[1.0]),
    }
    for directory, history in histories.items():
        save_parquet(history, directory / "history.parquet")
    return bases, runs


def _results(runs=STUDIES) -> pd.DataFrame:
    return pd.DataFrame([{"run": run, "study": study, "metric": "accuracy", "value": 0.5}
                         for run, study in runs.items() for _ in range(2)])  # a run has many result rows


def test_each_run_continues_its_base_pretraining_with_its_own_fine_tune(tmp_path):
    curves = training_curves(_results(), INDEX, *_layout(tmp_path))
    assert list(curves) == ["s.csv"]  # study t: no run with both histories
    curve = curves["s.csv"]
    assert list(curve.columns) == TRAINING_COLUMNS
    assert curve.values.tolist() == [
        ["r1", "pretrain", 1, 0.5, 2.5], ["r1", "pretrain", 2, 0.7, 1.5], ["r1", "pretrain", 3, 0.8, 1.0],
        ["r1", "finetune", 4, 0.85, 0.9], ["r1", "finetune", 5, 0.9, 0.8],
        # the shared base's pretraining again: a 0-epoch run is its base as trained
        ["r2", "pretrain", 1, 0.5, 2.5], ["r2", "pretrain", 2, 0.7, 1.5], ["r2", "pretrain", 3, 0.8, 1.0],
        # no `loss` logged: the cross-entropy stands in
        ["r3", "pretrain", 1, 0.4, 2.2], ["r3", "pretrain", 2, 0.6, 1.1], ["r3", "finetune", 3, 0.65, 1.0],
    ]


def test_a_history_without_any_loss_leaves_the_loss_empty(tmp_path):
    bases, runs = _layout(tmp_path)
    save_parquet(_history([1], [0.7], adv_fraction=[0.5]), runs / "r3" / "history.parquet")
    curve = training_curves(_results({"r3": "s"}), INDEX, bases, runs)["s.csv"]
    assert curve.loss.tolist()[:2] == [2.2, 1.1] and math.isnan(curve.loss.iloc[2])
    assert curve.to_csv(index=False).splitlines()[-1] == "r3,finetune,3,0.7,"


def test_runs_without_histories_are_skipped_and_logged(tmp_path, caplog):
    bases, runs = _layout(tmp_path)
    (bases / "b2" / "history.parquet").unlink()
    with caplog.at_level(logging.INFO, logger="robust.plots"):
        curves = training_curves(_results(), INDEX, bases, runs)
    assert sorted(curves["s.csv"].run.unique()) == ["r1", "r2"]
    assert "run r3: no training curve, missing" in caplog.text and "b2" in caplog.text
    assert "run r4: no training curve, missing" in caplog.text
    assert "run r5: no base in the index" in caplog.text


def test_the_same_histories_give_byte_identical_files_whatever_the_results_order(tmp_path):
    bases, runs = _layout(tmp_path)
    first = training_curves(_results(), INDEX, bases, runs)
    shuffled = _results().sample(frac=1.0, random_state=3)
    second = training_curves(shuffled, INDEX, bases, runs)
    assert list(first) == list(second)
    assert all(first[name].to_csv(index=False) == second[name].to_csv(index=False) for name in first)


def test_aggregate_needs_the_histories_and_the_index_to_write_training_curves(tmp_path):
    with pytest.raises(ValueError, match="bases_dir, runs_dir and the index"):
        aggregate([], results_out=tmp_path / "r.parquet", summary_out=tmp_path / "s.json",
                  tables_dir=tmp_path, training_dir=tmp_path / "training", bases_dir=tmp_path)


def _stage_main():
    spec = importlib.util.spec_from_file_location("aggregate_stage", REPO / "stages" / "aggregate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _project(root: Path) -> None:
    """The files the stage reads: result rows, histories and the index (params.yaml + one study file)."""
    _layout(root)
    meta = {"dataset": "digits", "arch": "a", "defense": "none", "profile": "smoke", "seed": 0, "source": "",
            "label": "", "norm": "", "eps": math.nan, "steps": -1, "n": 10}
    rows = [{**meta, "run": run, "study": study, "attack": "clean", "metric": "accuracy", "value": 0.9}
            for run, study in STUDIES.items()]
    save_parquet(pd.DataFrame(rows)[RESULT_COLUMNS], root / "data" / "results" / "all.parquet")
    (root / "params.yaml").write_text(yaml.safe_dump({"runs": {"r1": INDEX["runs"]["r1"]}}))
    (root / "study.yaml").write_text(yaml.safe_dump({"runs": {run: fields for run, fields in INDEX["runs"].items()
                                                              if run != "r1"}}))
    (root / "dvc.yaml").write_text(yaml.safe_dump({"vars": ["study.yaml"], "stages": {}}))


COMMAND = ["data/results", "--results-out", "metrics/results.parquet", "--summary", "metrics/summary.json",
           "--tables", "metrics/tables", "--plots", "metrics/plots"]


def test_the_stage_writes_training_curves_only_when_asked(tmp_path, monkeypatch):
    _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    main = _stage_main()
    result = CliRunner().invoke(main, COMMAND)  # dvc.yaml's command as it stands
    assert result.exit_code == 0, result.output
    assert (tmp_path / "metrics" / "summary.json").is_file() and not (tmp_path / "metrics" / "training").exists()
    options = ["--training", "metrics/training", "--bases", "data/bases", "--runs", "data/runs"]
    result = CliRunner().invoke(main, COMMAND + options)
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in (tmp_path / "metrics" / "training").iterdir()) == ["s.csv"]
    curve = pd.read_csv(tmp_path / "metrics" / "training" / "s.csv")
    assert curve.groupby("run").epoch.max().to_dict() == {"r1": 5, "r2": 3, "r3": 3}
    result = CliRunner().invoke(main, COMMAND + options[:2])
    assert result.exit_code != 0 and "--training needs --bases and --runs" in result.output


def test_the_training_template_draws_a_line_per_run_on_a_free_scale():
    template = json.loads((REPO / ".dvc" / "plots" / "training.json").read_text())
    encoding = template["encoding"]
    assert encoding["color"]["field"] == "run" and encoding["strokeDash"]["field"] == "rev"
    assert encoding["x"]["field"] == "<DVC_METRIC_X>" and "domain" not in encoding["y"].get("scale", {})
    assert "<DVC_METRIC_DATA>" in json.dumps(template)
