"""The AFD study (Bashivan et al. 2021): its index entries, its tables' runs and paper values, rendering,
Fig. A3's curves and Fig. A5's plot data."""

import math
import re
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from afd_suite_checks import assert_suite_feeds_tables_a3_and_2
from table_cells import row_cells
from torch import nn

import robust.tables.bashivan2021 as afd_tables
from robust.accuracy_curves import accuracy_curves
from robust.defenses import build_defense
from robust.evaluate import AttackSpec, _row, parse_suite
from robust.index import check_index, load_index
from robust.io import save_parquet
from robust.params import lookup
from robust.plots import training_curves
from robust.representation import parse_representation
from robust.study_figures import parse_study_figure
from robust.tables import TABLES, render_table

REPO = Path(__file__).resolve().parents[1]
STUDY_FILE = "studies/bashivan2021.yaml"
SEED_TEXT = REPO.parent / "shared" / "papers" / "afd_bashivan2021.txt"
TABLE_IDS = ("bashivan2021-table1", "bashivan2021-table2", "bashivan2021-tablea5")
STUDY_TABLES = tuple(name for name in TABLES.names()
                     if name.startswith("bashivan2021-") and not name.startswith("bashivan2021-cifar"))
SEEDED_ROWS = tuple(f"{row}-s{seed}" for row in ("nt", "at", "trades", "afd") for seed in (0, 1, 2))
ROWS = (*SEEDED_ROWS, "afd-fc1pd-s0", "afd-fc3-s0", "rep-matching-s0", "nt-source")


@pytest.fixture(scope="module")
def study():
    return yaml.safe_load((REPO / STUDY_FILE).read_text())


def test_the_study_index_resolves():
    index, files = load_index(REPO)
    check_index(index, files)
    runs = {name: fields for name, fields in index["runs"].items() if fields["_file"] == STUDY_FILE}
    assert set(runs) == {f"bashivan2021-mnist-{row}" for row in ROWS}
    assert all(fields["study"] == "bashivan2021" and fields["base"] == name for name, fields in runs.items())


def test_every_table_row_names_runs_of_the_study(study):
    assert {"bashivan2021-tablea6", *TABLE_IDS} <= set(STUDY_TABLES)
    for table_id in STUDY_TABLES:
        table = TABLES.get(table_id)
        assert all(run in study["runs"] for run in table.runs()), table_id
        assert all(len(row.paper) == len(table.columns) for row in table.rows), table_id
    sources = {column.source for column in TABLES.get("bashivan2021-table1").columns if column.source}
    assert sources == {afd_tables.BLACK_BOX_SOURCE} and afd_tables.BLACK_BOX_SOURCE in study["runs"]


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_attack_configs_parse_at_every_profile(study, profile):
    for key in ("attack", "attack_source"):
        config = study["bashivan2021"][key]
        config = {**config, **config.get("profiles", {}).get(profile, {})}
        suite = parse_suite([dict(entry) for entry in config["suite"]])
        transfer = parse_suite([dict(entry) for entry in config["transfer"]])
        assert {spec.label for spec in transfer} == {"pgd-transfer", "fgsm-transfer"}
        if key == "attack":
            # Table 1's white-box cells read the sweeps' ε = 0.3 members; the representation grid holds 0.3
            # (40 steps of 0.01, the training attack, where the profile runs Table A2's setting)
            assert any(s.name == "pgd" and s.eps == 0.3 and s.sweep is not None
                       and (profile == "smoke" or s.settings["step_size"] == 0.01) for s in suite)
            assert any(s.name == "fgsm" and s.eps == 0.3 and s.sweep is not None for s in suite)
            assert 0.3 in parse_representation(config["representation"], "representation").eps
            assert_suite_feeds_tables_a3_and_2(suite, "bashivan2021-tablea3", profile)


def test_bases_train_from_scratch_with_their_defense(study):
    bases = study["bashivan2021"]["bases"]
    assert {b["defense"]["name"] for b in bases.values()} == {"none", "at", "trades", "afd", "rep_matching"}
    assert all(b["arch"] == "resnet18-mnist-norm" and b["optimizer"] == "sgd" and b["momentum"] == 0.9
               for b in bases.values())
    assert bases["mnist-afd-s0"]["profiles"]["paper"] == {"epochs": 100, "batch_size": 128, "lr": 0.1,
                                                         "milestones": [50, 80], "gamma": 0.1}
    for run in study["runs"].values():
        assert lookup(study, run["finetune_key"]) == {"epochs": 0}


def _base_of(study: dict, run: str) -> dict:
    return lookup(study, study["bases"][study["runs"][run]["base"]]["key"])


