"""The cross-paper leaderboard: ranking, the transfer column, flags and the training-cost ratio."""

import importlib.util
import json
import math
from pathlib import Path

import pandas as pd
import yaml
from click.testing import CliRunner

import pytest

from robust.leaderboard import LEADERBOARDS, leaderboard_frame, render_leaderboard, write_leaderboards
from robust.params import lookup
from robust.results import RESULT_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
MNIST, CIFAR10 = LEADERBOARDS
COLUMNS = MNIST.columns


def _rows(defense, *, clean, pgd, autoattack, transfer, dataset="digits", autoattack_check=1.0, board=MNIST):
    run = board.prefix + defense
    meta = {"run": run, "study": board.study, "dataset": dataset, "arch": "jakubovitz-mnist", "defense": defense,
            "profile": "smoke", "seed": 0, "source": "", "label": "", "norm": "", "eps": math.nan, "steps": -1,
            "n": 100}
    linf = {**meta, "norm": "linf", "eps": board.linf_eps}
    return [
        {**meta, "attack": "clean", "metric": "accuracy", "value": clean},
        {**linf, "attack": "fgsm", "metric": "accuracy", "value": pgd + 0.1},
        {**linf, "attack": "pgd", "steps": 10, "metric": "accuracy", "value": pgd},
        # the attack stage's large-ε sanity PGD: not a cell of the leaderboard
        {**linf, "attack": "pgd", "eps": 0.5, "steps": 20, "metric": "accuracy", "value": 0.0},
        {**meta, "attack": "pgd", "norm": "l2", "eps": board.l2_eps, "steps": 10, "metric": "accuracy",
         "value": pgd / 2},
        {**linf, "attack": "autoattack", "metric": "accuracy", "value": autoattack},
        {**linf, "attack": "autoattack", "metric": "check_autoattack_le_pgd", "value": autoattack_check},
        {**meta, "attack": "deepfool", "norm": "l2", "steps": 50, "metric": "rho_adv", "value": 0.2},
        {**meta, "attack": "cw", "norm": "l2", "steps": 50, "metric": "rho_adv", "value": 0.15},
        # the transfer stage's row: examples crafted on the standard model, classified by this one
        {**linf, "attack": "pgd", "steps": 10, "label": "pgd-transfer", "source": board.prefix + "standard",
         "metric": "accuracy", "value": transfer},
    ] + ([
        # the reference model also keeps a white-box row of the PGD that crafts its transfer examples: the
        # same ε and steps as the suite's, another random start, so (here) another value
        {**linf, "attack": "pgd", "steps": 10, "label": "pgd-transfer", "metric": "accuracy", "value": pgd + 0.05},
    ] if defense == "standard" else [])


def _results(**overrides):
    rows = (_rows("standard", clean=0.98, pgd=0.0, autoattack=0.0, transfer=0.0)
            + _rows("at", clean=0.95, pgd=0.80, autoattack=0.75, transfer=0.90)
            + _rows("jarn", clean=0.97, pgd=0.30, autoattack=0.40, transfer=0.60, **overrides))
    return pd.DataFrame(rows)


def test_rows_are_ranked_by_autoattack_then_pgd_and_read_every_column():
    results = _results()
    runs = ["leaderboard-at", "leaderboard-jarn", "leaderboard-standard"]
    frame = leaderboard_frame(MNIST, results, runs, {"leaderboard-standard": 2.0, "leaderboard-at": 20.0})
    assert list(frame.defense) == ["at", "jarn", "standard"]
    at = frame.iloc[0]
    assert at["clean %"] == 95.0 and at["PGD-L∞ %"] == 80.0 and at["PGD-L2 %"] == 40.0
    assert at["AutoAttack %"] == 75.0 and at["FGSM %"] == 90.0
    assert at["PGD-L∞ from standard %"] == 90.0  # the transfer row, not the white-box PGD
    assert at["DeepFool ρ_adv ×10²"] == 20.0 and at["C&W ρ_adv ×10²"] == 15.0
    assert at["cost"] == 10.0 and frame.iloc[2]["cost"] == 1.0
    assert math.isnan(frame.iloc[1]["cost"])  # JARN's cost was not measured
    assert frame.iloc[2]["PGD-L∞ %"] == 0.0  # the suite's PGD, not the one that crafted the transfer examples


