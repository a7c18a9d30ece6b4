"""`robust report` on a metrics folder written by hand: what a terminal shows by default and on request."""

import json

from click.testing import CliRunner

from robust.cli import cli

SUMMARY = {
    "main": {"accuracy": 0.98, "deepfool_l2_steps50_rho_adv": 0.1334, "pgd_linf_eps0.1_steps10_accuracy": None},
    "jakubovitz2018-table3-none": {"accuracy": 0.97, "jsma_linf_eps1_steps80_accuracy": 0.5},
}


def _metrics(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "summary.json").write_text(json.dumps(SUMMARY))
    (tmp_path / "tables" / "README.md").write_text("# Paper tables\n\n| jakubovitz2018-table3 | smoke only |\n")
    return str(tmp_path)


def test_default_report_shows_the_main_run_one_metric_a_line_and_the_table_index(tmp_path):
    result = CliRunner().invoke(cli, ["report", "--metrics", _metrics(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.split() == ["deepfool_l2_steps50_rho_adv", "0.1334"] for line in lines)
    assert any(line.split() == ["pgd_linf_eps0.1_steps10_accuracy", "—"] for line in lines)
    assert "| jakubovitz2018-table3 | smoke only |" in result.output
    # other runs' metrics are one --run away, not columns of one wide table
    assert "jsma_linf_eps1_steps80_accuracy" not in result.output and "--run" in result.output


def test_report_of_one_run(tmp_path):
    result = CliRunner().invoke(cli, ["report", "--metrics", _metrics(tmp_path), "--run", "jakubovitz2018-table3-none"])
    assert result.exit_code == 0, result.output
    assert any(line.split() == ["jsma_linf_eps1_steps80_accuracy", "0.5000"] for line in result.output.splitlines())


def test_a_run_shows_its_training_cost_where_it_was_measured(tmp_path):
    metrics = _metrics(tmp_path)
    (tmp_path / "costs.json").write_text(json.dumps({"main": {"pretrain_seconds_per_epoch": 3.25}}))
    result = CliRunner().invoke(cli, ["report", "--metrics", metrics, "--run", "main"])
    assert result.exit_code == 0, result.output
    assert any(line.split() == ["pretrain_seconds_per_epoch", "3.2500"] for line in result.output.splitlines())
    other = CliRunner().invoke(cli, ["report", "--metrics", metrics, "--run", "jakubovitz2018-table3-none"])
    assert "seconds_per_epoch" not in other.output


def test_unknown_run_suggests_close_names(tmp_path):
    result = CliRunner().invoke(cli, ["report", "--metrics", _metrics(tmp_path), "--run", "mian"])
    assert result.exit_code != 0 and "close: main" in result.output


def test_table_and_run_together_are_refused(tmp_path):
    result = CliRunner().invoke(cli, ["report", "--metrics", _metrics(tmp_path), "--run", "main", "--table", "x"])
    assert result.exit_code != 0 and "not both" in result.output


def test_a_transfer_matrix_prints_by_its_page_name_and_a_missing_one_names_the_others(tmp_path):
    metrics = _metrics(tmp_path)
    (tmp_path / "tables" / "transfer-roth2018.md").write_text("# transfer-roth2018\n\n| target | clean |\n")
    shown = CliRunner().invoke(cli, ["report", "--metrics", metrics, "--table", "transfer-roth2018"])
    assert shown.exit_code == 0 and "| target | clean |" in shown.output, shown.output
    missing = CliRunner().invoke(cli, ["report", "--metrics", metrics, "--table", "transfer-chan2020"])
    assert missing.exit_code != 0 and "transfer-roth2018" in missing.output