def test_table_a6_rows_are_table1s_afd_but_for_the_discriminator(study):
    afd = _base_of(study, "bashivan2021-mnist-afd-s0")
    rows = TABLES.get("bashivan2021-tablea6").rows
    for row, discriminator in zip(rows, ("fc1-pd", "fc3", "fc3-pd"), strict=True):
        base = _base_of(study, *row.run_ids)
        assert base["defense"]["discriminator"] == discriminator, row.label
        assert {**base, "defense": {**base["defense"], "discriminator": "fc3-pd"}} == afd, row.label


def test_representation_matching_trains_like_afd_with_its_attack_and_an_unweighted_term(study):
    afd = _base_of(study, "bashivan2021-mnist-afd-s0")
    base = _base_of(study, "bashivan2021-mnist-rep-matching-s0")
    assert base["defense"] == {"name": "rep_matching", "lambda": 0.1, "attack": afd["defense"]["attack"]}
    assert {**base, "defense": afd["defense"]} == afd


@pytest.mark.parametrize("row", ["afd-s0", "afd-fc1pd-s0", "afd-fc3-s0", "rep-matching-s0"])
def test_the_representation_defenses_build_and_log_their_terms(study, row):
    """Fig. A5 is drawn from the `disc_acc` every AFD base logs; one step on a tiny network each."""
    defense = build_defense(_base_of(study, f"bashivan2021-mnist-{row}")["defense"])
    defense.generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 10))
    x, y = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1)), torch.arange(6)
    loss, logs = defense.training_step(model, x, y)
    assert torch.isfinite(loss)
    if row.startswith("afd"):
        assert 0 <= logs["disc_acc"] <= 1
    else:
        assert "rep_distance" in logs and "disc_acc" not in logs


def test_fig_a5_is_plot_data_of_the_afd_runs_discriminator_accuracy(tmp_path):
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    plots = {name: spec for entry in dvc["plots"] for name, spec in entry.items()}
    assert plots["bashivan2021-figa5-disc_acc"] == {
        "template": "training", "x": "epoch", "y": {"metrics/training/bashivan2021.csv": "disc_acc"}}
    # the template leaves out the rows of the runs that log no discriminator (an empty CSV field)
    assert "isFinite(toNumber(datum['<DVC_METRIC_Y>']))" in (REPO / ".dvc/plots/training.json").read_text()
    index, _ = load_index(REPO)
    runs = {"bashivan2021-mnist-afd-fc1pd-s0": {"disc_acc": [0.9, 0.7]}, "bashivan2021-mnist-nt-s0": {}}
    for run, logs in runs.items():
        history = pd.DataFrame({"epoch": [1, 2], "ce": [2.0, 1.0], "held_out_accuracy": [0.5, 0.8], **logs})
        save_parquet(history, tmp_path / "bases" / index["runs"][run]["base"] / "history.parquet")
        save_parquet(pd.DataFrame(), tmp_path / "runs" / run / "history.parquet")  # evaluated as trained
    results = pd.DataFrame({"run": list(runs), "study": "bashivan2021"})
    curve = training_curves(results, index, tmp_path / "bases", tmp_path / "runs")["bashivan2021.csv"]
    by_run = {run: rows.disc_acc.tolist() for run, rows in curve.groupby("run")}
    assert by_run["bashivan2021-mnist-afd-fc1pd-s0"] == [0.9, 0.7]
    assert all(math.isnan(value) for value in by_run["bashivan2021-mnist-nt-s0"])
    assert curve.to_csv(index=False).splitlines()[-1].endswith(",")


def _accuracy_rows(run: str, suite: list[AttackSpec]) -> list[dict]:
    """A result row of accuracy for each ε of the suite, as the attack stage writes them."""
    clean = _row(AttackSpec("clean"), "accuracy", torch.tensor(0.99), 10)
    rows = [clean] + [_row(replace(spec, settings={**spec.settings, "eps": eps}), "accuracy", torch.tensor(0.5), 10)
                      for spec in suite for eps in (spec.budgets or (spec.eps,))]
    return [{"run": run, "source": "", **row} for row in rows]


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_fig_a3_draws_afd_and_representation_matching_from_every_profiles_suite(study, profile, tmp_path):
    figure = parse_study_figure(study["study_figures"]["bashivan2021-figa3"], "study_figures.bashivan2021-figa3")
    assert set(figure.runs) == {"bashivan2021-mnist-afd-s0", "bashivan2021-mnist-rep-matching-s0"}
    config = study["bashivan2021"]["attack"]
    suite = parse_suite([dict(entry) for entry in {**config, **config["profiles"].get(profile, {})}["suite"]])
    for run in figure.runs:
        pd.DataFrame(_accuracy_rows(run, suite)).to_parquet(tmp_path / f"{run}.parquet")
    curves = accuracy_curves(tmp_path, figure.runs, figure.settings["panels"], "f")
    assert list(curves) == ["PGD-L∞", "FGSM", "DDN (L2)", "DeepFool-L∞"]
    for models in curves.values():
        assert set(models) == {"AFD", "representation matching"}
        assert all(curve.index.nunique() >= 4 for curve in models.values())


