"""The long-lived processes keep their start-up heap out of full garbage collections."""

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
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "config.settings"}
    out = subprocess.run(
        [sys.executable, "-c", PROBES[process]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    frozen = int(out.stdout.strip().splitlines()[-1])
    # Unfrozen, the count is 0; Django and the apps alone are over 70,000 objects.
    assert frozen > 50_000, out.stderr
