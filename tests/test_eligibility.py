"""Eligibility checks without a chain: the memory decision as a pure function of given numbers
(GPU memory and host RAM both), the real CPU detection against this machine's RAM, and the base
model lookup with downloads off (the reason says how to enable them) and on (the hub is tried)."""

from __future__ import annotations

import re
from pathlib import Path

import psutil
import pytest
import torch

from node.chain.models import Job, JobStatus, Method
from node.config import Settings
from node.daemon.eligibility import (
    GIB,
    MemoryHave,
    NotEligibleError,
    check_memory,
    estimate_memory,
    local_base_model,
    memory_needed,
    memory_shortfall,
)
from node.train.base_model import cached_path

ZERO = "0x" + "00" * 20


def _job(base_model: str) -> Job:
    return Job(
        id=7, poster=ZERO, status=JobStatus.OPEN, method=Method.LORA, nodeFeeBps=0, datanetFeeBps=0, deadline=0,
        postedAt=0, node=ZERO, claimedAt=0, baseModelHash=b"\x01" * 32, configHash=b"\x02" * 32, pool=0,
        parentModelId=0, modelId=0, baseModel=base_model, configCID="bafk", datanetIds=[1],
    )  # fmt: skip


def test_the_estimate_scales_with_method_and_device() -> None:
    w = 14 * GIB  # a 7B model in bf16, in 3 weight files of up to 5 GiB
    cpu, gpu = estimate_memory(w, 5 * GIB, Method.LORA, on_gpu=False), estimate_memory(w, 5 * GIB, Method.LORA, True)
    qlora = estimate_memory(w, 5 * GIB, Method.QLORA, on_gpu=True)
    assert cpu.device == int(w * 2.0 * 1.3) + GIB and cpu.host == cpu.device  # fp32 in RAM
    assert gpu.device == int(w * 1.3) + GIB and qlora.device == int(w * 0.3 * 1.3) + GIB
    assert gpu.host == qlora.host == 5 * GIB + 2 * GIB  # a weight file at a time, plus the framework


def test_a_gpu_job_needs_gpu_memory_and_host_ram_both() -> None:
    need = estimate_memory(14 * GIB, 5 * GIB, Method.QLORA, on_gpu=True)  # ~6.5 GiB GPU, 7 GiB host
    roomy = MemoryHave(device=80 * GIB, device_where="free memory of H100", host=64 * GIB)
    assert memory_shortfall(need, roomy, Method.QLORA) is None
    low_ram = roomy.model_copy(update={"host": 4 * GIB})
    assert memory_shortfall(need, low_ram, Method.QLORA) == (
        "not enough memory: qlora on this base model needs about 7.0 GiB of host RAM, available RAM is 4.0 GiB"
    )
    both = MemoryHave(device=2 * GIB, device_where="free memory of T4", host=4 * GIB)
    assert memory_shortfall(need, both, Method.QLORA) == (
        "not enough memory: qlora on this base model needs about 6.5 GiB of GPU memory, free memory of T4 is "
        "2.0 GiB; and 7.0 GiB of host RAM, available RAM is 4.0 GiB"
    )
    # On a CPU the RAM is the device: one comparison, never a second "host" line.
    cpu = estimate_memory(14 * GIB, 5 * GIB, Method.LORA, on_gpu=False)
    reason = memory_shortfall(cpu, MemoryHave(device=8 * GIB, device_where="available RAM", host=8 * GIB), Method.LORA)
    assert reason is not None and "host RAM" not in reason and "37.4 GiB of memory, available RAM is 8.0 GiB" in reason


def test_cpu_detection_skips_a_job_larger_than_this_machines_ram(
    tmp_path: Path, tiny_base_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU path, also on a GPU machine
    huge = tmp_path / "huge"
    huge.mkdir()
    with open(huge / "model.safetensors", "wb") as f:  # sparse: its size is all the estimate reads
        f.truncate(psutil.virtual_memory().total)
    need = memory_needed(huge, Method.LORA)
    assert not need.on_gpu and need.device > psutil.virtual_memory().total
    with pytest.raises(NotEligibleError) as exc:
        check_memory(need, Settings(), Method.LORA)
    m = re.fullmatch(r"not enough memory: lora on this base model needs about ([\d.]+) GiB of memory, "
                     r"available RAM is ([\d.]+) GiB", str(exc.value))  # fmt: skip
    assert m is not None, str(exc.value)
    assert float(m[1]) == round(need.device / GIB, 1)
    assert abs(float(m[2]) - psutil.virtual_memory().available / GIB) < 2.0  # what psutil sees, give or take
    check_memory(memory_needed(tiny_base_model, Method.LORA), Settings(), Method.LORA)  # the tiny one fits


def test_an_absent_hub_model_says_how_to_enable_downloads(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(NotEligibleError) as exc:
        local_base_model(_job("nobody/missing-model"), settings)
    reason = str(exc.value)
    assert reason.startswith("unknown base model:") and "DATANET_ALLOW_DOWNLOADS=true" in reason
    assert str(cached_path("nobody/missing-model", settings.models_path)) in reason  # where to put it


def test_with_downloads_on_the_hub_is_tried_and_its_failure_is_reported(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, allow_downloads=True)
    with pytest.raises(NotEligibleError) as exc:  # no internet here: the hub cannot be reached
        local_base_model(_job("nobody/missing-model"), settings)
    reason = str(exc.value)
    assert reason.startswith("base model download failed: Could not download base model 'nobody/missing-model'")
    assert "internet access" in reason and "unknown base model" not in reason
    assert exc.value.__cause__ is not None and exc.value.__cause__.__cause__ is not None  # the hub's own error
