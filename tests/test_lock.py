"""The committed dvc.lock records every stage dvc.yaml defines, and `robust check` says when a lock does not."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from robust.cli import cli
from robust.index import load_index
from robust.lockfile import defined_stages, lock_coverage, recorded_stages

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_lock_records_exactly_the_stages_dvc_yaml_defines():
    # a lock truncated by an interrupted `dvc repro` would lose the record of which params and code
    # made the committed metrics
    missing, stale = lock_coverage(defined_stages(ROOT, load_index(ROOT)[0]), recorded_stages(ROOT))
    assert not missing, f"dvc.lock lacks {len(missing)} stages (first: {missing[:3]}): run them, or restore a " \
                        "lock an interrupted `dvc repro` truncated (git checkout dvc.lock)"
    assert not stale, f"dvc.lock records {len(stale)} stages dvc.yaml no longer defines (first: {stale[:3]})"


def test_foreach_stages_expand_over_the_index():
    index = load_index(ROOT)[0]
    names = defined_stages(ROOT, index)
    assert {"aggregate", "prepare@main", "pretrain@main", "attack@main", "transfer@roth2018-clean"} <= names
    # the main run saves no transfer examples, so it has no transfer stage
    assert "transfer@main" not in names
    # the two stages outside the index's foreach: aggregate and costs
    assert len(names) == 2 + len(index["datasets"]) + len(index["bases"]) + 2 * len(index["runs"]) \
        + len(index["transfer_runs"]) + len(index["figures"]) + len(index["study_figures"])


@pytest.fixture
def project(tmp_path):
    for name in ["params.yaml", "dvc.yaml"]:
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "studies", tmp_path / "studies")
    # a lock with one short entry per stage, in place of the committed megabytes
    stages = {name: {"cmd": "true"} for name in sorted(defined_stages(tmp_path, load_index(tmp_path)[0]))}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}, sort_keys=False))
    return tmp_path


def test_check_reports_a_complete_lock(project):
    result = CliRunner().invoke(cli, ["check", "--root", str(project)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith("dvc.lock records all ")


def test_check_names_the_stages_a_truncated_lock_lost(project):
    lock = (project / "dvc.lock").read_text()
    cut = lock.index("\n  attack@main:\n")
    (project / "dvc.lock").write_text(lock[:cut] + "\n")  # what an interrupted lock update leaves
    missing, _ = lock_coverage(defined_stages(project, load_index(project)[0]), recorded_stages(project))
    assert "attack@main" in missing
    result = CliRunner().invoke(cli, ["check", "--root", str(project)])
    assert result.exit_code == 0  # a stage that never ran is not an error
    assert f"dvc.lock does not record {len(missing)} of " in result.output and "attack@" in result.output


def test_check_names_lock_entries_of_removed_stages(project):
    (project / "dvc.lock").write_text((project / "dvc.lock").read_text() + "  attack@gone:\n    cmd: x\n")
    result = CliRunner().invoke(cli, ["check", "--root", str(project)])
    assert "dvc.lock records 1 stage dvc.yaml no longer defines: attack@gone" in result.output


def test_a_foreach_over_an_unknown_map_is_refused(project):
    text = (project / "dvc.yaml").read_text().replace("foreach: ${runs}", "foreach: ${nope}", 1)
    (project / "dvc.yaml").write_text(text)
    with pytest.raises(ValueError, match=r"foreach '\$\{nope\}' is not an index map \(allowed: \$\{datasets\}"):
        defined_stages(project, load_index(project)[0])
    result = CliRunner().invoke(cli, ["check", "--root", str(project)])
    assert result.exit_code == 2 and result.output.splitlines()[-1].startswith("error: dvc.yaml stage 'defense-finetune'")


def test_check_without_a_lock_says_nothing_has_run(project):
    (project / "dvc.lock").unlink()
    result = CliRunner().invoke(cli, ["check", "--root", str(project)])
    assert result.exit_code == 0 and result.output.splitlines()[-1].startswith("no dvc.lock entries yet: none of the ")
