"""Settings as config.settings reads them in a fresh process from a given environment (the test
process's own security variables left out), for the tests of environment-driven defaults."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import ROOT

# Variables whose absence the defaults are tested against.
SECURITY_VARIABLES = ("LUDUS_SECURE", "LUDUS_HSTS", "LUDUS_BEHIND_PROXY", "DJANGO_DEBUG")


def settings_in_a_fresh_process(*names: str, **env: str) -> list[str]:
    """str() of each named setting, in order."""
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        f"print(*(getattr(s, name) for name in {names!r}), sep='\\n')"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(SECURITY_VARIABLES)}
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=base | {"DJANGO_SETTINGS_MODULE": "config.settings"} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip().split("\n")
