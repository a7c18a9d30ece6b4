"""The JARN studies (Chan et al. 2020): MNIST (Table 1) and CIFAR-10 (Tables 3 and 5, Fig. 2). Index
entries, params at every profile, table rows and paper values against the seed text, rendering from
synthetic result rows."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from robust.defenses import build_defense
from robust.evaluate import parse_suite
from robust.index import check_index, load_index
from robust.params import load_params, lookup
from robust.pipeline import _attack_settings, _train_config
from robust.plots import sweep_curves, sweep_tables
from robust.tables import chan2020, render_table

REPO = Path(__file__).resolve().parents[1]
STUDY_FILE = "studies/chan2020.yaml"
CIFAR10_FILE = "studies/chan2020-cifar10.yaml"
CIFAR10 = chan2020.CIFAR10_STUDY
CIFAR10_TABLES = (chan2020.CIFAR10_TABLE3, chan2020.CIFAR10_TABLE5)
FIG2_RUNS = {f"{CIFAR10}-pgd-at7", f"{CIFAR10}-jarn-at1"}
TWIN = f"{CIFAR10}-pgd-at7-twin"  # Table 5's second PGD-AT7 source, not a row
FIG5_RUNS = {run for table in chan2020.FIG5_TABLES for run in table.runs()} - {f"{CIFAR10}-jarn"}
TABLE3_RUNS = {chan2020.cifar10_run(suffix) for _, _, suffix in chan2020.CIFAR10_ROWS}
PAPERS = REPO.parent / "shared" / "papers"
PROFILES = ("smoke", "cpu", "paper")


@pytest.fixture(scope="module")
def index():
    return load_index(REPO)


def test_the_study_index_entries_validate(index):
    entries, files = index
    check_index(entries, files)
    runs = {name for name, fields in entries["runs"].items() if fields["_file"] == STUDY_FILE}
    assert runs == {"chan2020-standard", "chan2020-uniform-noise", "chan2020-jarn"}
    for run in runs:
        fields = entries["runs"][run]
        assert fields["base"] == run and entries["bases"][run]["_file"] == STUDY_FILE
        assert fields["finetune_key"] == "chan2020.evaluate_base"  # evaluated as trained


def test_every_table_row_is_a_run_of_the_study(index):
    entries, _ = index
    for row in chan2020.TABLE1.rows:
        assert row.run_ids and all(entries["runs"][run]["study"] == "chan2020" for run in row.run_ids)


@pytest.mark.parametrize("profile", PROFILES)
def test_bases_and_attacks_resolve_at_every_profile(profile):
    params = {**load_params(REPO / "params.yaml"), **load_params(REPO / STUDY_FILE), "profile": profile}
    for name in lookup(params, "chan2020.bases"):
        key = f"chan2020.bases.{name}"
        build_defense(lookup(params, f"{key}.defense"), key=f"{key}.defense")
        config = _train_config(params, "pretrain", key)
        # every profile decays the rate before JARN's last 25% (official shape; smoke: global epochs, batch, lr)
        assert config.optimizer == "adam" and config.milestones[-1] <= 0.75 * config.epochs
        if profile == "smoke":
            global_scale = params["profiles"]["smoke"]["pretrain"]
            assert (config.epochs, config.batch_size, config.lr) == (
                global_scale["epochs"], global_scale["batch_size"], global_scale["lr"])
    assert _train_config(params, "finetune", "chan2020.evaluate_base").epochs == 0
    attack, _, _ = _attack_settings(params, "chan2020.attack")
    suite = parse_suite(attack["suite"], "chan2020.attack.suite")
    assert [(s.name, s.eps) for s in suite] == [("fgsm", 0.3), ("pgd", 0.3), ("pgd", 0.3), ("autoattack", 0.3)]
    assert [s.steps for s in suite[1:3]] == [5, 40]  # the table's PGD columns tell them apart by steps
    autoattack = suite[-1].settings
    if profile == "smoke":
        assert autoattack["steps"] < 100 and autoattack["queries"] < 5000
    else:  # the authors' budgets
        assert "steps" not in autoattack and "queries" not in autoattack


def test_the_jarn_row_has_the_papers_mnist_settings():
    jarn = lookup(load_params(REPO / STUDY_FILE), "chan2020.bases.jarn.defense")
    # §4.1: 2-layer discriminator (64-128), updated every 10 iterations; §3: the last 25% of training
    assert (jarn["discriminator"], jarn["disc_every"], jarn["start_fraction"]) == ("mnist", 10, 0.75)
    noise = lookup(load_params(REPO / STUDY_FILE), "chan2020.bases.uniform-noise.defense.adversarial")
    assert noise == {"fraction": 1.0, "attack": {"name": "uniform_noise", "eps": jarn["noise_eps"]}}


@pytest.mark.skipif(not PAPERS.exists(), reason="shared/papers not beside the repository")
def test_paper_values_match_the_seed_text():
    text = (PAPERS / chan2020.SOURCE).read_text()
    # Table 1 lost its body: between its caption and the next section there is no number at all,
    # so every paper cell must be None; a seed text with the numbers would fail here
    body = text.split("Table 1: MNIST accuracy (%) on adversarial and clean test samples.")[1].split("4.2 SVHN")[0]
    assert not re.search(r"\d", body)
    for row in chan2020.TABLE1.rows:
        assert row.paper == (None,) * len(chan2020.TABLE1.columns)
        assert row.in_text in text.split()  # the row's name in §4.1's results paragraph
    # the MNIST ε is lost too ("with perturbation , crafted"): 0.3 is a choice, said so in the notes
    assert "with perturbation , crafted from FGSM and PGD (5 & 40 iterations)" in text
    notes = " ".join(chan2020.TABLE1.notes)
    assert "Chosen" in notes and "not in the paper" in notes


def _rows(run: str, accuracy: dict[tuple[str, int], float], clean: float, align: float) -> list[dict]:
    meta = {"run": run, "study": "chan2020", "dataset": "digits", "arch": "jarn-mnist", "defense": "none",
            "profile": "smoke", "seed": 0, "source": "", "label": "", "n": 100}
    rows = [{**meta, "attack": "clean", "norm": "", "eps": math.nan, "steps": -1, "metric": "accuracy", "value": clean},
            {**meta, "attack": "clean", "norm": "", "eps": math.nan, "steps": -1, "metric": "alignment",
             "value": align}]
    for (attack, steps), value in accuracy.items():
        rows.append({**meta, "attack": attack, "norm": "linf", "eps": 0.3, "steps": steps, "metric": "accuracy",
                     "value": value})
    return rows


def test_the_table_renders_from_synthetic_rows():
    accuracy = {("fgsm", -1): 0.5, ("pgd", 5): 0.3, ("pgd", 40): 0.2, ("autoattack", -1): 0.1}
    results = pd.DataFrame(_rows("chan2020-jarn", accuracy, clean=0.98, align=0.4321)
                           + _rows("chan2020-standard", {k: v / 2 for k, v in accuracy.items()}, 0.99, 0.1))
    text = render_table(chan2020.TABLE1, results)
    line = next(line for line in text.splitlines() if line.startswith("| JARN "))
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    ours = cells[1:-1:3]
    assert ours == ["98.00", "50.00", "30.00", "20.00", "10.00", "0.432"]
    assert cells[2:-1:3] == ["not in text"] * 6
    assert cells[-1] == "smoke / digits"
    assert "| Uniform noise " in text and "not run" in text
    assert "(1 of 3 rows not yet)" in text


# ---- CIFAR-10 (§4.3): Tables 3 and 5, Fig. 2 ----------------------------------------------------------


def _cifar10_params(profile: str) -> dict:
    return {**load_params(REPO / "params.yaml"), **load_params(REPO / CIFAR10_FILE), "profile": profile}


def test_the_cifar10_study_index_entries_validate(index):
    entries, files = index
    check_index(entries, files)
    runs = {name: fields for name, fields in entries["runs"].items() if fields["_file"] == CIFAR10_FILE}
    assert set(runs) == TABLE3_RUNS | {TWIN} | FIG5_RUNS
    for run, fields in runs.items():
        assert fields["study"] == CIFAR10 and fields["base"] == run and fields["dataset"] == "cifar10"
        assert fields["finetune_key"] == f"{CIFAR10}.evaluate_base"  # evaluated as trained
        suite = "attack_fig2" if run in FIG2_RUNS else "attack_fig5" if run in FIG5_RUNS else "attack"
        assert fields["attack_key"] == f"{CIFAR10}.{suite}"
    assert lookup(files[CIFAR10_FILE], f"{CIFAR10}.evaluate_base") == {"epochs": 0}


def test_the_cifar10_bases_read_cifar10_with_the_wrn_and_madrys_augmentation(index):
    entries, files = index
    bases = {name: fields for name, fields in entries["bases"].items() if fields["_file"] == CIFAR10_FILE}
    assert set(bases) == TABLE3_RUNS | {TWIN} | FIG5_RUNS
    assert {fields["dataset"] for fields in bases.values()} == {"cifar10"}
    cifar10 = lookup(files["params.yaml"], entries["datasets"]["cifar10"]["key"])
    assert cifar10["name"] == "cifar10-jpeg" and cifar10["profiles"]["smoke"] == {"name": "digits"}
    for fields in bases.values():
        base = lookup(files[CIFAR10_FILE], fields["key"])
        assert base["arch"] == "wrn-34-10"
        assert base["augment"] == {"crop": 4, "flip": True, "fill": 0.0}  # pad 4 with black, crop, mirror
        assert (base["optimizer"], base["momentum"], base["l2"]) == ("sgd", 0.9, 0.0002)  # official


def test_every_cifar10_table_run_and_source_is_a_run_of_the_study(index):
    entries, _ = index
    study_runs = {name for name, fields in entries["runs"].items() if fields["study"] == CIFAR10}
    for table in CIFAR10_TABLES:
        assert set(table.runs()) == study_runs - {TWIN} - FIG5_RUNS, table.id
        assert all(len(row.paper) == len(table.columns) for row in table.rows), table.id
    sources = {column.source for column in chan2020.CIFAR10_TABLE5.columns if column.source}
    assert sources == {f"{CIFAR10}-pgd-at7", TWIN, f"{CIFAR10}-standard"}
    assert not any(column.source for column in chan2020.CIFAR10_TABLE3.columns)


def _reads(column) -> tuple:
    return column.attack, column.eps, column.steps


def _cifar10_attacks(entries, params, runs):
    """(run, attack settings, parsed white-box suite) of each of ``runs``, at ``params``' profile."""
    for run in sorted(runs):
        key = entries["runs"][run]["attack_key"]
        attack, _, _ = _attack_settings(params, key)
        yield run, attack, parse_suite(attack["suite"], f"{key}.suite")


