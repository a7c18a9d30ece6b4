"""Tables as data: paper values transcribed from the seed text, rendering from tidy rows only."""

import dataclasses
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from robust.aggregate import metric_key, summarize
from robust.tables import TABLES, render_index, render_table
from robust.tables.reproduced import REPRODUCED
from table_cells import clean_and_deepfool_rows

PAPERS = Path(__file__).resolve().parents[2] / "shared" / "papers"


def _rows(run, profile="smoke", accuracy=0.9, rho=0.25):
    return clean_and_deepfool_rows(run, accuracy=accuracy, rho=rho, profile=profile)


@pytest.mark.skipif(not PAPERS.exists(), reason="shared/papers not beside the repository")
@pytest.mark.parametrize("table_id", TABLES.names())
def test_every_paper_value_appears_in_the_seed_text(table_id):
    table = TABLES.get(table_id)
    seed_file = PAPERS / table.source.split(",")[0]
    text = seed_file.read_text()
    lines = [line for line in text.splitlines() if "\t" in line or " | " in line]  # tab- or pipe-separated tables
    merged = _merged_values(table, lines)
    if merged is not None:
        assert merged == [value for row in table.rows for value in row.paper], table_id
        return
    for row in table.rows:
        values = [value for value in row.paper if value is not None]
        if row.in_text is not None:  # a table flattened into running text: label, then its values
            tokens = text.split()
            # the first numbers after the label (a token may carry more, e.g. "34.24×10^{-2}")
            following = [_numbers(" ".join(tokens[i + 1:i + 1 + len(values)]))[:len(values)]
                         for i, token in enumerate(tokens) if token == row.in_text]
            assert values in following, (table_id, row.label)
            continue
        # a line holding the label as a whole cell (the conversion left stray letters before some rows)
        candidates = [_numbers(line) for line in lines if row.label in re.split(r"\t| \| ", line)]
        assert candidates, f"row {row.label!r} not found in {seed_file.name}"
        # The paper repeats some rows across tables: one line must hold all of this row's values.
        assert any(all(value in numbers for value in values) for numbers in candidates), (table_id, row.label)


def _numbers(line: str) -> list[float]:
    return [float(n) for n in re.findall(r"\d+(?:\.\d+)?", line)]


def _merged_values(table, lines: list[str]) -> list[float] | None:
    """The numbers of the cell after the one that holds every row's in_text, in row order, if a line has one:
    a table whose labels and values the conversion merged into a cell each (AFD Table A6)."""
    if any(row.in_text is None for row in table.rows):
        return None
    labels = " ".join(row.in_text for row in table.rows)
    for line in lines:
        cells = line.split("\t")
        if labels in cells[:-1]:
            return _numbers(cells[cells.index(labels) + 1])
    return None


def test_render_puts_reproduced_paper_and_difference_side_by_side():
    table = TABLES.get("jakubovitz2018-table3")
    results = pd.DataFrame(_rows("jakubovitz2018-table3-none", accuracy=0.95, rho=0.30))
    text = render_table(table, results)
    none_line = next(line for line in text.splitlines() if line.startswith("| No defense"))
    cells = [cell.strip() for cell in none_line.strip("|").split("|")]
    assert cells[1:4] == ["95.00", "99.08", "-4.08"]
    assert cells[4:7] == ["30.00", "20.67", "9.33"]
    assert cells[-1] == "smoke / digits"
    assert "not comparable" in text
    assert "not run" in text  # rows whose run has no results yet
    # a row without a run (its defense not implemented) still renders, with the paper's values
    unrun = dataclasses.replace(table, rows=(*table.rows, dataclasses.replace(table.rows[0], label="X", run=None)))
    assert "| X " in render_table(unrun, results) and "defense not implemented yet" in render_table(unrun, results)
    assert "smoke only" in render_index(results)


def test_the_index_gives_a_documented_larger_run_beside_these_results_status():
    results = pd.DataFrame(_rows("jakubovitz2018-table3-none"))
    line = next(line for line in render_index(results).splitlines() if line.startswith("| [jakubovitz2018-table3]"))
    status, these = [cell.strip() for cell in line.strip("|").split("|")][2:]
    assert status == "cpu scale, every row: [numbers](../../docs/results/jakubovitz2018.md)"
    assert these == "smoke only (7 of 8 rows not yet)"
    # a table no larger run covered keeps these results' status
    svhn = next(line for line in render_index(results).splitlines() if line.startswith("| [chan2020-svhn-table2]"))
    assert [cell.strip() for cell in svhn.strip("|").split("|")][2:] == ["not yet", "not yet"]


