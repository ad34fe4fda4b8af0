"""Supervision code, run against the local engine's server command (the same code runs vLLM)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from modelhub.models import Model
from modelhub.services.registry import models_load
from modelhub.supervisor import (
    ServerSpec,
    Supervisor,
    local_engine_command,
    max_lora_rank,
    parse_load,
    spec_from_model,
    vllm_command,
    vllm_env,
)
from modelhub.zoo.serving import free_port


def test_it_builds_the_vllm_command_line_from_a_model_row(tmp_path: Path) -> None:
    model = Model(
        name="zoo-llava-s",
        engine="vllm",
        path="zoo-llava-s",
        modalities=["text", "image"],
        tensor_parallel_size=2,
        max_model_len=256,
        limit_images_per_prompt=3,
    )
    spec = spec_from_model(model, port=8123, models_dir=tmp_path)
    argv = vllm_command(ServerSpec(**{**spec.__dict__, "cpu": True}))
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    joined = " ".join(argv)
    assert f"--model {tmp_path / 'zoo-llava-s'}" in joined
    assert "--served-model-name zoo-llava-s" in joined
    assert "--port 8123" in joined
    assert "--tensor-parallel-size 2" in joined
    assert "--max-model-len 256" in joined
    assert argv[argv.index("--limit-mm-per-prompt") + 1] == '{"image": 3}'
    assert "--generation-config vllm" in joined
    assert "--enforce-eager --dtype bfloat16" in joined
    gpu = vllm_command(ServerSpec(**{**spec.__dict__, "cpu": False, "images_per_prompt": 0}))
    assert "--enforce-eager" not in gpu
    assert "--limit-mm-per-prompt" not in gpu


def _adapter(path: Path, rank: int, rank_pattern: dict[str, int] | None = None) -> None:
    path.mkdir(parents=True)
    config = {"peft_type": "LORA", "r": rank, "rank_pattern": rank_pattern or {}}
    (path / "adapter_config.json").write_text(json.dumps(config))


@pytest.mark.django_db
def test_it_starts_a_vllm_base_with_its_lora_adapters_at_a_rank_that_fits_them(
    tmp_path: Path,
) -> None:
    _adapter(tmp_path / "base-ft1", rank=8)
    _adapter(tmp_path / "base-ft2", rank=16, rank_pattern={"q_proj": 24})
    endpoints = [{"base_url": "http://gpu-1:8000/v1"}]
    base, *_ = models_load(
        entries=[
            {"name": "base", "engine": "vllm", "path": "base", "endpoints": endpoints},
            *(
                {
                    "name": name,
                    "engine": "vllm",
                    "path": name,
                    "lora_base": "base",
                    "endpoints": endpoints,
                }
                for name in ("base-ft2", "base-ft1")
            ),
        ]
    )

    spec = spec_from_model(base, port=8123, models_dir=tmp_path)
    argv = vllm_command(spec)

    assert argv[argv.index("--model") + 1] == str(tmp_path / "base")
    assert argv[argv.index("--served-model-name") + 1] == "base"
    assert "--enable-lora" in argv
    assert argv[argv.index("--max-lora-rank") + 1] == "32"  # the smallest vLLM takes above 24
    at = argv.index("--lora-modules")
    assert argv[at + 1 : at + 3] == [
        f"base-ft1={tmp_path / 'base-ft1'}",
        f"base-ft2={tmp_path / 'base-ft2'}",
    ]
    assert vllm_env(spec)["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    adapter = Model.objects.get(name="base-ft1")
    with pytest.raises(ValueError, match="serve its base"):
        spec_from_model(adapter, port=8124, models_dir=tmp_path)


@pytest.mark.django_db
def test_it_starts_a_vllm_base_without_adapters_without_lora(tmp_path: Path) -> None:
    (base,) = models_load(entries=[{"name": "base", "engine": "vllm", "path": "base"}])
    spec = spec_from_model(base, port=8123, models_dir=tmp_path)
    assert "--enable-lora" not in vllm_command(spec)
    assert "--lora-modules" not in vllm_command(spec)
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in vllm_env(spec)
    # Started ready for adapters, with none yet: runtime loading only.
    ready = ServerSpec(**{**spec.__dict__, "enable_lora": True})
    argv = vllm_command(ready)
    assert argv[argv.index("--enable-lora") + 1 :][:2] == ["--max-lora-rank", "1"]
    assert "--lora-modules" not in argv
    assert vllm_env(ready)["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"


def test_it_picks_the_smallest_lora_rank_vllm_accepts() -> None:
    assert [max_lora_rank(r) for r in ([], [1], [2, 8], [9], [256], [300], [512])] == [
        1, 1, 8, 16, 256, 320, 512,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="up to 512"):
        max_lora_rank([513])


def test_it_reads_load_from_prometheus_text() -> None:
    text = (
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{model_name="a"} 3.0\n'
        'vllm:num_requests_running{model_name="b"} 1\n'
        'vllm:num_requests_waiting{model_name="a"} 2.0\n'
    )
    load = parse_load(text)
    assert (load.running, load.waiting) == (4.0, 2.0)


def test_it_reads_load_whatever_the_label_values_hold() -> None:
    text = (
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{model_name="a}\\"b",engine="0"} 2\n'
        "# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{model_name="{x}"} 5\n'
        'vllm:num_requests_waiting_by_reason{reason="capacity"} 7\n'
    )
    load = parse_load(text)
    assert (load.running, load.waiting) == (2.0, 5.0)


def test_it_restarts_the_server_after_a_crash(zoo_dir: Path, tmp_path: Path) -> None:
    spec = ServerSpec(name="zoo-llama-xs", model_dir=zoo_dir / "zoo-llama-xs", port=free_port())
    sup = Supervisor(
        spec,
        command=local_engine_command,
        env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
        log_path=tmp_path / "engine.log",
        backoff_s=0.2,
    ).start()
    try:
        sup.wait_healthy(timeout=60)
        reply = httpx.post(
            spec.base_url + "/v1/chat/completions",
            json={
                "model": spec.name,
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 2,
            },
            timeout=30,
        )
        assert reply.status_code == 200
        assert sup.load().running == 0
        first = sup.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while sup.restarts == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sup.restarts == 1
        assert sup.pid != first
        sup.wait_healthy(timeout=60)
    finally:
        sup.stop()
    assert sup.proc is not None
    assert sup.proc.poll() is not None
    assert not sup.healthy()
    with pytest.raises(httpx.HTTPError):
        httpx.get(spec.base_url + "/health", timeout=1)