@pytest.mark.parametrize("profile", PROFILES)
def test_every_cifar10_run_attacks_with_what_the_tables_read(index, profile):
    entries, _ = index
    params = _cifar10_params(profile)
    white_box = {_reads(column) for column in chan2020.CIFAR10_TABLE3.columns if column.attack != "clean"}
    transferred = {_reads(column) for column in chan2020.CIFAR10_TABLE5.columns if column.source}
    for run, attack, suite in _cifar10_attacks(entries, params, TABLE3_RUNS | {TWIN}):
        transfer = parse_suite(attack["transfer"], f"{run}.transfer")
        ran = {(spec.name, spec.eps, spec.steps) for spec in suite}
        # a column without steps reads its attack at any step count (AutoAttack: 10 iterations at smoke)
        assert all(any(name == ran_name and eps == ran_eps and steps in (None, ran_steps)
                       for ran_name, ran_eps, ran_steps in ran) for name, eps, steps in white_box), run
        assert transferred == {(spec.name, spec.eps, spec.steps) for spec in transfer}, run
        assert all(spec in suite for spec in transfer), run  # crafted once, by the white-box suite
        for spec in suite:  # Madry et al.'s CIFAR-10 attacks: PGD steps of ε/4, random starts, L∞
            assert spec.norm == "linf" and spec.eps <= 8 / 255 + 1e-12
            if spec.name == "pgd":
                assert spec.settings["random_start"] and math.isclose(spec.settings["step_size"], spec.eps / 4)


