"""The SGR studies (Roth et al. 2018), MNIST and CIFAR-10: their index entries, their tables' runs,
the paper values against the seed text, and a transfer matrix rendered from tidy rows."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from robust.defenses import build_defense
from robust.evaluate import parse_suite
from robust.index import check_index, load_index
from robust.params import load_params, lookup
from robust.tables import render_table, roth2018

REPO = Path(__file__).resolve().parents[1]
PAPERS = REPO.parent / "shared" / "papers"
# per data set: its study file, the key its settings sit under, and its four tables
STUDIES = {
    roth2018.MNIST: ("studies/roth2018.yaml", "roth2018",
                     (roth2018.FGSM_TRANSFER, roth2018.PGD_TRANSFER, roth2018.WHITEBOX, roth2018.LRC)),
    roth2018.CIFAR10: ("studies/roth2018-cifar10.yaml", "roth2018-cifar10",
                       (roth2018.CIFAR10_FGSM_TRANSFER, roth2018.CIFAR10_PGD_TRANSFER, roth2018.CIFAR10_WHITEBOX,
                        roth2018.CIFAR10_LRC)),
}
TABLES = tuple(table for _, _, tables in STUDIES.values() for table in tables)
by_data_set = pytest.mark.parametrize("data", list(STUDIES), ids=lambda data: data.slug)


@pytest.fixture(scope="module")
def index():
    entries, files = load_index(REPO)
    check_index(entries, files)
    return entries, files


@by_data_set
def test_the_study_index_resolves_and_every_config_parses(index, data):
    entries, files = index
    study_file, key, _ = STUDIES[data]
    runs = {name: fields for name, fields in entries["runs"].items() if fields["study"] == data.study}
    assert len(runs) == 10 and all(fields["_file"] == study_file for fields in runs.values())
    params = {**files["params.yaml"], **files[study_file]}
    for name, fields in runs.items():
        assert fields["base"] == name and name in entries["bases"]
        build_defense(lookup(params, fields["defense_key"]), key=fields["defense_key"])
        attack = lookup(params, fields["attack_key"])
        parse_suite(attack["suite"], f"{fields['attack_key']}.suite")
        transfer = parse_suite(attack["transfer"])
        assert {spec.name for spec in transfer} == {"fgsm", "pgd"}
        assert all(abs(spec.eps - data.eps) < 1e-9 for spec in transfer)
        assert {spec.steps for spec in transfer if spec.name == "pgd"} == {data.pgd_steps}
    assert lookup(params, f"{key}.evaluate_base") == {"epochs": 0}


@by_data_set
def test_every_base_augments_its_images_with_section_4_1_s_crops(index, data):
    entries, files = index
    study_file, _, _ = STUDIES[data]
    params = files[study_file]
    expected = {"mnist": {"crop": 4}, "cifar10": {"crop": 4, "flip": True, "fill": 0.5}}[data.slug]
    for name, fields in entries["bases"].items():
        if fields["_file"] == study_file:
            assert lookup(params, fields["key"])["augment"] == expected, name


def test_the_cifar10_study_reads_cifar10_and_the_embedded_digits_at_smoke(index):
    entries, files = index
    assert {fields["dataset"] for name, fields in entries["bases"].items() if name.startswith("roth2018-cifar10-")} \
        == {"cifar10"}
    cifar10 = lookup(files["params.yaml"], entries["datasets"]["cifar10"]["key"])
    assert cifar10["name"] == "cifar10-jpeg" and cifar10["profiles"]["smoke"] == {"name": "digits"}
    assert {lookup(files["studies/roth2018-cifar10.yaml"], fields["key"])["arch"]
            for name, fields in entries["bases"].items() if name.startswith("roth2018-cifar10-")} == {"sgr-cifar10"}


@by_data_set
def test_the_lrc_suite_has_every_label_the_lrc_table_reads(data):
    study_file, key, (_, _, _, lrc) = STUDIES[data]
    params = load_params(REPO / study_file)
    labels = {spec.label for spec in parse_suite(lookup(params, f"{key}.attack_lrc.suite")) if spec.name == "lrc"}
    assert labels == {column.attack_label for column in lrc.columns}


@by_data_set
def test_every_table_run_and_source_is_a_run_of_the_study(index, data):
    entries, _ = index
    _, key, (fgsm, pgd, whitebox, lrc) = STUDIES[data]
    study_runs = {name for name, fields in entries["runs"].items() if fields["study"] == data.study}
    for table in (fgsm, pgd, whitebox, lrc):
        assert set(table.runs()) <= study_runs, table.id
        sources = {column.source for column in table.columns if column.source}
        assert sources <= study_runs, table.id
        assert all(len(row.paper) == len(table.columns) for row in table.rows), table.id
    for table in (fgsm, pgd):
        assert [column.source for column in table.columns[1:]] == [row.run for row in table.rows]
    lrc_runs = {name for name, fields in entries["runs"].items() if fields["attack_key"] == f"{key}.attack_lrc"}
    assert set(lrc.runs()) == lrc_runs


def _seed_matrices(text: str) -> list[tuple[str, list[str], dict[str, tuple[float, ...]]]]:
    """(data set heading, column names, {row name: numbers}) for each pipe-table matrix of the seed text."""
    lines = text.splitlines()
    matrices = []
    for i, line in enumerate(lines):
        if not line.startswith("train. meth. | test |"):
            continue
        names = [cell.strip() for cell in line.split("|")[2:] if cell.strip()]
        dataset = next(above.strip() for above in reversed(lines[:i]) if above.strip() in ("MNIST", "CIFAR10"))
        rows = {}
        for row_line in lines[i + 1:i + 1 + len(names)]:
            cells = [cell.strip() for cell in row_line.split("|") if cell.strip()]
            rows[cells[0]] = tuple(float(cell) for cell in cells[1:])
        matrices.append((dataset, names, rows))
    return matrices


@pytest.mark.skipif(not PAPERS.exists(), reason="shared/papers not beside the repository")
@by_data_set
def test_the_transcribed_matrices_are_the_seed_texts_cell_for_cell(data):
    matrices = _seed_matrices((PAPERS / roth2018.SOURCE).read_text())
    assert [dataset for dataset, _, _ in matrices] == ["CIFAR10", "CIFAR10", "MNIST", "MNIST"]
    names = [name for name, _ in data.methods]
    pair = [(columns, rows) for dataset, columns, rows in matrices if dataset == data.name]
    for (columns, rows), transcribed in zip(pair, data.matrices, strict=True):
        assert columns == names and list(rows) == names
        assert [rows[name] for name in names] == [tuple(row) for row in transcribed]
        # white-box (the diagonal) is the lowest attacked cell of each row: rows and columns line up
        for position, row in enumerate(transcribed):
            assert min(row[1:]) == row[1 + position]
    # the note's reading: the first matrix is above the second in every attacked cell
    first, second = data.matrices
    assert all(a > b for row_a, row_b in zip(first, second) for a, b in zip(row_a[1:], row_b[1:]))


def test_a_test_cell_is_given_only_where_both_matrices_of_its_data_set_agree():
    assert roth2018.MNIST_TEST == tuple(row[0] for row in roth2018.SEED_MNIST_MATRICES[1])
    missing = [name for (name, _), test in zip(roth2018.CIFAR10_METHODS, roth2018.CIFAR10_TEST) if test is None]
    assert missing == ["pgd", "fgsm"]


@pytest.mark.skipif(not PAPERS.exists(), reason="shared/papers not beside the repository")
@by_data_set
def test_every_given_paper_value_is_its_cell_in_the_seed_text(data):
    pair = [rows for dataset, _, rows in _seed_matrices((PAPERS / roth2018.SOURCE).read_text()) if dataset == data.name]
    _, _, tables = STUDIES[data]
    for table in tables:
        assert table.source.startswith(roth2018.SOURCE)
        for row in table.rows:
            for column, paper in zip(table.columns, row.paper):
                if paper is None:
                    continue
                assert column is roth2018.TEST, (table.id, row.label, column.label)
                assert all(rows[row.label][0] == paper for rows in pair), (table.id, row.label)
    # while the captions are lost, no attacked cell claims a paper value
    assert roth2018.MATRIX_OF_ATTACK == {"fgsm": None, "pgd": None}
    for table in tables[:2]:
        assert all(value is None for row in table.rows for value in row.paper[1:])


def _row(run: str, attack: str, value: float, source: str = "", metric: str = "accuracy", **keys) -> dict:
    row = {"run": run, "study": "roth2018", "dataset": "digits", "arch": "sgr-mnist", "defense": "none",
           "profile": "smoke", "seed": 0, "source": source, "attack": attack, "label": "", "norm": "linf",
           "eps": math.nan, "steps": -1, "metric": metric, "value": value, "n": 10}
    return {**row, **keys}


def test_a_transfer_matrix_renders_from_tidy_rows():
    table = roth2018.PGD_TRANSFER
    runs = [row.run for row in table.rows]
    pgd = {"eps": 0.3, "steps": 40}
    rows = [_row(run, "clean", 0.99) for run in runs]
    rows += [_row(target, "pgd", 0.5 if source == target else 0.9, source=source, **pgd)
             for target in runs[:2] for source in runs]
    rows += [_row(runs[0], "pgd", 0.45, **pgd)]  # the white-box suite row (no source) is not a matrix cell
    rows += [_row(runs[0], "fgsm", 0.7, source=runs[1], eps=0.3)]  # another attack's transfer cell neither
    text = render_table(table, pd.DataFrame(rows))
    cells = {line.split("|")[1].strip(): [cell.strip() for cell in line.strip().strip("|").split("|")]
             for line in text.splitlines() if line.startswith("| ")}
    clean, wdecay = cells["clean"], cells["wdecay"]
    assert clean[1:4] == ["99.0", "99.4", "-0.4"]  # test: ours, paper, Δ
    assert clean[4:7] == ["50.0", "not in text", "—"]  # diagonal: its own white-box examples
    assert clean[7:10] == ["90.0", "not in text", "—"]  # examples crafted on wdecay
    assert wdecay[4] == "90.0" and wdecay[7] == "50.0"
    assert cells["pgd"][4] == "—"  # no transfer rows for that target yet
    assert clean[-1] == "smoke / digits"
    assert "not comparable" in text and "captions" in text
