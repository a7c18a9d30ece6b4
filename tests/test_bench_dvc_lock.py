"""The dvc.lock benchmark times the reads and the rewrite DVC makes around a stage, on the lock it is given."""

import sys

import yaml

from benchmarks import bench_dvc_lock as bench


def test_it_reports_each_operation_on_the_given_lock(tmp_path, monkeypatch, capsys):
    stages = {f"attack@run-{i}": {"cmd": f"python stages/attack.py --run run-{i}", "outs": [{"path": f"r{i}"}]}
              for i in range(3)}
    lock = tmp_path / "dvc.lock"
    lock.write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))
    monkeypatch.setattr(sys, "argv", ["bench_dvc_lock", "--lock", str(lock), "--rounds", "1"])
    bench.main()
    out = capsys.readouterr().out
    assert "3 stages, median of 1 rounds" in out
    for operation in ("read, C loader", "read, pure Python", "rewrite (round-trip parse + dump)"):
        assert operation in out
    # the C loader is a dependency: without it the C row would be empty and a line would say so
    assert bench.c_loader_installed() and "not installed" not in out


def test_the_median_of_rounds_is_taken():
    calls = []
    assert bench.median_seconds(lambda: calls.append(1), rounds=3) >= 0 and len(calls) == 3