@pytest.mark.parametrize("profile", PROFILES)
def test_fig2_sweeps_the_pgd_columns_over_eps_for_jarn_at1_and_pgd_at7(profile):
    params = _cifar10_params(profile)
    attack, _, _ = _attack_settings(params, f"{CIFAR10}.attack_fig2")
    grids = {}
    for spec in parse_suite(attack["suite"]):
        if spec.name == "pgd":
            grids.setdefault(spec.steps, set()).add(round(spec.eps * 255, 6))
    swept = (5,) if profile == "smoke" else chan2020.PGD_STEPS  # smoke draws one curve: the wiring
    assert {steps: grid for steps, grid in grids.items() if len(grid) > 1} == {steps: {2, 4, 6, 8} for steps in swept}
    # the sweep becomes plot data: one curve file per PGD setting, a line per run
    rows = [{"run": run, "study": CIFAR10, "source": "", "attack": "pgd", "label": "", "norm": "linf", "eps": eps,
             "steps": 5, "metric": "accuracy", "value": 0.5} for run in FIG2_RUNS for eps in (2 / 255, 8 / 255)]
    assert set(sweep_curves(pd.DataFrame(rows))) == {f"{CIFAR10}-pgd_linf_steps5.csv"}


@pytest.mark.parametrize("profile", PROFILES)
def test_cifar10_bases_train_on_the_official_schedules_shape_at_every_profile(profile):
    params = _cifar10_params(profile)
    for name in lookup(params, f"{CIFAR10}.bases"):
        key = f"{CIFAR10}.bases.{name}"
        defense = build_defense(lookup(params, f"{key}.defense"), key=f"{key}.defense")
        config = _train_config(params, "pretrain", key)
        # ×0.1 after 50% and 75% of training (official: 80k and 120k of 160k steps)
        assert (config.optimizer, config.lr, config.gamma) == ("sgd", 0.1, 0.1)
        assert [round(m / config.epochs, 2) for m in config.milestones] == [0.5, 0.75]
        if name.startswith("jarn"):  # JARN on the last 25% (§3), all of it at the last rate as in the official run
            first = math.ceil(defense.start_fraction * config.epochs - 1e-9)
            assert first == config.milestones[-1] and defense.start_fraction == 0.75
    paper = _train_config(_cifar10_params("paper"), "pretrain", f"{CIFAR10}.bases.standard")
    assert (paper.epochs, paper.batch_size) == (205, 64)  # official: 160,000 steps of 64 on 50,000 images


