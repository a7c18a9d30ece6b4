"""The AFD study's CIFAR halves (Bashivan et al. 2021): the CIFAR-10 study's index entries, bases and schedules,
attack configs at every profile; the CIFAR-100 study's entries, which train the same settings on CIFAR-100;
both data sets' tables (runs and paper values) and rendering."""

import math
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from afd_suite_checks import assert_suite_feeds_tables_a3_and_2
from table_cells import row_cells

import robust.tables.bashivan2021_cifar as afd_tables
from robust.evaluate import parse_suite
from robust.index import check_index, load_index
from robust.params import lookup
from robust.representation import parse_representation
from robust.study_figures import parse_study_figure
from robust.tables import TABLES, render_table

REPO = Path(__file__).resolve().parents[1]
STUDY = "bashivan2021-cifar10"
SEED_TEXT = REPO.parent / "shared" / "papers" / "afd_bashivan2021.txt"
TABLES_OF = ("table1", "table2", "tablea3", "tablea5")
ROWS = ("nt-s0", "at-s0", "trades-s0", "afd-s0", "nt-source")
EPS = 8 / 255
# each data set's block of the paper's tables, in the order the seed text prints them after MNIST's
BLOCKS = {"cifar10": (afd_tables.CIFAR10, 1), "cifar100": (afd_tables.CIFAR100, 2)}


def _study_file(block: afd_tables.CifarBlock) -> dict:
    return yaml.safe_load((REPO / f"studies/{block.study}.yaml").read_text())


@pytest.fixture(scope="module")
def study():
    return _study_file(afd_tables.CIFAR10)


@pytest.mark.parametrize("dataset", sorted(BLOCKS))
def test_the_study_index_resolves_with_exactly_its_runs(dataset):
    block, _ = BLOCKS[dataset]
    study_file = f"studies/{block.study}.yaml"
    index, files = load_index(REPO)
    check_index(index, files)
    runs = {name: fields for name, fields in index["runs"].items() if fields["_file"] == study_file}
    assert set(runs) == {f"{block.study}-{row}" for row in ROWS}
    assert all(fields["study"] == block.study and fields["base"] == name and fields["dataset"] == dataset
               for name, fields in runs.items())
    assert {index["bases"][name]["dataset"] for name in runs} == {dataset}
    assert study_file in yaml.safe_load((REPO / "dvc.yaml").read_text())["vars"]


@pytest.mark.parametrize("dataset", sorted(BLOCKS))
def test_every_table_row_names_runs_of_the_study(dataset):
    block, _ = BLOCKS[dataset]
    runs = _study_file(block)["runs"]
    assert {f"{block.study}-{table}" for table in TABLES_OF} == {
        name for name in TABLES.names() if name.startswith(f"{block.study}-")}
    for table_id in (f"{block.study}-{table}" for table in TABLES_OF):
        table = TABLES.get(table_id)
        assert table.runs() and all(run in runs for run in table.runs()), table_id
        assert all(len(row.paper) == len(table.columns) for row in table.rows), table_id
    sources = {column.source for column in TABLES.get(f"{block.study}-table1").columns if column.source}
    assert sources == {block.black_box_source} and block.black_box_source in runs


def test_cifar100_trains_and_attacks_with_the_cifar10_settings():
    """Table A1, §3.2 and Table 1's caption give both data sets the same settings: every CIFAR-100 base and run
    reads the CIFAR-10 study's keys, on the `cifar100` data set, under its own names."""
    cifar10, cifar100 = _study_file(afd_tables.CIFAR10), _study_file(afd_tables.CIFAR100)
    assert set(cifar100) == {"bases", "runs", "transfer_runs", "study_figures"}  # no settings of its own
    rename = {f"{afd_tables.CIFAR100.study}-{row}": f"{STUDY}-{row}" for row in ROWS}
    for name, base in cifar100["bases"].items():
        assert {**base, "dataset": "cifar10"} == cifar10["bases"][rename[name]] and base["dataset"] == "cifar100"
    for name, run in cifar100["runs"].items():
        twin = cifar10["runs"][rename[name]]
        assert run == {**twin, "study": afd_tables.CIFAR100.study, "base": name, "dataset": "cifar100"}
    for name, figure in cifar100["study_figures"].items():
        twin = cifar10["study_figures"][name.replace("cifar100", "cifar10")]
        assert list(figure["runs"]) == [run.replace("cifar10", "cifar100") for run in twin["runs"]]
        assert figure["dataset"] == "cifar100" and figure["kind"] == twin["kind"]
        # the figure stage reads the figure from its params file
        assert figure["params_file"] == f"studies/{afd_tables.CIFAR100.study}.yaml"


