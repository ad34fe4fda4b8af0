"""Helpers for test suites: a cached quick zoo, and an engine server in a subprocess.

``cached_quick_zoo()`` builds the quick zoo once per version of the zoo's source code (its hash is
the cache key) under ``data/test-zoo/<hash>``; concurrent callers (xdist workers) wait on a file
lock instead of building twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ZOO_SRC = Path(__file__).resolve().parent
ROOT = ZOO_SRC.parent.parent


# The modules whose code decides what a build produces (the cache key covers only these).
BUILD_MODULES = ("build.py", "chat.py", "corpus.py", "text.py", "tooluse.py", "vision.py")


def source_hash() -> str:
    digest = hashlib.sha256()
    for name in BUILD_MODULES:
        digest.update(name.encode() + (ZOO_SRC / name).read_bytes())
    return digest.hexdigest()[:16]


def cached_quick_zoo(cache_root: Path | None = None, seed: int = 0) -> Path:
    """Path of a complete quick zoo for the current source, building it if needed."""
    from modelhub.zoo.build import build_zoo

    base = cache_root or ROOT / "data" / "test-zoo"
    base.mkdir(parents=True, exist_ok=True)
    key = f"{source_hash()}-seed{seed}"
    target = base / key
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "manifest.json").exists():
            build_zoo(target, seed=seed, quick=True, progress=False)
            for old in base.iterdir():  # keep the cache to the current source only
                if old.is_dir() and old.name != key and ".building" not in old.name:
                    shutil.rmtree(old, ignore_errors=True)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def engine_command(models_dir: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    return [
        sys.executable,
        "-m",
        "modelhub.engine",
        "serve",
        "--models-dir",
        str(models_dir),
        "--host",
        host,
        "--port",
        str(port),
    ]


def wait_healthy(
    url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``url`` until it answers 200; raise if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before becoming healthy")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} not healthy after {timeout}s")


@contextlib.contextmanager
def engine_server(models_dir: Path, log_path: Path | None = None) -> Iterator[str]:
    """Run the engine on a free port; yields its base URL (``http://127.0.0.1:P``)."""
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        engine_command(models_dir, port), cwd=ROOT, env=env, stdout=out, stderr=out
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base + "/health", proc=proc)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log_path:
            out.close()  # type: ignore[union-attr]