def test_rendered_page_flags_a_failed_check_and_marks_missing_values():
    results = _results(autoattack_check=0.0)
    text = render_leaderboard(MNIST, results, "digits", {"leaderboard-standard": 2.0, "leaderboard-at": 3.0})
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:2] == ["#", "defense"] and header[2:-1] == [column.label for column in COLUMNS]
    jarn = [cell.strip() for cell in next(line for line in lines if "| jarn " in line).strip("|").split("|")]
    assert jarn[0] == "3"  # questioned: below the trusted rows
    assert jarn[header.index("AutoAttack %")] == "40.00 ⚠"
    assert jarn[header.index("clean %")] == "97.00"  # clean cells are never flagged
    assert jarn[-1] == "—"
    at = [cell.strip() for cell in next(line for line in lines if "| at " in line).strip("|").split("|")]
    assert at[-1] == "1.50"
    assert "reduced scale" in text


def test_one_page_per_dataset(tmp_path):
    results = pd.concat([_results(), pd.DataFrame(_rows("standard", clean=0.9, pgd=0.0, autoattack=0.0,
                                                         transfer=0.0, dataset="mnist10k"))])
    costs = tmp_path / "costs"
    costs.mkdir()
    (costs / "leaderboard-standard.json").write_text(json.dumps({"seconds_per_epoch": 4.0, "epochs_timed": 2}))
    (costs / "leaderboard-at.json").write_text(json.dumps({"seconds_per_epoch": 10.0, "epochs_timed": 2}))
    bases = {f"leaderboard-{name}": f"leaderboard-{name}" for name in ("standard", "at", "jarn")}
    written = write_leaderboards(results, bases, costs, tmp_path / "out")
    assert [path.name for path in written] == ["leaderboard-digits.md", "leaderboard-mnist10k.md"]
    assert "2.50" in written[0].read_text()
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [path.name for path in written]


def test_no_leaderboard_runs_write_no_page(tmp_path):
    results = pd.DataFrame(_rows("standard", clean=0.9, pgd=0.0, autoattack=0.0, transfer=0.0)).assign(study="other")
    assert write_leaderboards(results, {}, tmp_path, tmp_path / "out") == []
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("board", LEADERBOARDS, ids=lambda board: board.study)
def test_the_study_trains_every_defense_on_one_network_with_one_budget(board):
    params = yaml.safe_load((ROOT / f"studies/{board.study}.yaml").read_text())
    bases = params[board.study]["bases"]
    defenses = {name: base["defense"]["name"] for name, base in bases.items()}
    assert set(defenses.values()) == {"none", "at", "trades", "input_gradient", "cross_lipschitz", "jacobian", "jarn",
                                      "sgr", "gn", "critic", "afd"}
    assert len({base["arch"] for base in bases.values()}) == 1
    assert len({json.dumps(base["profiles"], sort_keys=True) for base in bases.values()}) == 1
    assert {base["seed"] for base in bases.values()} == {0}
    assert len({params["runs"][run]["dataset"] for run in params["runs"]}) == 1
    # the standard model crafts the transfer examples; every run is evaluated as trained
    for run, fields in params["runs"].items():
        assert fields["study"] == board.study and run.startswith(board.prefix)
        assert lookup(params, fields["finetune_key"]) == {"epochs": 0}
        assert fields["attack_key"] == (f"{board.study}.attack_source" if run == board.prefix + "standard"
                                        else f"{board.study}.attack")


@pytest.mark.parametrize("board", LEADERBOARDS, ids=lambda board: board.study)
def test_the_columns_read_the_budgets_the_study_attacks_at(board):
    """Every ε-bounded attack of the study's suites, at every profile, is at the page's L∞ or L2 budget:
    a column whose ε no row has would be empty on the page, not wrong, so nothing else would notice."""
    attacks = yaml.safe_load((ROOT / f"studies/{board.study}.yaml").read_text())[board.study]
    configs = [attacks[key] for key in ("attack", "attack_source")]
    configs += [profile for config in configs for profile in config.get("profiles", {}).values()]
    specs = [spec for config in configs for key in ("suite", "transfer") for spec in config.get(key, [])]
    budgets = {(spec["name"], spec.get("norm", "linf"), spec["eps"]) for spec in specs if "eps" in spec}
    assert budgets == {("fgsm", "linf", board.linf_eps), ("pgd", "linf", board.linf_eps),
                       ("pgd", "l2", board.l2_eps), ("autoattack", "linf", board.linf_eps)}