def test_the_cifar10_jarn_rows_have_the_papers_and_the_official_settings():
    bases = lookup(load_params(REPO / CIFAR10_FILE), f"{CIFAR10}.bases")
    jarn = bases["jarn"]["defense"]
    # §4.3: a 5-layer discriminator (32-64-128-256-512) updated every 20 iterations; official: λ_adv 1, noise 8/255
    assert (jarn["discriminator"], jarn["disc_every"], jarn["lambda"]) == ("cifar10", 20, 1.0)
    assert math.isclose(jarn["noise_eps"], 8 / 255)
    fgsm = {"name": "fgsm", "eps": jarn["noise_eps"]}
    assert bases["jarn-at1"]["defense"] == {**jarn, "adversarial": {"fraction": 1.0, "attack": fgsm}}
    assert bases["fgsm-at1"]["defense"] == {"name": "at", "adversarial": {"fraction": 1.0, "attack": fgsm}}
    pgd = bases["pgd-at7"]["defense"]["adversarial"]["attack"]
    # "differently initialized versions" (§4.3): the same training from another seed
    twin = bases.pop("pgd-at7-twin")
    assert twin.pop("seed") != load_params(REPO / "params.yaml")["seed"] and twin == bases["pgd-at7"]
    assert (pgd["steps"], pgd["random_start"]) == (7, True) and math.isclose(pgd["step_size"], 2 / 255)
    noise = bases["uniform-noise"]["defense"]["adversarial"]
    assert noise == {"fraction": 1.0, "attack": {"name": "uniform_noise", "eps": jarn["noise_eps"]}}
    assert bases["double-backprop"]["defense"]["name"] == "input_gradient"


@pytest.mark.skipif(not PAPERS.exists(), reason="shared/papers not beside the repository")
def test_cifar10_paper_values_match_the_seed_text():
    text = (PAPERS / chan2020.SOURCE).read_text()
    # the tables lost their bodies: each caption is followed by the next paragraph of running text
    for caption, after in (("Table 3: CIFAR-10 accuracy (%) on adversarial and clean test samples.",
                            "Adversarial training (AT) based defenses"),
                           ("Table 5: CIFAR-10 accuracy (%) on transfer attack where adversarial examples are "
                            "generated from a PGD-AT7 trained model.", "5 CONCLUSIONS")):
        assert text.split(caption)[1].lstrip().startswith(after)
    assert "with (), crafted from FGSM and PGD (5, 10 & 20 iterations)" in text  # ε lost
    section = text.split("4.3 CIFAR-10")[1].split("5 CONCLUSIONS")[0].split()
    for table in CIFAR10_TABLES:
        for row in table.rows:
            assert row.paper == (None,) * len(table.columns), (table.id, row.label)
            assert row.in_text in section, (table.id, row.label)  # the row's word in §4.3