def _base(study: dict, row: str) -> dict:
    return lookup(study, study["bases"][f"{STUDY}-{row}"]["key"])


def test_bases_train_the_normalised_cifar_resnet18_on_cifar10_on_the_schedule_of_each_profile(study):
    index, _ = load_index(REPO)
    assert {index["bases"][f"{STUDY}-{row}"]["dataset"] for row in ROWS} == {"cifar10"}
    bases = {row: _base(study, row) for row in ROWS}
    assert {b["defense"]["name"] for b in bases.values()} == {"none", "at", "trades", "afd"}
    assert all(b["arch"] == "resnet18-norm" and b["optimizer"] == "sgd" and b["momentum"] == 0.9
               and b["augment"] == {"crop": 4, "flip": True, "fill": 0.0} for b in bases.values())
    # Table A1 (CIFAR-10): 900 epochs, ×0.1 after 400 and 800, batch 128, E+Dc lr 0.1, weight decay 1e-4
    for row in ("nt-s0", "at-s0", "afd-s0", "nt-source"):
        assert bases[row]["l2"] == 0.0001
        assert bases[row]["profiles"]["paper"] == {"epochs": 900, "batch_size": 128, "lr": 0.1,
                                                   "milestones": [400, 800], "gamma": 0.1}
    # TRADES: its official CIFAR-10 script
    trades = bases["trades-s0"]
    assert trades["l2"] == 0.0002 and trades["profiles"]["paper"] == {
        "epochs": 76, "batch_size": 128, "lr": 0.1, "milestones": [74], "gamma": 0.1}
    assert trades["defense"] == {"name": "trades", "beta": 6.0, "eps": 0.031, "steps": 10, "step_size": 0.007}
    for base in bases.values():  # narrow at smoke and cpu, the full 64…512 network at paper
        assert base["profiles"]["smoke"]["width"] < base["profiles"]["cpu"]["width"] < 1
        assert "width" not in base["profiles"]["paper"]
    assert {b["seed"] for row, b in bases.items() if row != "nt-source"} == {0} and bases["nt-source"]["seed"] != 0
    for run in study["runs"].values():
        assert lookup(study, run["finetune_key"]) == {"epochs": 0}


def test_afd_and_at_train_against_pgd_linf_at_8_of_255(study):
    afd = _base(study, "afd-s0")["defense"]
    assert afd == {"name": "afd", "attack": {"name": "pgd", "eps": EPS, "steps": 20, "step_size": 2 / 255,
                                             "random_start": True},
                   "lr_embed": 0.5, "lr_disc": 0.1, "discriminator": "fc3-pd", "disc_width": 512,
                   "gan_loss": "softplus", "momentum": 0.9}
    at = _base(study, "at-s0")["defense"]["adversarial"]
    assert at == {"fraction": 1.0, "attack": {"name": "pgd", "eps": EPS, "steps": 7, "step_size": 2 / 255,
                                              "random_start": True}}


def _config(study: dict, key: str, profile: str) -> dict:
    config = study[STUDY][key]
    return {**config, **config.get("profiles", {}).get(profile, {})}


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_attack_configs_parse_at_every_profile(study, profile):
    for key in ("attack", "attack_source"):
        config = _config(study, key, profile)
        suite = parse_suite([dict(entry) for entry in config["suite"]])
        transfer = parse_suite([dict(entry) for entry in config["transfer"]], subsets=False)
        assert {spec.label for spec in transfer} == {"pgd-transfer", "fgsm-transfer"}
        assert all(spec.eps == EPS for spec in transfer)
        if key == "attack_source":
            continue
        # Table 1's white-box cells read the sweeps' 8/255 members (Table A2: 20 steps of 2/255 but at smoke)
        pgd = [s for s in suite if s.name == "pgd" and s.norm == "linf" and s.sweep is not None]
        assert [s.eps for s in pgd] == [0.0, *(k / 255 for k in (2, 4, 8, 16, 32))]
        assert all(s.settings["steps"] == (10 if profile == "smoke" else 20) for s in pgd)
        assert next(s for s in pgd if s.eps == EPS).settings["step_size"] == 2 / 255
        fgsm = [s.eps for s in suite if s.name == "fgsm" and s.sweep is not None]
        assert fgsm == [0.0, *(k / 255 for k in (2, 4, 8, 16, 32, 64))]
        assert EPS in parse_representation(config["representation"], "representation").eps
        assert_suite_feeds_tables_a3_and_2(suite, f"{STUDY}-tablea3", profile)


