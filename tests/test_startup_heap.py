"""The long-lived processes settle once started (config.process): their start-up heap is kept out
of full garbage collections, and their threads take turns at the GIL every SWITCH_INTERVAL_MS."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

SETTLED = "import gc, sys; print(gc.get_freeze_count(), sys.getswitchinterval())"
PROBES = {
    # The web process: importing the ASGI application is its start-up.
    "web": f"import config.asgi; {SETTLED}",
    # A worker: Celery sends worker_ready once it consumes (a generation worker's queues here;
    # stopped presence first, so the probe announces no worker to the tests' Redis).
    "worker": (
        "import django; django.setup(); from worker.celery import _announce, _presence_stop; "
        f"_presence_stop.set(); _announce(sender=None); {SETTLED}"
    ),
    # A prefork worker's child: Celery sends worker_process_init in it after the fork.
    "worker child": (
        "import django; django.setup(); import worker; "
        "from celery.signals import worker_process_init; worker_process_init.send(sender=None); "
        f"{SETTLED}"
    ),
}


@pytest.mark.parametrize("process", list(PROBES))
def test_a_process_settles_once_started(process: str) -> None:
    frozen, interval = _last_line(PROBES[process], {"LUDUS_SWITCH_INTERVAL_MS": "2.5"}).split()
    # Unfrozen, the count is 0; Django and the apps alone are over 70,000 objects.
    assert int(frozen) > 50_000
    assert float(interval) == pytest.approx(0.0025)


def test_the_switch_interval_is_one_millisecond_unless_configured() -> None:
    _, interval = _last_line(PROBES["web"], {}).split()
    assert float(interval) == pytest.approx(0.001)


def test_a_switch_interval_that_is_not_above_zero_stops_the_process_with_its_name() -> None:
    out = _run("import django; django.setup()", {"LUDUS_SWITCH_INTERVAL_MS": "0"})
    assert out.returncode != 0 and "LUDUS_SWITCH_INTERVAL_MS must be above 0" in out.stderr


def _last_line(probe: str, env: dict[str, str]) -> str:
    out = _run(probe, env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def _run(probe: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter running `probe` with these variables set (and
    LUDUS_SWITCH_INTERVAL_MS only if among them)."""
    base = {k: v for k, v in os.environ.items() if k != "LUDUS_SWITCH_INTERVAL_MS"}
    return subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=base | {"DJANGO_SETTINGS_MODULE": "config.settings"} | env,
        capture_output=True,
        text=True,
        timeout=120,
    )
