"""Jakubovitz & Giryes 2018, the CIFAR-10 and CIFAR-100 studies: their index entries, base and schedules, the
defenses of each row, their attack configs at every profile, their figures, and Tables 4, 14 and 10 rendered
from synthetic rows."""

import functools
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from robust.evaluate import parse_suite
from robust.index import check_index, load_index
from robust.params import lookup
from robust.study_figures import parse_study_figure
from robust.tables import TABLES, render_table

REPO = Path(__file__).resolve().parents[1]
CIFAR10, CIFAR100 = "jakubovitz2018-cifar10", "jakubovitz2018-cifar100"
TABLE4_ROWS = ("none", "at", "input-gradient", "input-gradient-at", "cross-lipschitz", "cross-lipschitz-at",
               "jacobian", "jacobian-at")
# Appendix E: no cross-Lipschitz rows on CIFAR-100
TABLE10_ROWS = tuple(row for row in TABLE4_ROWS if "cross-lipschitz" not in row)
LAMBDA_TAGS = ("1e-3", "5e-3", "1e-2", "5e-2", "1e-1", "1", "2", "5")
# study → (dataset, its DeepFool table, that table's rows, the Jacobian penalty's λ, batch; §4 and Appendix E)
STUDIES = {
    CIFAR10: ("cifar10", "table4", TABLE4_ROWS, 0.5, 128),
    CIFAR100: ("cifar100", "table10", TABLE10_ROWS, 0.02, 96),
}


@functools.cache
def _study(study: str) -> dict:
    return yaml.safe_load((REPO / f"studies/{study}.yaml").read_text())


@pytest.fixture(scope="module")
def index() -> dict:
    index, files = load_index(REPO)
    check_index(index, files)
    return index


@pytest.mark.parametrize("study", STUDIES)
def test_the_study_index_resolves_with_exactly_its_runs(study, index):
    dataset, table, rows, _, _ = STUDIES[study]
    runs = {name: fields for name, fields in index["runs"].items() if fields["_file"] == f"studies/{study}.yaml"}
    expected = {f"{study}-{table}-{row}" for row in rows}
    if study == CIFAR10:
        expected |= {f"{study}-table14-lambda-{tag}" for tag in LAMBDA_TAGS}
    assert set(runs) == expected
    # post-processing training: every row fine-tunes the one base
    assert all(fields["study"] == study and fields["base"] == f"{study}-main" and fields["dataset"] == dataset
               and fields["finetune_key"] == f"{study}.finetune" for fields in runs.values())
    assert index["bases"][f"{study}-main"]["dataset"] == dataset
    assert f"studies/{study}.yaml" in yaml.safe_load((REPO / "dvc.yaml").read_text())["vars"]


def test_cifar100_is_torchvisions_download_with_the_digits_at_smoke():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert params["datasets"]["cifar100"] == {"params_file": "params.yaml", "key": "cifar100"}
    assert params["cifar100"]["name"] == "cifar100" and params["cifar100"]["profiles"]["smoke"] == {"name": "digits"}


def test_every_table_row_names_runs_of_its_study():
    tables = {name for name in TABLES.names() if name.startswith("jakubovitz2018-cifar")}
    assert tables == {f"{CIFAR10}-table4", f"{CIFAR10}-table14", f"{CIFAR100}-table10"}
    for table_id in tables:
        study = _study(table_id.rsplit("-", 1)[0])
        assert all(run in study["runs"] for run in TABLES.get(table_id).runs()), table_id
    for study, (_, table, rows, _, _) in STUDIES.items():
        assert TABLES.get(f"{study}-{table}").runs() == [f"{study}-{table}-{row}" for row in rows]


@pytest.mark.parametrize("study", STUDIES)
def test_the_base_is_the_cifar_net_trained_with_rmsprop_at_the_papers_batch(study):
    batch = STUDIES[study][4]
    config = _study(study)
    base = lookup(config, f"{study}.bases.main")
    assert base["arch"] == "jakubovitz-cifar" and base["optimizer"] == "rmsprop" and base["rho"] == 0.9
    assert "defense" not in base  # a plain base: the defenses are post-processing
    assert base["profiles"]["paper"]["batch_size"] == base["profiles"]["cpu"]["batch_size"] == batch
    assert "width" not in base["profiles"]["paper"] and base["profiles"]["cpu"]["width"] < 1
    finetune = config[study]["finetune"]
    assert finetune["optimizer"] == "rmsprop" and finetune["rho"] == 0.9
    assert finetune["profiles"]["paper"]["batch_size"] == finetune["profiles"]["cpu"]["batch_size"] == batch


