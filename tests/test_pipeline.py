"""End to end: `dvc repro` at the smoke profile in a copy of the repository.

One module-scoped run of the whole pipeline feeds several checks: outputs exist, a forced
rerun is byte-identical, `dvc exp run -S defense.lambda=...` reruns only the main run, and
queued experiments run in parallel.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from robust.cli import cli

REPO = Path(__file__).resolve().parents[1]
# dvc.lock is left out: it records every stage of the full pipeline (~0.5 MB of YAML, none of whose
# outputs the copy has), and DVC parses and rewrites the whole lock file with a pure-Python YAML
# library around every stage it runs and on every `dvc exp`/`metrics` command: ~10 s each on 2 cores.
COPY_IGNORE = shutil.ignore_patterns(".git", "data", "__pycache__", "*.egg-info", ".pytest_cache", "cache", "tmp",
                                     "results.parquet", "dvc.lock")

pytestmark = pytest.mark.slow


# The longest command here, the fixture's `dvc repro`, takes ~2 min on 2 cores: a command past this
# limit is hung (a stuck lock or queue worker), and the test fails naming it instead of stalling the run.
COMMAND_TIMEOUT_S = 900


def _completed(args, cwd, env) -> subprocess.CompletedProcess:
    """The finished command, which must succeed within COMMAND_TIMEOUT_S."""
    try:
        result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired as hung:
        pytest.fail(f"{' '.join(args)} still running after {COMMAND_TIMEOUT_S} s:\n{hung.stdout}\n{hung.stderr}")
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _run(args, cwd, env) -> str:
    result = _completed(args, cwd, env)
    return result.stdout + result.stderr


# The runs of each study kept in the end-to-end run (by name without the study prefix), with the
# bases they need; a study with none is left out of dvc.yaml's vars. Every stage costs ~8 s of
# interpreter, torch and DVC start-up on 2 cores, and the full studies would take most of an hour:
# these runs cover every kind of wiring (post-processing runs of the main base; a from-scratch base
# with its defense, evaluated by a 0-epoch run, in a multi-seed table row; transfer matrices; a
# figure). The studies' own settings are checked by their tests (tests/test_study_*.py) and by the
# committed smoke run. A study missing here fails the fixture, so a new study cannot silently
# lengthen the test.
KEPT_RUNS = {
    "jakubovitz2018": {"table3-none", "table3-jacobian"},
    # its CIFAR-10 net on the digits at smoke: the CIFAR wiring is roth2018-cifar10's
    "jakubovitz2018-cifar10": set(),
    "jakubovitz2018-cifar100": set(),
    "matyasko2018": {"fc-critic-s0"},
    "chan2020": set(),
    "roth2018": set(),
    # a study on another dataset than the main run's (params.yaml `cifar10`: digits at smoke)
    "roth2018-cifar10": {"clean"},
    # its WRN-34 at smoke costs a minute of training and two of attacks on one thread, for wiring that
    # roth2018-cifar10 already covers (its settings: tests/test_study_chan2020.py)
    "chan2020-cifar10": set(),
    # its WRN-34 at smoke, as chan2020-cifar10's; a study on its own dataset is roth2018-cifar10's wiring
    "chan2020-svhn": set(),
    "bashivan2021": set(),
    # its AFD and TRADES at smoke attack every batch; the CIFAR wiring is roth2018-cifar10's
    "bashivan2021-cifar10": set(),
    # the CIFAR-10 study's settings on params.yaml's `cifar100` (digits at smoke): roth2018-cifar10's wiring
    "bashivan2021-cifar100": set(),
    "leaderboard": set(),
    "leaderboard-cifar10": set(),
}
# The adversary-critic suite at smoke still runs 500-step DeepFool and high-confidence attacks:
# the wiring needs a few steps only.
SHORT_CRITIC_SUITE = [
    {"name": "deepfool", "steps": 20, "overshoot": 0.02, "step_clip": 0.1},
    {"name": "cw", "steps": 10, "binary_steps": 1, "initial_const": 0.001, "lr": 0.01, "confidence": 0.0},
    {"name": "high_confidence", "steps": 20, "step_clip": 0.1, "confidence": "clean"},
]

SHORT_JSMA = {"name": "jsma", "eps": [0.5, 1.0], "steps": 5}


def _trim_study(path: Path, study: str, kept_runs: set[str]) -> None:
    params = yaml.safe_load(path.read_text())
    runs = {name: run for name, run in params["runs"].items() if name.removeprefix(f"{study}-") in kept_runs}
    assert len(runs) == len(kept_runs), f"{study}: no runs named {sorted(kept_runs)}"
    bases = {run["base"] for run in runs.values()}
    params["runs"] = runs
    if "transfer_runs" in params:
        params["transfer_runs"] = runs
    params["bases"] = {name: base for name, base in params.get("bases", {}).items() if name in bases}
    params["figures"] = {name: figure for name, figure in params.get("figures", {}).items() if name in runs}
    # a study figure reads data/runs whole (dvc.yaml `study-figures`): it would redraw in every experiment
    params["study_figures"] = {}
    own_bases = params[study].get("bases", {})
    params[study]["bases"] = {name: base for name, base in own_bases.items() if f"{study}-{name}" in bases}
    path.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))


def _trim_studies(root: Path) -> None:
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    for file in dvc["vars"]:
        study = Path(file).stem
        assert study in KEPT_RUNS, f"{file}: say in KEPT_RUNS which of its runs the end-to-end test keeps"
        if KEPT_RUNS[study]:
            _trim_study(root / file, study, KEPT_RUNS[study])
    dvc["vars"] = [file for file in dvc["vars"] if KEPT_RUNS[Path(file).stem]]
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False, allow_unicode=True))
    critic = root / "studies/matyasko2018.yaml"
    params = yaml.safe_load(critic.read_text())
    params["matyasko2018"]["attack"]["profiles"]["smoke"] = {
        "suite": SHORT_CRITIC_SUITE, "transfer": [SHORT_CRITIC_SUITE[0], SHORT_CRITIC_SUITE[2]]}
    critic.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    # the JSMA sweep of Jakubovitz Figs. 2–3 (5 ε × 80 steps) would be most of the kept runs' attacks
    jakubovitz = root / "studies/jakubovitz2018.yaml"
    params = yaml.safe_load(jakubovitz.read_text())
    suite = params["jakubovitz2018"]["attack_with_jsma"]["suite"]
    suite[:] = [entry if entry["name"] != "jsma" else SHORT_JSMA for entry in suite]
    jakubovitz.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project") / "main"
    shutil.copytree(REPO, root, ignore=COPY_IGNORE)
    env = {**os.environ, "PYTHONPATH": str(root), "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "robust",
           "GIT_AUTHOR_EMAIL": "robust@example.invalid", "GIT_COMMITTER_NAME": "robust",
           "GIT_COMMITTER_EMAIL": "robust@example.invalid"}
    env.pop("CI", None)
    # Fewer epochs, training images and attacked points than the smoke profile: the pipeline's wiring
    # is under test here, not accuracy. Training and attacks are most of a stage's compute, and the
    # main run's fine-tune and attack run again in the forced rerun and in every experiment.
    params = yaml.safe_load((root / "params.yaml").read_text())
    # two threads per stage on these tiny models make a stage several times slower on 2 busy cores
    # (and two queued experiments run at once)
    params["threads"] = 1
    smoke = params["profiles"]["smoke"]
    smoke["pretrain"]["epochs"] = 3
    smoke["finetune"]["epochs"] = 1
    smoke["max_train"] = 500
    smoke["eval_examples"] = 100
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _trim_studies(root)
    _run(["git", "init", "-q"], root, env)
    _run(["git", "add", "-A"], root, env)
    _run(["git", "commit", "-qm", "start"], root, env)
    log = _run([sys.executable, "-m", "dvc", "repro"], root, env)
    return root, env, log


def test_repro_writes_metrics_tables_and_summary(project):
    root, _, log = project
    for stage in ["prepare@main", "pretrain@main", "defense-finetune@main", "attack@main",
                  "transfer@matyasko2018-fc-critic-s0", "transfer@roth2018-cifar10-clean",
                  "aggregate", "defense-finetune@jakubovitz2018-table3-jacobian"]:
        assert f"Running stage '{stage}'" in log
    results = pd.read_parquet(root / "metrics/results.parquet")
    assert set(results.run) >= {"main", "jakubovitz2018-table3-none", "jakubovitz2018-table3-jacobian"}
    main = results[(results.run == "main") & (results.source == "")]
    value = main.set_index(["attack", "eps", "metric"]).value.dropna()
    headline = main[main.eps.isna() | (main.eps == 0.1)].set_index(["attack", "metric"]).value
    assert 0.5 < headline["clean", "accuracy"] <= 1
    assert headline["pgd", "accuracy"] <= headline["fgsm", "accuracy"] <= headline["clean", "accuracy"]
    assert headline["deepfool", "rho_adv"] > 0 and headline["deepfool", "success_rate"] > 0.9
    assert value["pgd", 0.5, "accuracy"] <= 0.05  # the large-ε sanity attack reaches ~0 on a plain model
    checks = main[main.metric.str.startswith("check_")]
    assert set(checks.metric) == {"check_iterative_le_single_step", "check_large_eps_reaches_zero",
                                  "check_clean_above_chance"}
    assert checks.set_index("metric").value["check_clean_above_chance"] == 1.0  # from the prepared manifest
    # the main run's attacks save no transfer examples: it has no transfer stage
    assert not (root / "data/results/transfer/main.parquet").exists() and (root / "data/adversarial/main/main.pt").exists()
    assert "transfer@main" not in log and (root / "data/results/transfer/matyasko2018-fc-critic-s0.parquet").exists()
    # aggregate collects the transfer rows from data/results/transfer: the critic's own examples, the diagonal
    transferred = results[(results.run == "matyasko2018-fc-critic-s0") & (results.source != "")]
    assert set(transferred.source) == {"matyasko2018-fc-critic-s0"}
    summary = json.loads((root / "metrics/summary.json").read_text())
    assert {"accuracy", "deepfool_l2_steps50_rho_adv", "fgsm_linf_eps0.1_accuracy",
            "checks_violated"} <= set(summary["main"])
    table = (root / "metrics/tables/jakubovitz2018-table3.md").read_text()
    assert "99.08" in table and "smoke / digits" in table
    norms = (root / "metrics/tables/jakubovitz2018-table1.md").read_text()
    line = next(row for row in norms.splitlines() if row.startswith("| No defense"))
    assert "smoke / digits" in line and "0.1877" in line  # ‖J‖_F at clean and DeepFool points, beside the paper's
    assert "accuracy" in log  # the closing summary table of the aggregate stage
    critic = (root / "metrics/tables/matyasko2018-table1a.md").read_text()
    line = next(row for row in critic.splitlines() if row.startswith("| Adversary critic"))
    assert "smoke / digits, 1 of 2 seeds" in line and "0.290" in line  # reproduced beside the paper's ρ
    critic_rows = results[results.run == "matyasko2018-fc-critic-s0"]
    assert set(critic_rows.attack) >= {"clean", "deepfool", "cw", "high_confidence"}
    assert (critic_rows.defense == "critic").all()


def test_forced_rerun_is_byte_identical(project):
    root, env, _ = project
    # Forcing attack@main reruns its whole chain: prepare, pretrain, defense-finetune, attack.
    chain = [root / "data/prepared/main/train.pt", root / "data/bases/main/history.parquet",
             root / "data/bases/main/model.pt", root / "data/runs/main/history.parquet",
             root / "data/runs/main/model.pt", root / "data/results/main.parquet",
             root / "data/adversarial/main/main.pt"]
    before = {path: path.read_bytes() for path in chain}
    log = _run([sys.executable, "-m", "dvc", "repro", "--force", "attack@main"], root, env)
    assert "Running stage 'pretrain@main'" in log
    for path, content in before.items():
        assert path.read_bytes() == content, f"{path.relative_to(root)} changed between identical runs"
    # Only the wall-clock seconds differ, and they live outside the base's output folder: the runs
    # fine-tuned from the base depend on identical bytes, so nothing after the chain reruns but the two
    # stages that read the timings, costs and aggregate (the leaderboards' cost column), and aggregate's
    # reproducible outputs come out byte-identical.
    metrics = [root / "metrics/summary.json", root / "metrics/results.parquet",
               root / "metrics/tables/jakubovitz2018-table3.md"]
    before = {path: path.read_bytes() for path in metrics}
    log = _run([sys.executable, "-m", "dvc", "repro"], root, env)
    assert "Stage 'defense-finetune@jakubovitz2018-table3-jacobian' didn't change, skipping" in log
    assert "Stage 'attack@jakubovitz2018-table3-jacobian' didn't change, skipping" in log
    assert "Running stage 'costs'" in log
    assert "Running stage 'aggregate'" in log
    for path, content in before.items():
        assert path.read_bytes() == content, f"{path.relative_to(root)} changed between identical runs"


def test_changing_lambda_reruns_only_the_main_run(project):
    root, env, _ = project
    _run(["git", "add", "-A"], root, env)
    _run(["git", "commit", "-qm", "baseline"], root, env)
    log = _run([sys.executable, "-m", "dvc", "exp", "run", "-S", "defense.lambda=0.5"], root, env)
    for stage in ["defense-finetune@main", "attack@main", "aggregate", "costs"]:
        assert f"Running stage '{stage}'" in log
    for stage in ["prepare@main", "pretrain@main", "defense-finetune@jakubovitz2018-table3-jacobian",
                  "attack@jakubovitz2018-table3-none", "transfer@matyasko2018-fc-critic-s0"]:
        assert f"Stage '{stage}' didn't change, skipping" in log
    diff = _run([sys.executable, "-m", "dvc", "metrics", "diff", "--json"], root, env)
    changed = json.loads(diff)["metrics/summary.json"]
    assert any(key.startswith("main.") for key in changed)
    assert not any(key.startswith("jakubovitz2018") for key in changed)
    # the fine-tune's new timing goes to its own metrics file (unchanged keys are not listed: a timing
    # equal to the millisecond would be left out), and no other run's timing moves
    timed = json.loads(diff).get("metrics/costs.json", {})
    assert {key.split(".")[0] for key in timed} <= {"main"}


def _experiments(node) -> list[dict]:
    """Every experiment record of `dvc exp show --json` (dicts with params and metrics data), at any depth."""
    if isinstance(node, list):
        return [found for item in node for found in _experiments(item)]
    if not isinstance(node, dict):
        return []
    found = [node] if {"params", "metrics"} <= set(node) else []
    return found + [record for value in node.values() for record in _experiments(value)]


def test_queued_experiments_run_in_parallel_and_show_their_metrics(project):
    root, env, _ = project
    _run(["git", "add", "-A"], root, env)
    _run(["git", "commit", "-qm", "queue baseline"], root, env)
    # The experiments change the main run's FGSM ε, so only its attack and aggregate rerun;
    # a change of λ would rerun its fine-tune too (about 40% more time), a path that
    # test_changing_lambda_reruns_only_the_main_run already takes.
    for eps in ("0.2", "0.3"):
        _run([sys.executable, "-m", "dvc", "exp", "run", "--queue", "-S", f"attack.suite.0.eps={eps}"], root, env)
    # The workers it starts inherit its output: into a pipe, that output would stay open while they live
    # and the call would wait for them. A file does not hold the caller.
    log_path = root.parent / "queue-start.log"
    with log_path.open("w") as log:
        started = subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "--jobs", "2"], cwd=root, env=env,
                                 stdout=log, stderr=subprocess.STDOUT, timeout=COMMAND_TIMEOUT_S)
    assert started.returncode == 0, log_path.read_text()
    try:
        deadline = time.monotonic() + 900
        while True:
            status = _run([sys.executable, "-m", "dvc", "queue", "status"], root, env)
            if not re.search(r"\b(Queued|Running)\b", status):
                break
            assert time.monotonic() < deadline, f"queued experiments still running:\n{status}"
            time.sleep(5)
    finally:
        # a worker left behind would outlive the test and hold the pytest run open
        _run([sys.executable, "-m", "dvc", "queue", "stop", "--kill"], root, env)
    assert "Failed" not in status, status
    shown = json.loads(_completed([sys.executable, "-m", "dvc", "exp", "show", "--json"], root, env).stdout)
    by_eps = {}
    for record in _experiments(shown):
        suite = record["params"].get("params.yaml", {}).get("data", {}).get("attack", {}).get("suite", [])
        summary = record["metrics"].get("metrics/summary.json", {}).get("data", {})
        if suite and suite[0].get("eps") in (0.2, 0.3) and "main" in summary:
            by_eps[suite[0]["eps"]] = summary["main"]
    assert set(by_eps) == {0.2, 0.3}, "both queued experiments must be listed with their metrics"
    for eps, main in by_eps.items():  # each lists the metrics of its own attack, not the baseline's
        assert f"fgsm_linf_eps{eps}_accuracy" in main and "fgsm_linf_eps0.1_accuracy" not in main, sorted(main)
        assert main["accuracy"] > 0


def test_dvc_plots_show_eps_curves_training_curves_and_the_lambda_sweep(project):
    root, env, _ = project
    shown = json.loads(_completed([sys.executable, "-m", "dvc", "plots", "show", "--json"], root, env).stdout)
    curve = shown["data"]["metrics/plots/jakubovitz2018-fgsm_linf.csv"][0]["content"]["data"]["values"]
    assert {point["run"] for point in curve} == {"jakubovitz2018-table3-none", "jakubovitz2018-table3-jacobian"}
    assert len({float(point["eps"]) for point in curve}) > 1
    # training: the main base's epochs, then each run's fine-tune epochs after them
    training = shown["data"]["metrics/training/jakubovitz2018.csv"][0]["content"]["data"]["values"]
    phases = {(point["run"], point["phase"]) for point in training}
    assert {("jakubovitz2018-table3-none", "pretrain"), ("jakubovitz2018-table3-none", "finetune")} <= phases
    # Table 13's λ sweep: our two runs' points beside the paper's curve
    sweep = shown["data"]["jakubovitz2018-table13-rho_adv"][0]["content"]["data"]["values"]
    ours = sorted(float(point["lambda"]) for point in sweep if point["curve"] == "reproduced")
    assert ours == [0.0, 0.1] and sum(point["curve"] == "paper" for point in sweep) == 10


def test_report_prints_summary_and_tables(project):
    root, _, _ = project
    metrics = str(root / "metrics")
    result = CliRunner().invoke(cli, ["report", "--metrics", metrics])
    assert result.exit_code == 0, result.output
    assert "main" in result.output and "deepfool_l2_steps50_rho_adv" in result.output
    assert "jakubovitz2018-table3" in result.output
    table = CliRunner().invoke(cli, ["report", "--metrics", metrics, "--table", "jakubovitz2018-table3"])
    assert table.exit_code == 0 and "Jacobian regularization" in table.output
    unknown = CliRunner().invoke(cli, ["report", "--metrics", metrics, "--table", "nope"])
    assert unknown.exit_code != 0 and "jakubovitz2018-table3" in unknown.output


def test_audit_lists_the_checks(project):
    root, _, _ = project
    result = CliRunner().invoke(cli, ["audit", "--metrics", str(root / "metrics")])
    results = pd.read_parquet(root / "metrics/results.parquet")
    failed = results[results.metric.str.startswith("check_") & (results.value < 1)]
    assert result.exit_code == (1 if len(failed) else 0), result.output
    assert f"{len(failed)} violated" in result.output