@pytest.mark.parametrize("dataset", sorted(BLOCKS))
def test_study_figures_draw_the_four_rows(dataset):
    block, _ = BLOCKS[dataset]
    figures = _study_file(block)["study_figures"]
    for name, kind in ((f"{block.study}-fig2", "accuracy_curves"),
                       (f"{block.study}-fig4", "sensitivity_and_class_gradients")):
        figure = parse_study_figure(figures[name], f"study_figures.{name}")
        assert figures[name]["kind"] == kind and figures[name]["dataset"] == dataset
        assert list(figure.runs) == [f"{block.study}-{row}" for row in ("nt-s0", "at-s0", "trades-s0", "afd-s0")]


# ---- paper values -------------------------------------------------------------------------------

def _numbers(text: str) -> list[float]:
    return [float(n) for n in re.findall(r"\d+(?:\.\d+)?", text)]


def _lines() -> list[str]:
    return SEED_TEXT.read_text().splitlines()


needs_text = pytest.mark.skipif(not SEED_TEXT.exists(), reason="shared/papers not beside the repository")


def _seed_rows(header: str, span: int, pattern: str) -> list[list[str]]:
    """The cells of the lines matching ``pattern`` among the ``span`` lines from the one opening with ``header``."""
    lines = _lines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    return [line.split("\t") for line in lines[start:start + span] if re.match(pattern, line)]


def _value(cell: str) -> float | None:
    """A cell's number; None where the text has none (AFD CIFAR-100 Table A3's "θ"), "$\\overline{2}$" read as 2."""
    numbers = _numbers(cell)
    return numbers[0] if numbers else None


@needs_text
@pytest.mark.parametrize("dataset", sorted(BLOCKS))
def test_table1_values_are_the_rn18_cells_of_the_data_set(dataset):
    block, k = BLOCKS[dataset]
    lines = _lines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Method\tDataset\tNetwork\tClean"))
    labels = {"NT _†", "NT ⁺", *(label for label, _, _ in afd_tables.DEFENSES)}
    # the replicated RN18 rows (NT, AT, TRADES) and AFD's: four per data set, MNIST's block first
    replicated = [line.split("\t") for line in lines[start:start + 40]
                  if line.split("\t")[0] in labels and line.split("\t")[2] == "RN18"]
    assert len(replicated) == 12
    for row, cells in zip(TABLES.get(f"{block.study}-table1").rows, replicated[4 * k:4 * k + 4], strict=True):
        assert cells[0] == row.label
        assert tuple(_numbers(cell)[0] for cell in cells[3:]) == row.paper, row.label  # "μ ± σ": the mean


@needs_text
@pytest.mark.parametrize("dataset", sorted(BLOCKS))
def test_table2_values_are_the_data_sets_block(dataset):
    block, k = BLOCKS[dataset]
    rows = _seed_rows("Dataset\tModel\t$PGD_{L_{\\infty}}$", 14, r"^[^\t]*\t(NT|AT|TRADES|AFD)\t")
    assert rows[4 * k + 1][0].startswith("CIFAR")  # each CIFAR block's AT row names the data set
    for row, cells in zip(TABLES.get(f"{block.study}-table2").rows, rows[4 * k:4 * k + 4], strict=True):
        assert cells[1] == row.in_text
        assert tuple(float(c) for c in cells[2:]) == row.paper, row.label


@needs_text
@pytest.mark.parametrize("dataset", sorted(BLOCKS))
def test_table_a3_values_are_the_data_sets_rows(dataset):
    block, k = BLOCKS[dataset]
    rows = [cells[2:] for cells in _seed_rows("Table A3:", 15, r"^[^\t]*\t[^\t]*\t(NT|AT|TRADES|AFD)\t")]
    for row, cells in zip(TABLES.get(f"{block.study}-tablea3").rows, rows[4 * k:4 * k + 4], strict=True):
        assert cells[0] == row.label
        assert tuple(_value(cell) for cell in (cells[1:] + ["", "", ""])[:3]) == row.paper[:3], row.label
        assert row.paper[3:] == (None, None)  # the added PGD and Square columns
    nt = TABLES.get(f"{block.study}-tablea3").rows[0].paper[:3]
    assert nt == {"cifar10": (0.0, None, None), "cifar100": (None, 2, None)}[dataset]  # cells the text lost


@needs_text
@pytest.mark.parametrize("dataset", sorted(BLOCKS))
def test_table_a5_values_are_the_data_sets_columns(dataset):
    block, k = BLOCKS[dataset]
    rows = _seed_rows("Dataset\tMNIST\t\tCIFAR10\t\tCIFAR100", 8, r"^(NT|AT|TRADES|AFD)\t")
    for row, cells in zip(TABLES.get(f"{block.study}-tablea5").rows, rows, strict=True):
        assert cells[0] == row.label
        # the columns run Units and Dims of MNIST, CIFAR10, CIFAR100
        assert tuple(float(c) for c in cells[1 + 2 * k:3 + 2 * k]) == row.paper, row.label


