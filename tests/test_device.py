"""The params key ``device``: auto | cpu | cuda | cuda:N, one-line errors, the local rank's GPU."""

import pytest
import torch

from robust import pipeline
from robust.device import resolve_device
from robust.distributed import local_device
from robust.errors import ConfigError


@pytest.fixture
def two_gpus(monkeypatch):
    """CUDA as seen by a machine with two GPUs (resolving a name allocates nothing)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def single_process(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def test_cpu_and_auto_without_a_gpu(no_gpu):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_and_cuda_names_with_gpus(two_gpus):
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")  # a request for the CPU is kept


@pytest.mark.parametrize("value", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_a_one_line_error(no_gpu, value):
    with pytest.raises(ConfigError, match=rf"^params key 'device': '{value}' asked for, but CUDA is not available"
                                          r".*\(allowed: auto, cpu\)$"):
        resolve_device(value)


def test_a_gpu_index_beyond_the_visible_ones(two_gpus):
    with pytest.raises(ConfigError, match=r"'cuda:2' asked for, but only 2 GPU\(s\) are visible \(allowed: .*cuda:1"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("value", ["gpu", "CUDA", "cuda:", "cuda:x", "cuda:-1", "mps", ""])
def test_unknown_names_list_the_allowed_values(value):
    with pytest.raises(ConfigError, match=r"^params key 'runs\.r1\.device': unknown device .*"
                                          r"\(allowed: auto, cpu, cuda, cuda:N\)$"):
        resolve_device(value, key="runs.r1.device")


@pytest.mark.parametrize("value", [None, 0, True, ["cpu"]])
def test_non_strings_are_rejected(value):
    with pytest.raises(ConfigError, match=r"params key 'device': must be a string"):
        resolve_device(value)


def test_the_pipeline_reads_the_device_key_with_auto_as_default(no_gpu, single_process):
    assert pipeline.device({}) == torch.device("cpu")
    assert pipeline.device({"device": "cpu"}) == torch.device("cpu")
    with pytest.raises(ConfigError, match="params key 'device'"):
        pipeline.device({"device": "cuda"})


def test_each_process_of_a_launch_takes_its_local_gpu(two_gpus, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert pipeline.device({"device": "auto"}) == torch.device("cuda", 1)
    assert pipeline.device({"device": "cuda"}) == torch.device("cuda", 1)
    assert pipeline.device({"device": "cpu"}) == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"'device': 'cuda:0' in a 4-process run.*\(allowed: auto, cuda\)"):
        pipeline.device({"device": "cuda:0"})
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(ConfigError, match="local rank 2 has no GPU"):
        local_device(torch.device("cuda"))


def test_a_single_process_keeps_the_device_it_asked_for(two_gpus, single_process):
    assert local_device(torch.device("cuda", 1)) == torch.device("cuda", 1)