@pytest.mark.parametrize("study", STUDIES)
def test_each_row_trains_its_defense_and_the_jacobian_rows_take_the_papers_lambda(study):
    _, table, rows, lam, _ = STUDIES[study]
    runs = _study(study)["runs"]
    defenses = {row: runs[f"{study}-{table}-{row}"]["defense"] for row in rows}
    names = {"none": "none", "at": "at", "input-gradient": "input_gradient", "cross-lipschitz": "cross_lipschitz",
             "jacobian": "jacobian"}
    for row, defense in defenses.items():
        assert defense["name"] == names[row.removesuffix("-at")], row
        # "& AT" rows mix DeepFool examples into each batch; the others do not
        adversarial = defense.get("adversarial")
        assert (adversarial is not None) == (row == "at" or row.endswith("-at")), row
        if adversarial:
            assert adversarial["attack"]["name"] == "deepfool"
    for row in ("jacobian", "jacobian-at"):  # the exact Jacobian of the logits
        assert defenses[row]["lambda"] == lam and defenses[row]["projections"] is None


def test_table14_rows_sweep_lambda_over_the_jacobian_row():
    runs = _study(CIFAR10)["runs"]
    table = TABLES.get(f"{CIFAR10}-table14")
    assert len(table.sweep.values) == len(table.rows)
    for value, row in zip(table.sweep.values, table.rows, strict=True):
        if value == 0:
            assert runs[row.run]["defense"] == {"name": "none"}
        else:
            assert runs[row.run]["defense"] == {"name": "jacobian", "lambda": value, "reduction": "mean",
                                                "projections": None}


@pytest.mark.parametrize("study", STUDIES)
@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_attack_configs_parse_at_every_profile(study, profile):
    for key in ("attack", "attack_with_jsma"):
        config = _study(study)[study][key]
        config = {**config, **config.get("profiles", {}).get(profile, {})}
        suite = parse_suite([dict(entry) for entry in config["suite"]])
        assert any(spec.name == "deepfool" and spec.settings["steps"] == 50 for spec in suite)
        assert [spec.eps for spec in suite if spec.name == "fgsm"] == [k / 255 for k in (1, 2, 4, 8, 16)]
        jsma = [spec for spec in suite if spec.name == "jsma"]
        assert bool(jsma) == (key == "attack_with_jsma")
        if jsma:  # §4.3: 200 one-pixel steps on CIFAR-10; the whole ε grid at paper
            assert {spec.settings["steps"] for spec in jsma} == {200}
            assert len(jsma) == (5 if profile == "paper" else 2)


@pytest.mark.parametrize(("study", "figure", "attacks", "rows"), [
    (CIFAR10, "fig1", ["fgsm"], ("none", "at", "input-gradient", "cross-lipschitz", "jacobian")),
    (CIFAR10, "fig2", ["jsma"], ("none", "at", "input-gradient", "cross-lipschitz", "jacobian")),
    (CIFAR100, "fig4", ["fgsm", "jsma"], ("none", "at", "input-gradient", "jacobian")),
])
def test_figures_draw_the_single_defense_rows(study, figure, attacks, rows):
    dataset, table = STUDIES[study][:2]
    config = _study(study)
    entry = config["study_figures"][f"{study}-{figure}"]
    drawn = parse_study_figure(entry, f"study_figures.{study}-{figure}")
    assert entry["dataset"] == dataset and [panel["attack"] for panel in entry["panels"]] == attacks
    assert list(drawn.runs) == [f"{study}-{table}-{row}" for row in rows]
    for run in drawn.runs:  # the JSMA panels' runs carry the JSMA suite
        assert config["runs"][run]["attack_key"] == f"{study}.attack_with_jsma"


META = {"study": CIFAR10, "dataset": "digits", "arch": "jakubovitz-cifar", "defense": "jacobian", "profile": "smoke",
        "seed": 0, "source": "", "label": "", "norm": "", "eps": math.nan, "steps": -1, "n": 359}


def _cells(text: str, label: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {label} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def _synthetic(run: str, accuracy: float, rho: float) -> list[dict]:
    return [{**META, "run": run, "attack": "clean", "metric": "accuracy", "value": accuracy},
            {**META, "run": run, "attack": "deepfool", "norm": "l2", "steps": 50, "metric": "rho_adv", "value": rho}]


def test_tables_render_from_synthetic_rows():
    results = pd.DataFrame(_synthetic(f"{CIFAR10}-table4-jacobian", 0.9, 0.0342)
                           + _synthetic(f"{CIFAR100}-table10-jacobian", 0.5, 0.02))
    table4 = render_table(TABLES.get(f"{CIFAR10}-table4"), results)
    assert _cells(table4, "Jacobian regularization")[1:7] == ["90.00", "89.16", "0.84", "3.42", "3.42", "0.00"]
    assert _cells(table4, "No defense")[-1] == "not run" and "not comparable" in table4
    table14 = render_table(TABLES.get(f"{CIFAR10}-table14"), results)
    assert _cells(table14, "λ = 0.5 (the paper's choice)")[1:4] == ["90.00", "89.16", "0.84"]
    table10 = render_table(TABLES.get(f"{CIFAR100}-table10"), results)
    assert _cells(table10, "Jacobian regularization")[1:7] == ["50.00", "59.20", "-9.20", "2.00", "1.55", "0.45"]