def test_every_documented_reproduction_names_a_table_and_a_page_that_exist():
    root = Path(__file__).resolve().parents[1]
    for table_id, reproduced in REPRODUCED.items():
        assert table_id in TABLES, f"REPRODUCED names {table_id!r}, no registered table"
        assert reproduced.profile in ("cpu", "paper") and (root / reproduced.page).is_file(), table_id


def test_the_readme_status_table_and_the_record_agree_on_the_cpu_runs():
    # two views of one fact, the README's cpu column and REPRODUCED: neither may claim a run the other lacks
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    header = "| table | what it is | rows | smoke | cpu | paper |"
    rows = readme[readme.index(header):].split("\n\n")[0].splitlines()[2:]
    assert len(rows) > 20
    for row in rows:
        cpu = row.strip("|").split("|")[4].strip()
        documented = not cpu.startswith(("—", "not run"))
        for table_id in re.findall(r"\(metrics/tables/([\w-]+)\.md\)", row):
            assert (table_id in REPRODUCED) == documented, f"{table_id}: README cpu column {cpu[:40]!r}"


def test_the_index_lists_the_other_pages_after_the_tables():
    text = render_index(pd.DataFrame(_rows("main")), ["transfer-roth2018", "leaderboard-digits"])
    assert text.index("| [jakubovitz2018-table3]") < text.index("- [transfer-roth2018](transfer-roth2018.md)")
    assert "- [leaderboard-digits](leaderboard-digits.md)" in text
    assert "Beyond the paper tables" not in render_index(pd.DataFrame(_rows("main")))


def test_status_paper_scale_only_when_every_run_is_paper_profile():
    table = TABLES.get("jakubovitz2018-table3")
    results = pd.DataFrame([r for run in table.runs() for r in _rows(run, profile="paper")])
    assert "paper scale" in render_table(table, results)
    assert "not comparable" not in render_table(table, results)


def test_summary_keys_are_flat_and_stable():
    results = pd.DataFrame(_rows("main") + [{**_rows("main")[0], "attack": "pgd", "norm": "linf", "eps": 0.1,
                                             "steps": 10, "value": 0.5}])
    summary = summarize(results)
    assert summary == {"main": {"accuracy": 0.9, "deepfool_l2_steps50_rho_adv": 0.25,
                                "pgd_linf_eps0.1_steps10_accuracy": 0.5, "checks_violated": 0}}
    assert metric_key(next(results.itertuples())) == "accuracy"


def test_cells_questioned_by_a_failed_check_are_flagged():
    table = TABLES.get("jakubovitz2018-table3")
    run = table.runs()[0]
    check = {**_rows(run)[1], "attack": "pgd", "norm": "linf", "eps": 0.5, "steps": 20,
             "metric": "check_large_eps_reaches_zero"}
    passing = pd.DataFrame([r for name in table.runs() for r in _rows(name)] + [{**check, "value": 1.0}])
    failing = pd.DataFrame([r for name in table.runs() for r in _rows(name)] + [{**check, "value": 0.0}])
    assert "⚠" not in render_table(table, passing)
    flagged = [line for line in render_table(table, failing).splitlines() if "⚠" in line and line.startswith("|")]
    # only the attacked column of the failing run: its clean accuracy is not questioned
    assert len(flagged) == 1 and flagged[0].count("⚠") == 1 and "25.00 ⚠" in flagged[0]
    assert "robust audit" in render_table(table, failing)


def test_a_row_of_several_seeds_shows_mean_and_standard_deviation():
    table = TABLES.get("jakubovitz2018-table3")
    seeds = ("none-s0", "none-s1", "none-s2")
    table = dataclasses.replace(table, rows=(dataclasses.replace(table.rows[0], run=seeds),))
    results = pd.DataFrame([r for run, acc in zip(seeds[:2], (0.90, 0.94)) for r in _rows(run, accuracy=acc)])
    line = next(line for line in render_table(table, results).splitlines() if line.startswith("| No defense"))
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[1] == "92.00 ± 2.83"  # sample standard deviation of 90 and 94
    assert cells[3] == "-7.08"  # the difference is the mean's
    assert cells[-1] == "smoke / digits, 2 of 3 seeds"


def test_a_seed_whose_value_is_undefined_is_left_out_of_mean_and_deviation():
    table = TABLES.get("jakubovitz2018-table3")
    seeds = ("none-s0", "none-s1", "none-s2")
    table = dataclasses.replace(table, rows=(dataclasses.replace(table.rows[0], run=seeds),))
    results = pd.DataFrame([r for run, rho in zip(seeds, (0.20, 0.24, math.nan)) for r in _rows(run, rho=rho)])
    line = next(line for line in render_table(table, results).splitlines() if line.startswith("| No defense"))
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[4] == "22.00 ± 2.83"  # ×10⁻², the two defined seeds only