def test_two_leaderboards_on_the_same_data_get_their_own_pages(tmp_path):
    """At smoke both studies run on the digits: the CIFAR-10 study's page is named for its study."""
    cifar10 = pd.DataFrame(_rows("standard", clean=0.5, pgd=0.1, autoattack=0.05, transfer=0.1, board=CIFAR10)
                           + _rows("at", clean=0.4, pgd=0.3, autoattack=0.25, transfer=0.35, board=CIFAR10))
    written = write_leaderboards(pd.concat([_results(), cifar10]), {}, tmp_path, tmp_path / "out")
    assert [path.name for path in written] == ["leaderboard-digits.md", "leaderboard-cifar10.md"]
    page = written[1].read_text()
    assert page.startswith("# leaderboard-cifar10:") and "Data: `digits`" in page
    rows = [line for line in page.splitlines() if line.startswith("| ") and "defense" not in line]
    assert [row.split("|")[2].strip() for row in rows] == ["at", "standard"]  # not MNIST's jarn: its own rows
    at = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert at[2:8] == ["40.00", "40.00", "30.00", "15.00", "25.00", "35.00"]  # the 8/255 and L2 0.5 cells


def test_the_aggregate_stage_writes_the_leaderboards_beside_the_tables_and_indexes_them(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("aggregate_stage", ROOT / "stages" / "aggregate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.chdir(ROOT)  # the index (dvc.yaml vars, study files) maps each run to its base
    results = tmp_path / "results"
    results.mkdir()
    _results().reindex(columns=RESULT_COLUMNS).to_parquet(results / "rows.parquet")
    costs = tmp_path / "costs"
    costs.mkdir()
    for base, seconds in (("leaderboard-standard", 2.0), ("leaderboard-jarn", 5.0)):
        (costs / f"{base}.json").write_text(json.dumps({"seconds_per_epoch": seconds, "epochs_timed": 8}))
    out = tmp_path / "metrics"
    result = CliRunner().invoke(module.main, [str(results), "--results-out", str(out / "results.parquet"),
                                              "--summary", str(out / "summary.json"), "--tables", str(out / "tables"),
                                              "--plots", str(out / "plots"), "--costs", str(costs)])
    assert result.exit_code == 0, result.output
    page = (out / "tables" / "leaderboard-digits.md").read_text()
    jarn = next(line for line in page.splitlines() if "| jarn " in line)
    assert jarn.strip("| ").split("|")[-1].strip() == "2.50"
    assert "- [leaderboard-digits](leaderboard-digits.md)" in (out / "tables" / "README.md").read_text()


def test_report_prints_a_leaderboard_and_names_the_existing_ones(tmp_path):
    from robust.cli import cli

    write_leaderboards(_results(), {}, tmp_path / "costs", tmp_path / "metrics" / "tables")
    metrics = str(tmp_path / "metrics")
    shown = CliRunner().invoke(cli, ["report", "--metrics", metrics, "--table", "leaderboard-digits"])
    assert shown.exit_code == 0 and "| at " in shown.output, shown.output
    unknown = CliRunner().invoke(cli, ["report", "--metrics", metrics, "--table", "leaderboard-cifar10"])
    assert unknown.exit_code != 0 and "leaderboard-digits" in unknown.output


def test_ties_under_autoattack_go_to_the_next_columns():
    results = _results()
    results.loc[results.attack == "autoattack", "value"] = 0.0
    results.loc[(results.attack == "pgd") & (results.label == ""), "value"] = 0.0
    results.loc[(results.run == "leaderboard-standard") & (results.attack == "deepfool"), "value"] = 0.5
    frame = leaderboard_frame(MNIST, results, ["leaderboard-at", "leaderboard-jarn", "leaderboard-standard"], {})
    assert list(frame.defense) == ["standard", "at", "jarn"]  # DeepFool ρ_adv decides


def test_a_row_the_sanity_checks_question_ranks_below_the_trusted_ones():
    results = _results(autoattack_check=0.0)  # JARN's AutoAttack cell is questioned
    results.loc[(results.run == "leaderboard-jarn") & (results.attack == "autoattack")
                & (results.metric == "accuracy"), "value"] = 0.99
    frame = leaderboard_frame(MNIST, results, ["leaderboard-at", "leaderboard-jarn", "leaderboard-standard"], {})
    assert list(frame.defense) == ["at", "standard", "jarn"]