# ---- paper values -------------------------------------------------------------------------------

def _numbers(text: str) -> list[float]:
    return [float(n) for n in re.findall(r"\d+(?:\.\d+)?", text)]


@pytest.mark.skipif(not SEED_TEXT.exists(), reason="shared/papers not beside the repository")
def test_table1_values_are_the_mnist_rn18_cells():
    lines = SEED_TEXT.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Method\tDataset\tNetwork\tClean"))
    # the MNIST block ends at the first CIFAR10 row (AT on RN18 with clean 87.3)
    block = lines[start:next(i for i in range(start, len(lines)) if "CIFAR10" in lines[i])]
    for row in TABLES.get("bashivan2021-table1").rows:
        line = next(line for line in block if line.startswith(row.label + "\t"))
        cells = line.split("\t")
        assert cells[2] == "RN18"
        means = [_numbers(cell)[0] for cell in cells[3:]]  # "μ ± σ": the first number is the mean
        assert tuple(means) == row.paper, row.label


@pytest.mark.skipif(not SEED_TEXT.exists(), reason="shared/papers not beside the repository")
@pytest.mark.parametrize("table_id, header", [
    ("bashivan2021-table2", "Dataset\tModel\t$PGD_{L_{\\infty}}$"),
    ("bashivan2021-tablea5", "Dataset\tMNIST\t\tCIFAR10"),
])
def test_mnist_block_values_are_the_first_rows_after_the_header(table_id, header):
    lines = SEED_TEXT.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = [line.split("\t") for line in lines[start:] if re.match(r"^(MNIST)?\t?(NT|AT|TRADES|AFD)\t", line)]
    table = TABLES.get(table_id)
    for row, cells in zip(table.rows, rows[:len(table.rows)]):  # the MNIST block comes first
        cells = [cell for cell in cells if cell and cell != "MNIST"]
        assert cells[0] == row.in_text
        # Table 2: all eight attacks; Table A5: the MNIST Units and Dims
        assert tuple(float(c) for c in cells[1:1 + len(row.paper)]) == row.paper, (table_id, row.label)


@pytest.mark.skipif(not SEED_TEXT.exists(), reason="shared/papers not beside the repository")
def test_table_a3_values_are_the_mnist_rows_after_its_caption():
    lines = SEED_TEXT.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Table A3:"))
    rows = [line.split("\t")[2:] for line in lines[start:start + 8] if re.match(r"^(MNIST\tRN18)?\t+\w", line)]
    table = TABLES.get("bashivan2021-tablea3")
    for row, cells in zip(table.rows, rows[:4], strict=True):  # the MNIST block comes first
        assert cells[0] == row.label
        # TRADES's AutoAttack cell is printed "$\overline{2}$": its one number
        assert tuple(_numbers(" ".join(cells[1:]))) == row.paper[:3], row.label
        assert row.paper[3:] == (None, None)  # the added PGD and Square columns


@pytest.mark.skipif(not SEED_TEXT.exists(), reason="shared/papers not beside the repository")
def test_table_a6_values_are_the_merged_cells_after_its_caption():
    lines = SEED_TEXT.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Table A6:"))
    labels, values = next(line for line in lines[start:] if line.startswith("MNIST\tRN18\t")).split("\t")[2:4]
    rows = TABLES.get("bashivan2021-tablea6").rows
    assert labels == " ".join(row.in_text for row in rows)
    assert _numbers(values) == [value for row in rows for value in row.paper]


# ---- rendering from synthetic rows --------------------------------------------------------------

META = {"study": "bashivan2021", "dataset": "digits", "arch": "resnet18-mnist-norm", "defense": "afd",
        "profile": "smoke", "seed": 0, "label": "", "norm": "", "eps": math.nan, "steps": -1, "n": 359}


