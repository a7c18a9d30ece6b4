"""metrics/costs.json: every run's measured seconds per training epoch, from the training stages' cost files."""

import importlib.util
import json
from pathlib import Path

from click.testing import CliRunner

from robust.costs import run_costs, seconds_per_epoch
from robust.index import load_index

ROOT = Path(__file__).resolve().parents[1]


def _cost(path: Path, seconds: float, epochs: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"seconds_per_epoch": seconds, "epochs_timed": epochs, "device": "cpu"}))


def test_a_run_has_its_base_cost_and_its_own_fine_tune_cost(tmp_path):
    _cost(tmp_path / "bases/shared.json", 2.5, 4)
    _cost(tmp_path / "runs/tuned.json", 1.23456, 2)
    _cost(tmp_path / "runs/evaluated.json", 0.0, 0)  # a run evaluated as its base was trained: no epoch
    costs = run_costs(tmp_path, {"tuned": "shared", "evaluated": "shared", "not-run": "elsewhere"})
    assert costs == {"tuned": {"pretrain_seconds_per_epoch": 2.5, "finetune_seconds_per_epoch": 1.235},
                     "evaluated": {"pretrain_seconds_per_epoch": 2.5}}
    assert list(costs) == sorted(costs)  # stable order: `dvc metrics diff` and git diffs stay readable


def test_an_untimed_or_missing_cost_file_is_no_cost(tmp_path):
    _cost(tmp_path / "zero.json", 0.0, 0)
    assert seconds_per_epoch(tmp_path / "zero.json") is None
    assert seconds_per_epoch(tmp_path / "absent.json") is None


def test_the_stage_maps_the_index_runs_to_their_bases(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("costs_stage", ROOT / "stages" / "costs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.chdir(ROOT)  # the index (dvc.yaml vars, study files) maps each run to its base
    costs, out = tmp_path / "costs", tmp_path / "metrics" / "costs.json"
    _cost(costs / "bases/main.json", 3.0, 8)  # the main run and jakubovitz2018-table3-jacobian share it
    _cost(costs / "runs/jakubovitz2018-table3-jacobian.json", 6.0, 4)
    result = CliRunner().invoke(module.main, ["--costs", str(costs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert written["main"] == {"pretrain_seconds_per_epoch": 3.0}
    assert written["jakubovitz2018-table3-jacobian"] == {"pretrain_seconds_per_epoch": 3.0,
                                                         "finetune_seconds_per_epoch": 6.0}
    on_main = {run for run, fields in load_index(ROOT)[0]["runs"].items() if fields["base"] == "main"}
    assert set(written) == on_main  # every run trained from the timed base, and no other
    assert f"the training cost of {len(on_main)} of" in result.output
