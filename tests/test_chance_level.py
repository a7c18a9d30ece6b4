"""The check of each run's clean accuracy against chance, drawn into the tables by the aggregate stage."""

import json

import pandas as pd
import pytest

from robust.aggregate import aggregate, summarize, with_chance_checks
from robust.chance_level import CHECK, above_chance, chance_checks, constant_accuracies, constant_accuracy
from robust.sanity import violations
from robust.tables import TABLES, render_table
from robust.tables.transfer import transfer_matrices
from table_cells import clean_and_deepfool_rows


def _rows(run, accuracy):
    return clean_and_deepfool_rows(run, accuracy=accuracy, profile="cpu", n=500)


def _manifest(test_counts):
    return {"class_counts": {"train": [1] * len(test_counts), "test": list(test_counts)}}


def test_the_constant_classifier_scores_the_majority_share_of_the_test_split():
    assert constant_accuracy(_manifest([50] * 10)) == 0.1
    assert constant_accuracy(_manifest([20, 60, 20])) == 0.6


@pytest.mark.parametrize(("accuracy", "chance", "n", "holds"), [
    (0.10, 0.1, 500, False),   # a constant classifier
    (0.14, 0.1, 500, False),   # within three standard errors (0.1 + 3·0.0134 = 0.140)
    (0.141, 0.1, 500, True),
    (0.90, 0.1, 500, True),
    (0.14, 0.1, 5000, True),   # more points, a tighter bound
    (0.62, 0.6, 500, False),   # an imbalanced split: the majority share, not 1/K, is chance
])
def test_above_chance_needs_three_standard_errors_over_the_constant_classifier(accuracy, chance, n, holds):
    assert above_chance(accuracy, chance, n) is holds


def test_one_check_row_per_white_box_clean_accuracy_of_the_runs_with_a_known_dataset():
    transfer = {**_rows("good", 0.9)[0], "source": "other"}
    results = pd.DataFrame(_rows("good", 0.9) + _rows("flat", 0.1) + _rows("removed", 0.1) + [transfer])
    checks = chance_checks(results, {"good": 0.1, "flat": 0.1})
    assert dict(zip(checks.run, checks.value)) == {"good": 1.0, "flat": 0.0}
    assert set(checks.metric) == {CHECK} and set(checks.attack) == {"clean"} and set(checks.source) == {""}
    assert list(checks.columns) == list(results.columns)


def test_constant_accuracies_read_each_dataset_manifest_once_and_name_a_missing_one(tmp_path):
    (tmp_path / "main").mkdir()
    (tmp_path / "main" / "manifest.json").write_text(json.dumps(_manifest([10, 30])))
    runs = {"a": {"dataset": "main"}, "b": {"dataset": "main"}}
    assert constant_accuracies(runs, tmp_path) == {"a": 0.75, "b": 0.75}
    with pytest.raises(FileNotFoundError, match=r"prepare@cifar10"):
        constant_accuracies({"c": {"dataset": "cifar10"}}, tmp_path)


def test_a_run_at_chance_has_every_attack_cell_flagged_and_counted_as_a_violation():
    table = TABLES.get("jakubovitz2018-table3")
    runs = table.runs()
    results = with_chance_checks(
        pd.DataFrame([r for run in runs for r in _rows(run, 0.1 if run == runs[0] else 0.9)]),
        dict.fromkeys(runs, 0.1))
    assert violations(results).run.tolist() == [runs[0]]
    assert summarize(results)[runs[0]]["checks_violated"] == 1
    page = render_table(table, results)
    flagged = [line for line in page.splitlines() if "⚠" in line and line.startswith("|")]
    # the collapsed run's ρ_adv, not its clean accuracy (which is what reveals the collapse)
    assert len(flagged) == 1 and flagged[0].count("⚠") == 1 and "25.00 ⚠" in flagged[0]
    assert "at chance" in page and "gradient masking" not in page


def test_aggregate_writes_the_check_rows_when_given_the_prepared_manifests(tmp_path):
    (tmp_path / "prepared" / "main").mkdir(parents=True)
    (tmp_path / "prepared" / "main" / "manifest.json").write_text(json.dumps(_manifest([50] * 10)))
    (tmp_path / "results").mkdir()
    pd.DataFrame(_rows("main", 0.1)).to_parquet(tmp_path / "results" / "main.parquet")
    index = {"runs": {"main": {"dataset": "main", "base": "main"}}}
    kwargs = {"results_out": tmp_path / "results.parquet", "summary_out": tmp_path / "summary.json",
              "tables_dir": tmp_path / "tables"}
    results = aggregate([tmp_path / "results" / "main.parquet"], prepared_dir=tmp_path / "prepared", index=index,
                        **kwargs)
    assert results[results.metric == CHECK].value.tolist() == [0.0]
    assert json.loads((tmp_path / "summary.json").read_text())["main"]["checks_violated"] == 1
    with pytest.raises(ValueError, match="index"):
        aggregate([tmp_path / "results" / "main.parquet"], prepared_dir=tmp_path / "prepared", **kwargs)


def test_a_judge_at_chance_flags_every_cell_it_judged():
    table = TABLES.get("matyasko2018-table2a-proxy")
    judge = table.columns[0].read_from
    judged = [{**_rows(judge, 0.5)[0], "source": run, "attack": "high_confidence", "metric": "target_agreement"}
              for run in table.runs()]

    def page(judge_accuracy):
        rows = [r for run in table.runs() for r in _rows(run, 0.9)] + _rows(judge, judge_accuracy) + judged
        return render_table(table, with_chance_checks(pd.DataFrame(rows), dict.fromkeys([*table.runs(), judge], 0.1)))

    assert "⚠" not in page(0.9)
    lines = [line for line in page(0.1).splitlines() if line.startswith("|") and "50.00" in line]
    assert len(lines) == len(table.rows) and all(line.count("⚠") == 1 for line in lines)
    assert "at chance" in page(0.1)


def test_a_transfer_target_at_chance_is_marked_in_its_matrix():
    def row(run, source, metric, value, attack="pgd"):
        return dict(run=run, study="s", profile="smoke", source=source, attack=attack, label="", norm="linf",
                    eps=0.1, steps=10, metric=metric, value=value, n=100)

    frame = pd.DataFrame([row(target, source, "accuracy", 0.5) for target in "ab" for source in "ab"]
                         + [row("b", "", CHECK, 0.0, attack="clean"), row("a", "", CHECK, 1.0, attack="clean")])
    page = transfer_matrices(frame)["s"]
    targets = [line.split("|")[1].strip() for line in page.splitlines() if line.startswith(("| a", "| b"))]
    assert targets == ["a", "b ⚠"]