# ---- rendering from synthetic rows --------------------------------------------------------------

META = {"study": STUDY, "dataset": "digits", "arch": "resnet18-norm", "defense": "afd", "profile": "smoke",
        "seed": 0, "label": "", "norm": "", "eps": math.nan, "steps": -1, "n": 359}


def _synthetic(run: str) -> list[dict]:
    meta = {**META, "run": run, "source": ""}
    pgd = {**meta, "attack": "pgd", "norm": "linf", "steps": 20, "metric": "accuracy"}
    fgsm = {**meta, "attack": "fgsm", "norm": "linf", "metric": "accuracy"}
    rows = [{**meta, "attack": "clean", "metric": "accuracy", "value": 0.90},
            {**pgd, "eps": EPS, "value": 0.70}, {**pgd, "eps": 2 / 255, "value": 0.85},
            # the labelled transfer attack is also evaluated white-box on the run itself
            {**pgd, "eps": EPS, "label": "pgd-transfer", "value": 0.69},
            {**fgsm, "eps": EPS, "value": 0.80},
            {**meta, "attack": "autoattack", "norm": "linf", "eps": EPS, "metric": "accuracy", "value": 0.30,
             "n": 100},
            {**pgd, "eps": EPS, "label": "table-a3", "value": 0.40, "n": 100},
            {**pgd, "metric": "auc", "value": 0.75}, {**fgsm, "metric": "auc", "value": 0.80},
            {**meta, "attack": "representation", "metric": "active_units", "value": 100.0},
            {**meta, "attack": "representation", "metric": "pca_dims_99", "value": 12.0}]
    source = {**meta, "source": afd_tables.CIFAR10.black_box_source, "metric": "accuracy", "norm": "linf", "eps": EPS}
    rows += [{**source, "attack": "pgd", "label": "pgd-transfer", "steps": 20, "value": 0.85},
             {**source, "attack": "fgsm", "label": "fgsm-transfer", "value": 0.83}]
    return rows


def test_tables_render_from_synthetic_rows():
    results = pd.DataFrame(_synthetic(f"{STUDY}-afd-s0"))
    table1 = render_table(TABLES.get(f"{STUDY}-table1"), results)
    cells = row_cells(table1, "AFD")
    assert cells[1:4] == ["90.00", "89.38", "0.62"]
    assert cells[4:7] == ["70.00", "77.72", "-7.72"]  # white-box: the sweep's 8/255 member, not the labelled one
    assert cells[7:10] == ["80.00", "85.34", "-5.34"]
    assert cells[10:13] == ["85.00", "86.33", "-1.33"] and cells[13:16] == ["83.00", "84.70", "-1.70"]
    assert cells[-1] == "smoke / digits" and "not comparable" in table1
    assert row_cells(table1, "NT")[-1] == "not run"
    table2 = row_cells(render_table(TABLES.get(f"{STUDY}-table2"), results), "AFD")
    assert table2[1:4] == ["0.75", "0.73", "0.02"] and table2[10:13] == ["0.80", "0.85", "-0.05"]
    assert table2[16:18] == ["—", "0.38"]  # DDN: not computed, the paper's value beside it
    tablea3 = render_table(TABLES.get(f"{STUDY}-tablea3"), results)
    assert row_cells(tablea3, "AFD")[1:13] == ["30", "25", "5", "—", "68", "—", "—", "41", "—", "40", "not in text", "—"]
    assert row_cells(tablea3, "NT")[1:9] == ["—", "0", "—", "—", "not in text", "—", "—", "not in text"]
    tablea5 = row_cells(render_table(TABLES.get(f"{STUDY}-tablea5"), results), "AFD")
    assert tablea5[1:7] == ["100", "417", "-317", "12", "9", "3"]


def test_cifar100_tables_render_its_own_cells_and_say_whose_settings_it_trains():
    block = afd_tables.CIFAR100
    results = pd.DataFrame([{**row, "run": row["run"].replace(STUDY, block.study), "study": block.study,
                             "source": row["source"].replace(STUDY, block.study)}
                            for row in _synthetic(f"{STUDY}-afd-s0")])
    table1 = render_table(TABLES.get(f"{block.study}-table1"), results)
    assert row_cells(table1, "AFD")[1:4] == ["90.00", "62.35", "27.65"]
    assert row_cells(table1, "AFD")[10:13] == ["85.00", "63.63", "21.37"]  # black-box, from the CIFAR-100 source
    assert row_cells(table1, "NT ⁺")[-1] == "not run" and "CIFAR-10 study's settings" in table1
    tablea3 = render_table(TABLES.get(f"{block.study}-tablea3"), results)
    assert row_cells(tablea3, "NT")[1:6] == ["—", "not in text", "—", "—", "2"]
