"""A training stage killed with SIGKILL mid-run resumes and ends exactly where an uninterrupted run ends."""

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from robust.params import load_params

REPO = Path(__file__).resolve().parents[1]


def _stage(script, *args):
    return [sys.executable, str(REPO / "stages" / script), *args]


def test_sigkilled_pretrain_resumes_to_the_same_bytes(tmp_path):
    params = copy.deepcopy(load_params(REPO / "params.yaml"))
    # long enough to be killed in the middle (the checkpoint appears after the first epoch), on a
    # slice of the training set: a resumed run must match whatever the data
    params["profiles"]["smoke"]["pretrain"]["epochs"] = 6
    params["profiles"]["smoke"]["max_train"] = 320
    params["threads"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = lambda *cmd: subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True)  # noqa: E731
    run(*_stage("prepare.py", "--params-file", "params.yaml", "--data-key", "data",
                "--out", "data/prepared/main"))
    pretrain = _stage("pretrain.py", "--base", "main", "--params-file", "params.yaml",
                      "--base-key", "pretrain", "--data", "data/prepared/main", "--out", "out")

    run(*pretrain)
    reference = {name: (tmp_path / "out" / name).read_bytes() for name in ("model.pt", "history.parquet")}
    for name in reference:
        (tmp_path / "out" / name).unlink()

    checkpoint = tmp_path / "data/.resume/base-main.pt"
    process = subprocess.Popen(pretrain, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the stage finished before it could be killed"
    assert checkpoint.exists()
    assert not (tmp_path / "out" / "model.pt").exists(), "a killed stage left a model where DVC would accept it"

    resumed = run(*pretrain)
    assert b"resuming after epoch" in resumed.stderr
    for name, content in reference.items():
        assert (tmp_path / "out" / name).read_bytes() == content, f"{name} differs from the uninterrupted run"
    assert not checkpoint.exists()