def _synthetic(run: str) -> list[dict]:
    meta = {**META, "run": run, "source": ""}
    pgd = {**meta, "attack": "pgd", "norm": "linf", "steps": 40, "metric": "accuracy"}
    fgsm = {**meta, "attack": "fgsm", "norm": "linf", "metric": "accuracy"}
    rows = [{**meta, "attack": "clean", "metric": "accuracy", "value": 0.98},
            {**pgd, "eps": 0.3, "value": 0.90}, {**pgd, "eps": 0.1, "value": 0.95},
            # the labelled transfer attack is also evaluated white-box on the run itself
            {**pgd, "eps": 0.3, "label": "pgd-transfer", "value": 0.89},
            {**fgsm, "eps": 0.3, "value": 0.93},
            # Table A3's attacks on a 100-point subset (``examples``)
            {**meta, "attack": "autoattack", "norm": "linf", "eps": 0.3, "metric": "accuracy", "value": 0.91,
             "n": 100},
            {**meta, "attack": "boundary", "norm": "l2", "eps": 2.0, "steps": 5000, "metric": "accuracy",
             "value": 0.8, "n": 100},
            {**pgd, "eps": 0.3, "label": "table-a3", "value": 0.94, "n": 100},
            {**pgd, "metric": "auc", "value": 0.83}, {**fgsm, "metric": "auc", "value": 0.84},
            {**pgd, "norm": "l2", "steps": 50, "metric": "auc", "value": 0.5},
            {**meta, "attack": "representation", "metric": "active_units", "value": 14.0},
            {**meta, "attack": "representation", "metric": "pca_dims_99", "value": 6.0},
            {**meta, "attack": "representation", "norm": "linf", "eps": 0.3, "steps": 40, "metric": "sensitivity",
             "value": 0.1}]
    source = {**meta, "source": afd_tables.BLACK_BOX_SOURCE, "metric": "accuracy", "norm": "linf", "eps": 0.3}
    rows += [{**source, "attack": "pgd", "label": "pgd-transfer", "steps": 40, "value": 0.97},
             {**source, "attack": "fgsm", "label": "fgsm-transfer", "value": 0.96}]
    return rows


def test_tables_render_from_synthetic_rows():
    results = pd.DataFrame(_synthetic("bashivan2021-mnist-afd-s0"))
    table1 = render_table(TABLES.get("bashivan2021-table1"), results)
    cells = row_cells(table1, "AFD")
    assert cells[1:4] == ["98.00", "99.15", "-1.15"]
    assert cells[4:7] == ["90.00", "96.13", "-6.13"]  # white-box: the sweep's ε = 0.3 member, not the labelled one
    assert cells[7] == "93.00"
    assert cells[10:12] == ["97.00", "98.31"] and cells[13] == "96.00"  # black-box, from the NT source
    assert cells[-1] == "smoke / digits, 1 of 3 seeds" and "not comparable" in table1
    assert row_cells(table1, "NT")[-1] == "not run"
    table2 = row_cells(render_table(TABLES.get("bashivan2021-table2"), results), "AFD")
    assert table2[1:4] == ["0.83", "0.83", "0.00"] and table2[4:6] == ["0.50", "0.84"]
    assert table2[10] == "0.84"  # FGSM
    assert table2[16] == "—" and table2[17] == "0.85"  # DDN: not computed yet, the paper's value beside it
    tablea5 = row_cells(render_table(TABLES.get("bashivan2021-tablea5"), results), "AFD")
    assert tablea5[1:7] == ["14", "18", "-4", "6", "6", "0"]
    # Table A6's FC3-PD row is Table 1's AFD run, its PGD-L∞ white-box cell
    tablea6 = render_table(TABLES.get("bashivan2021-tablea6"), results)
    assert row_cells(tablea6, "FC3-PD")[1:4] == ["90.00", "97.03", "-7.03"] and row_cells(tablea6, "FC1-PD")[1] == "—"
    # Table A3: B&B did not run (no foolbox extra), its paper value still beside the empty cell
    tablea3 = row_cells(render_table(TABLES.get("bashivan2021-tablea3"), results), "AFD")
    assert tablea3[1:10] == ["91", "92", "-1", "80", "78", "2", "—", "96", "—"]
    assert tablea3[10:12] == ["94", "not in text"]  # PGD on the same points: no paper value
    assert tablea3[13] == "—"  # Square: not among the synthetic rows


def test_table1_rows_are_the_mean_and_std_over_three_seeds_and_table_a6_reads_seed_0():
    assert all(row.run == tuple(f"{row.run[0][:-1]}{seed}" for seed in (0, 1, 2))
               for row in TABLES.get("bashivan2021-table1").rows)
    seeds = [pd.DataFrame(_synthetic(f"bashivan2021-mnist-afd-s{seed}")) for seed in (0, 1, 2)]
    seeds[1].loc[seeds[1].attack == "clean", "value"] = 0.96  # clean 98, 96, 98: mean 97.33, std 1.15
    results = pd.concat(seeds, ignore_index=True)
    assert row_cells(render_table(TABLES.get("bashivan2021-table1"), results), "AFD")[1] == "97.33 ± 1.15"
    assert [row.run for row in TABLES.get("bashivan2021-tablea6").rows] == [
        ("bashivan2021-mnist-afd-fc1pd-s0",), ("bashivan2021-mnist-afd-fc3-s0",), ("bashivan2021-mnist-afd-s0",)]
