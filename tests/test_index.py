"""The pipeline index: every run's base, dataset and params keys resolve, or one line names the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from robust.cli import cli
from robust.errors import ConfigError
from robust.index import check_index, load_index, saves_transfer_examples

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path):
    for name in ["params.yaml", "dvc.yaml"]:
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "studies", tmp_path / "studies")
    return tmp_path


def _edit(path: Path, change) -> None:
    params = yaml.safe_load(path.read_text())
    change(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def test_the_repository_index_resolves():
    index, files = load_index(REPO)
    check_index(index, files)
    assert "main" in index["runs"] and set(files) >= {"params.yaml", "studies/jakubovitz2018.yaml"}


@pytest.mark.parametrize("change, key", [
    (lambda p: p["runs"]["main"].update(base="nope"), r"runs\.main\.base': no bases entry 'nope' \(allowed: .*\bmain\b"),
    (lambda p: p["runs"]["main"].update(dataset="nope"), r"runs\.main\.dataset'"),
    (lambda p: p["bases"]["main"].update(dataset="mnist"), r"bases\.main\.dataset'"),
    (lambda p: p["runs"]["main"].update(attack_key="attacks"), r"'attacks': missing"),
    (lambda p: p["runs"]["main"].update(params_file="studies/other.yaml"), r"runs\.main\.params_file'"),
    (lambda p: p["runs"]["main"].pop("study"), r"runs\.main\.study': missing"),
])
def test_a_broken_reference_names_its_key(project, change, key):
    _edit(project / "params.yaml", change)
    with pytest.raises(ConfigError, match=key):
        check_index(*load_index(project))
    result = CliRunner().invoke(cli, ["check", "--root", str(project)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("error: params key")


def test_study_rows_are_checked_too(project):
    _edit(project / "studies/jakubovitz2018.yaml",
          lambda p: p["runs"]["jakubovitz2018-table3-none"].update(base="pretrained"))
    with pytest.raises(ConfigError, match=r"runs\.jakubovitz2018-table3-none\.base'"):
        check_index(*load_index(project))


def test_a_figure_must_name_a_run_of_its_study(project):
    _edit(project / "studies/matyasko2018.yaml",
          lambda p: p["figures"].update({"matyasko2018-nope": {"study": "matyasko2018", "dataset": "main"}}))
    with pytest.raises(ConfigError, match=r"figures\.matyasko2018-nope': no runs entry"):
        check_index(*load_index(project))
    _edit(project / "studies/matyasko2018.yaml", lambda p: p["figures"].pop("matyasko2018-nope"))
    _edit(project / "studies/matyasko2018.yaml",
          lambda p: p["figures"]["matyasko2018-fc-critic-s0"].update(study="main"))
    with pytest.raises(ConfigError, match=r"figures\.matyasko2018-fc-critic-s0': study and dataset"):
        check_index(*load_index(project))


def test_a_study_figure_must_name_runs_of_its_dataset(project):
    check_index(*load_index(project))  # the repository's own study figures resolve
    _edit(project / "studies/chan2020.yaml",
          lambda p: p["study_figures"]["chan2020-fig4"]["runs"].update({"chan2020-nope": "Nope"}))
    with pytest.raises(ConfigError, match=r"study_figures\.chan2020-fig4\.runs': no runs entry 'chan2020-nope'"):
        check_index(*load_index(project))
    _edit(project / "studies/chan2020.yaml", lambda p: p["study_figures"]["chan2020-fig4"]["runs"].pop("chan2020-nope"))
    _edit(project / "studies/chan2020.yaml", lambda p: p["study_figures"]["chan2020-fig4"].update(dataset="other"))
    with pytest.raises(ConfigError, match=r"study_figures\.chan2020-fig4\.dataset'"):
        check_index(*load_index(project))


def test_transfer_stages_are_those_of_the_studies_that_save_transfer_examples(project):
    index, _ = load_index(project)
    assert "roth2018-clean" in index["transfer_runs"] and "main" not in index["transfer_runs"]
    assert not any(fields["study"] == "jakubovitz2018" for fields in index["transfer_runs"].values())
    # a run left out of its study's transfer_runs would be a missing column of the matrix
    _edit(project / "studies/roth2018.yaml", lambda p: p.update(
        transfer_runs={name: run for name, run in p["runs"].items() if name != "roth2018-clean"}))
    with pytest.raises(ConfigError, match=r"'transfer_runs': study 'roth2018' saves transfer examples, but its "
                                          r"run 'roth2018-clean' is not listed"):
        check_index(*load_index(project))


def test_a_study_without_transfer_examples_lists_no_transfer_runs(project):
    _edit(project / "studies/chan2020.yaml", lambda p: p.update(transfer_runs=p["runs"]))
    with pytest.raises(ConfigError, match=r"transfer_runs\.chan2020-\S+': no run of study 'chan2020' saves "
                                          r"transfer examples"):
        check_index(*load_index(project))


def test_a_transfer_run_is_its_runs_entry(project):
    _edit(project / "studies/roth2018.yaml", lambda p: p.update(
        transfer_runs={**p["runs"], "roth2018-clean": {**p["runs"]["roth2018-clean"], "base": "roth2018-gn"}}))
    with pytest.raises(ConfigError, match=r"transfer_runs\.roth2018-clean': must be the runs entry"):
        check_index(*load_index(project))
    _edit(project / "studies/roth2018.yaml", lambda p: p.update(transfer_runs={**p["runs"], "nope": p["runs"]["roth2018-clean"]}))
    with pytest.raises(ConfigError, match=r"transfer_runs\.nope': no runs entry"):
        check_index(*load_index(project))


@pytest.mark.parametrize("change, key", [
    (lambda attack: attack.update(profiles={"cpu": {"batch_size": 100}}), r"roth2018\.attack\.profiles\.cpu\.batch_size'"),
    (lambda attack: attack.pop("batch_size"), r"roth2018\.attack\.batch_size': missing"),
])
def test_a_transfer_stage_tracks_its_batch_size(project, change, key):
    # dvc.yaml tracks <attack key>.batch_size alone for the transfer stage: a batch size elsewhere would go untracked
    _edit(project / "studies/roth2018.yaml", lambda p: change(p["roth2018"]["attack"]))
    with pytest.raises(ConfigError, match=key):
        check_index(*load_index(project))


def test_transfer_examples_saved_at_one_profile_count():
    pgd = {"name": "pgd", "eps": 0.3}
    assert saves_transfer_examples({"suite": [pgd], "transfer": [pgd]})
    assert saves_transfer_examples({"suite": [pgd], "profiles": {"smoke": {"transfer": [pgd]}, "cpu": None}})
    assert not saves_transfer_examples({"suite": [pgd], "transfer": [], "profiles": {"smoke": {"suite": [pgd]}}})


def test_aggregate_reads_transfer_rows_from_a_folder_the_attack_stages_write():
    # a pipeline whose studies save no transfer examples has no transfer stage: its rows live under
    # data/results, which every attack stage writes, so aggregate never depends on a folder nothing creates
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert stages["transfer"]["do"]["outs"] == ["data/results/transfer/${key}.parquet"]
    assert stages["attack"]["do"]["outs"][0] == "data/results/${key}.parquet"
    assert "data/results" in stages["aggregate"]["deps"]
    assert not any(dep.startswith("data/transfer") for dep in stages["aggregate"]["deps"])