@pytest.mark.skipif(not PAPERS.exists(), reason="shared/papers not beside the repository")
def test_the_afd_quote_of_jarn_is_afd_table_1s_jarn_line():
    lines = (PAPERS / "afd_bashivan2021.txt").read_text().splitlines()
    (line,) = [line for line in lines if line.startswith("JARN(Chan et al., 2020b)")]
    cells = [cell for cell in line.split("\t") if cell]
    assert cells[1] == "WRN-34-10"
    clean, pgd, fgsm = cells[2:5]  # Table 1's columns: Clean, PGD-L∞ (WB), FGSM (WB)
    assert f"{clean}% clean, {pgd}% PGD-L∞ and {fgsm}% FGSM" in chan2020.AFD_QUOTE
    assert chan2020.AFD_QUOTE in chan2020.CIFAR10_TABLE3.notes


def _cifar10_row(run: str, attack: str, value: float, source: str = "", steps: int = -1) -> dict:
    return {"run": run, "study": CIFAR10, "dataset": "digits", "arch": "wrn-34-10", "defense": "none",
            "profile": "smoke", "seed": 0, "source": source, "attack": attack, "label": "",
            "norm": "" if attack == "clean" else "linf", "eps": math.nan if attack == "clean" else 8 / 255,
            "steps": steps, "metric": "accuracy", "value": value, "n": 100}


def test_the_transfer_table_renders_from_tidy_rows():
    jarn, pgd_at7, standard = (chan2020.cifar10_run(suffix) for suffix in ("jarn", "pgd-at7", "standard"))
    rows = [_cifar10_row(jarn, "clean", 0.85), _cifar10_row(jarn, "pgd", 0.2, steps=20)]  # white-box: not a cell
    rows += [_cifar10_row(jarn, "pgd", 0.6, source=pgd_at7, steps=steps) for steps in (5, 10)]
    rows += [_cifar10_row(jarn, "pgd", 0.55, source=pgd_at7, steps=20), _cifar10_row(jarn, "fgsm", 0.7, pgd_at7)]
    rows += [_cifar10_row(jarn, "fgsm", 0.3, source=standard)]
    text = render_table(chan2020.CIFAR10_TABLE5, pd.DataFrame(rows))
    line = next(line for line in text.splitlines() if line.startswith("| JARN "))
    ours = [cell.strip() for cell in line.strip("|").split("|")][1:-1:3]
    assert ours == ["85.00", "70.00", "60.00", "60.00", "55.00", "—", "—", "—", "—", "30.00", "—", "—", "—"]
    assert "| JARN-AT1 " in text and "not run" in text
    table3 = render_table(chan2020.CIFAR10_TABLE3, pd.DataFrame(rows))
    line = next(line for line in table3.splitlines() if line.startswith("| JARN "))
    assert [cell.strip() for cell in line.strip("|").split("|")][1:-1:3] == ["85.00", "—", "—", "—", "20.00", "—"]


def test_the_cifar10_figures_draw_the_models_the_text_discusses(index):
    entries, files = index
    figures = lookup(files[CIFAR10_FILE], "study_figures")
    assert set(figures) == {f"{CIFAR10}-fig3", f"{CIFAR10}-fig4"}
    for figure in figures.values():
        assert figure["dataset"] == "cifar10" and all(entries["runs"][run]["study"] == CIFAR10 for run in figure["runs"])
    # §4.3 on Fig. 3: standard, FGSM-AT, JARN (panel c), JARN-AT1 and PGD-AT7; on Fig. 4: JARN, PGD-AT, standard
    fig3, fig4 = figures[f"{CIFAR10}-fig3"], figures[f"{CIFAR10}-fig4"]
    assert list(fig3["runs"].values()) == ["Standard", "FGSM-AT1", "JARN", "JARN-AT1", "PGD-AT7"]
    assert set(fig4["runs"].values()) == {"Standard", "PGD-AT7", "JARN"}
    attack = lookup(files[CIFAR10_FILE], f"{CIFAR10}.attack.suite")[0]
    assert attack["name"] == "fgsm" and fig3["eps"] == attack["eps"]  # the table's FGSM direction and ε


