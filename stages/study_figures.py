"""DVC stage `study-figures`: one figure of a study drawn from several of its runs (Jakubovitz Figs. 1–3, JARN
Figs. 3–4, AFD Fig. 4, SGR Fig. 2, adversary critic Fig. 2)."""

from pathlib import Path

import click

from robust.stage import stage, stage_params
from robust.study_figures import draw_study_figure


@click.command()
@click.option("--params-file", required=True)
@click.option("--figure-key", required=True, help="the figure's entry, e.g. study_figures.chan2020-fig3")
@click.option("--runs", "runs_dir", required=True, type=click.Path(path_type=Path, exists=True),
              help="the folder of the runs' model.pt files (data/runs)")
@click.option("--results", "results_dir", required=True, type=click.Path(path_type=Path, exists=True),
              help="the attack stage's rows (data/results): accuracy curves, representation sensitivity")
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--out", required=True, type=click.Path(path_type=Path))
@stage
def main(params_file: str, figure_key: str, runs_dir: Path, results_dir: Path, data_dir: Path, out: Path) -> None:
    path = draw_study_figure(stage_params(params_file), figure_key, runs_dir, results_dir, data_dir, out)
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
