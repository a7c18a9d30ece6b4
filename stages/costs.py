"""DVC stage `costs`: every run's wall-clock seconds per training epoch → metrics/costs.json (robust/costs.py)."""

from pathlib import Path

import click

from robust.costs import write_run_costs
from robust.index import load_index, run_bases
from robust.stage import stage


@click.command()
@click.option("--costs", "costs_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="the training stages' cost files: data/costs (bases/ and runs/)")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="the metrics file, metrics/costs.json")
@stage
def main(costs_dir: Path, out: Path) -> None:
    runs = run_bases(load_index()[0])
    costs = write_run_costs(costs_dir, runs, out)
    click.echo(f"wrote {out}: the training cost of {len(costs)} of {len(runs)} runs")


if __name__ == "__main__":
    main()