@pytest.mark.parametrize("profile", PROFILES)
def test_every_cifar10_row_is_also_attacked_with_autoattack_on_a_fixed_subset(index, profile):
    entries, _ = index
    params = _cifar10_params(profile)
    for run, _, suite in _cifar10_attacks(entries, params, TABLE3_RUNS | {TWIN}):
        (autoattack,) = [spec for spec in suite if spec.name == "autoattack"]
        assert autoattack.norm == "linf" and math.isclose(autoattack.eps, 8 / 255), run
        assert autoattack.examples == (1000 if profile == "paper" else 100), run
        # the authors' budgets wherever the numbers are meant to be read
        assert ("steps" in autoattack.settings) == (profile == "smoke"), run


def test_each_fig5_row_changes_one_setting_of_the_jarn_row():
    bases = lookup(load_params(REPO / CIFAR10_FILE), f"{CIFAR10}.bases")
    jarn = bases["jarn"]
    for table in chan2020.FIG5_TABLES:
        middle = table.rows[len(table.rows) // 2]
        assert middle.run == f"{CIFAR10}-jarn" and table.sweep.values[len(table.rows) // 2] in (1.0, 20), table.id
        assert list(table.sweep.values) == sorted(table.sweep.values), table.id
        setting = table.sweep.setting
        for row, value in zip(table.rows, table.sweep.values):
            base = bases[row.run.removeprefix(f"{CIFAR10}-")]
            differences = {key for key in jarn["defense"] if base["defense"].get(key) != jarn["defense"][key]}
            differences |= {key for key in jarn if key != "defense" and base.get(key) != jarn[key]}
            if row is middle:
                assert not differences
            elif setting in ("lambda", "disc_every"):
                assert differences == {setting} and base["defense"][setting] == value, row.run
            else:  # the batch, scaled at every profile, nothing else of the schedule
                assert differences == {"profiles"}
                for profile, schedule in base["profiles"].items():
                    own = jarn["profiles"][profile]
                    assert schedule == {**own, "batch_size": int(own["batch_size"] * value)}, (row.run, profile)


@pytest.mark.parametrize("profile", PROFILES)
def test_the_fig5_rows_are_attacked_as_table3_reads_its_fgsm_and_pgd20_columns(index, profile):
    entries, _ = index
    params = _cifar10_params(profile)
    wanted = {_reads(column) for column in chan2020.FIG5_COLUMNS if column.attack != "clean"}
    assert wanted == {("fgsm", 8 / 255, None), ("pgd", 8 / 255, 20)}
    for run, _, suite in _cifar10_attacks(entries, params, FIG5_RUNS):
        assert {(spec.name, spec.eps, spec.steps if spec.name == "pgd" else None) for spec in suite} == wanted, run


def test_the_fig5_sweeps_become_plot_data_with_a_field_per_column():
    rows = [_cifar10_row(f"{CIFAR10}-jarn-lambda-double", "clean", 0.8),
            _cifar10_row(f"{CIFAR10}-jarn-lambda-double", "pgd", 0.3, steps=20)]
    frame = sweep_tables(pd.DataFrame(rows))[f"{CIFAR10}-fig5-lambda.csv"]
    ours = frame[frame.curve == "reproduced"]
    assert list(frame.columns) == ["lambda", "curve", "clean", "fgsm", "pgd20"]
    assert ours[["lambda", "clean", "pgd20"]].values.tolist() == [[2.0, 80.0, 30.0]] and ours.fgsm.isna().all()
    dvc = (REPO / "dvc.yaml").read_text()
    for table in chan2020.FIG5_TABLES:
        for field in ("clean", "pgd20"):
            assert f"metrics/sweeps/{table.id}.csv: {field}" in dvc, (table.id, field)


# ---- SVHN (§4.2): Table 2 -------------------------------------------------------------------------------

SVHN_FILE = "studies/chan2020-svhn.yaml"
SVHN = chan2020.SVHN_STUDY
SVHN_RUNS = {f"{SVHN}-{suffix}" for _, _, suffix in chan2020.SVHN_ROWS}


def _svhn_params(profile: str) -> dict:
    return {**load_params(REPO / "params.yaml"), **load_params(REPO / SVHN_FILE), "profile": profile}


def test_the_svhn_study_trains_each_table2_row_on_svhn_and_evaluates_it_as_trained(index):
    entries, files = index
    check_index(entries, files)
    runs = {name: fields for name, fields in entries["runs"].items() if fields["_file"] == SVHN_FILE}
    assert set(runs) == SVHN_RUNS == set(chan2020.SVHN_TABLE2.runs())
    for run, fields in runs.items():
        assert (fields["study"], fields["base"], fields["dataset"]) == (SVHN, run, "svhn")
        assert (fields["finetune_key"], fields["attack_key"]) == (f"{SVHN}.evaluate_base", f"{SVHN}.attack")
        assert entries["bases"][run]["dataset"] == "svhn"
    svhn = lookup(files["params.yaml"], entries["datasets"]["svhn"]["key"])
    assert svhn["name"] == "svhn" and svhn["profiles"]["smoke"] == {"name": "digits"}


@pytest.mark.parametrize("profile", PROFILES)
def test_svhn_bases_train_madrys_cifar10_setup_and_jarn_on_its_last_quarter(profile):
    params = _svhn_params(profile)
    for name in lookup(params, f"{SVHN}.bases"):
        key = f"{SVHN}.bases.{name}"
        base = lookup(params, key)
        assert base["arch"] == "wrn-34-10" and "augment" not in base  # a mirrored digit is another shape
        defense = build_defense(lookup(params, f"{key}.defense"), key=f"{key}.defense")
        config = _train_config(params, "pretrain", key)
        assert (config.optimizer, config.lr, config.gamma, config.l2) == ("sgd", 0.1, 0.1, 0.0002)
        assert [round(m / config.epochs, 2) for m in config.milestones] == [0.5, 0.75]
        if name == "jarn":
            assert math.ceil(defense.start_fraction * config.epochs - 1e-9) == config.milestones[-1]
    paper = _train_config(_svhn_params("paper"), "pretrain", f"{SVHN}.bases.standard")
    # Madry et al.'s 80,000 steps of 128 on SVHN's 73,257 training images
    assert (paper.epochs, paper.batch_size) == (round(80_000 * 128 / 73_257), 128)


def test_the_svhn_jarn_row_has_the_papers_discriminator():
    bases = lookup(load_params(REPO / SVHN_FILE), f"{SVHN}.bases")
    jarn = bases["jarn"]["defense"]
    # §4.2: 5 layers of 16-32-64-128-256 channels, updated every 20 iterations
    assert (jarn["discriminator"], jarn["disc_every"]) == ("svhn", 20)
    cifar10 = lookup(load_params(REPO / CIFAR10_FILE), f"{CIFAR10}.bases.jarn.defense")
    assert {k: v for k, v in jarn.items() if k != "discriminator"} == \
        {k: v for k, v in cifar10.items() if k != "discriminator"}
    noise = bases["uniform-noise"]["defense"]["adversarial"]
    assert noise == {"fraction": 1.0, "attack": {"name": "uniform_noise", "eps": jarn["noise_eps"]}}


@pytest.mark.parametrize("profile", PROFILES)
def test_every_svhn_run_attacks_with_what_table2_reads(index, profile):
    entries, _ = index
    reads = {_reads(column) for column in chan2020.SVHN_TABLE2.columns if column.attack != "clean"}
    for run, _, suite in _cifar10_attacks(entries, _svhn_params(profile), SVHN_RUNS):
        ran = {(spec.name, spec.eps, spec.steps) for spec in suite}
        assert all(any(name == ran_name and eps == ran_eps and steps in (None, ran_steps)
                       for ran_name, ran_eps, ran_steps in ran) for name, eps, steps in reads), run
        (autoattack,) = [spec for spec in suite if spec.name == "autoattack"]
        assert autoattack.examples == (1000 if profile == "paper" else 100), run
        assert ("steps" in autoattack.settings) == (profile == "smoke"), run  # the authors' budgets at cpu, paper


@pytest.mark.skipif(not PAPERS.exists(), reason="shared/papers not beside the repository")
def test_svhn_paper_values_match_the_seed_text():
    text = (PAPERS / chan2020.SOURCE).read_text()
    caption = "Table 2: SVHN accuracy (%) on adversarial and clean test samples."
    assert text.split(caption)[1].lstrip().startswith("4.3 CIFAR-10")  # the body is lost
    section = text.split("4.2 SVHN")[1].split("4.3 CIFAR-10")[0]
    assert "with (), crafted from FGSM and 5, 10, 20-iteration PGD attack" in section  # ε lost
    assert "5 CNN layers (16-32-64-128-256 output channels) and update it for every 20 training iterations" in section
    for row in chan2020.SVHN_TABLE2.rows:
        assert row.paper == (None,) * len(chan2020.SVHN_TABLE2.columns)
        assert row.in_text in section.split(), row.label
