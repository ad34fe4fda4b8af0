"""The long-lived processes keep their start-up heap out of full garbage collections, and a
generation worker starts with its GIL switch interval."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PROBES = {
    # The web process: importing the ASGI application is its start-up.
    "web": "import gc, config.asgi; print(gc.get_freeze_count())",
    # A prefork worker's child: Celery sends worker_process_init in it after the fork.
    "worker child": (
        "import gc, django; django.setup(); import worker; "
        "from celery.signals import worker_process_init; worker_process_init.send(sender=None); "
        "print(gc.get_freeze_count())"
    ),
}


@pytest.mark.parametrize("process", list(PROBES))
def test_the_start_up_heap_is_frozen(process: str) -> None:
    frozen = int(_last_line(PROBES[process], {}))
    # Unfrozen, the count is 0; Django and the apps alone are over 70,000 objects.
    assert frozen > 50_000


@pytest.mark.parametrize(("configured", "expected"), [(None, 0.001), ("2.5", 0.0025)])
def test_a_generation_worker_starts_with_its_switch_interval(
    configured: str | None, expected: float
) -> None:
    # What worker_ready runs in a worker that consumes generation queues.
    probe = (
        "import sys, django; django.setup(); from worker.celery import _start_serving_pool; "
        "_start_serving_pool(); print(sys.getswitchinterval())"
    )
    setting = {} if configured is None else {"LUDUS_GEN_SWITCH_INTERVAL_MS": configured}
    assert float(_last_line(probe, setting)) == pytest.approx(expected)


def test_a_switch_interval_that_is_not_above_zero_stops_the_process_with_its_name() -> None:
    out = _run("import django; django.setup()", {"LUDUS_GEN_SWITCH_INTERVAL_MS": "0"})
    assert out.returncode != 0 and "LUDUS_GEN_SWITCH_INTERVAL_MS must be above 0" in out.stderr


def _last_line(probe: str, env: dict[str, str]) -> str:
    out = _run(probe, env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def _run(probe: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter running `probe` with these variables set (and
    LUDUS_GEN_SWITCH_INTERVAL_MS only if among them)."""
    base = {k: v for k, v in os.environ.items() if k != "LUDUS_GEN_SWITCH_INTERVAL_MS"}
    return subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=base | {"DJANGO_SETTINGS_MODULE": "config.settings"} | env,
        capture_output=True,
        text=True,
        timeout=120,
    )
