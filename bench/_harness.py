"""Shared bench plumbing: embedded services, Django setup, subprocesses that are always cleaned up."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django() -> dict[str, str]:
    """Start (or reuse) the embedded services, point Django at them, return the environment.

    Benches write to their own database (`ludus_bench`, migrated here) so the demo's data stays
    clean; with DATABASE_URL set, that database is used as it is.
    """
    from ludus_dev.services import ensure_services

    svc = ensure_services(
        Path(os.environ.get("LUDUS_DATA_DIR", ROOT / "data")), database="ludus_bench"
    )
    os.environ.update(svc.env())
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return dict(os.environ)


def peak_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    """The most (start, end) intervals open at one moment; one that ends as another starts does
    not overlap it."""
    events = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals]
    )  # at equal times the end (-1) sorts first
    peak = open_now = 0
    for _, step in events:
        open_now += step
        peak = max(peak, open_now)
    return peak


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@contextlib.contextmanager
def processes(
    *commands: list[str], env: dict[str, str] | None = None
) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True) for cmd in commands]
    try:
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _process_tree(pid: int) -> list[int]:
    found = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            for child in children:
                found.extend(_process_tree(int(child)))
    except OSError:
        pass
    return found


def _pids_named(prefix: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().startswith(prefix):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def cpu_snapshot(labelled: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each labelled process tree, of this process, and of Redis and
    PostgreSQL (every redis-server / postgres process on the machine: run benches under the lock)."""
    snapshot = {
        label: sum(map(_cpu_seconds, _process_tree(pid))) for label, pid in labelled.items()
    }
    snapshot["bench client"] = _cpu_seconds(os.getpid())
    snapshot["redis"] = sum(map(_cpu_seconds, _pids_named("redis-server")))
    snapshot["postgres"] = sum(map(_cpu_seconds, _pids_named("postgres")))
    return snapshot


def cpu_report(before: dict[str, float], after: dict[str, float], seconds: float) -> str:
    """One line: the share of one core each process used between two snapshots."""
    parts = [
        f"{label} {(after[label] - before.get(label, 0.0)) / seconds * 100:.0f}%" for label in after
    ]
    total = sum(after[label] - before.get(label, 0.0) for label in after) / seconds * 100
    return f"cpu (% of one core): {', '.join(parts)}; total {total:.0f}%"
