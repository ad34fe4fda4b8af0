"""The developer commands' environment: `make test` beside `make run` must not share their queues."""

from __future__ import annotations

import os
import subprocess
import sys

from ludus_dev.__main__ import TEST_REDIS_DB, redis_url_for_tests
from tests.conftest import ROOT


def test_make_test_takes_a_redis_database_apart_from_make_run() -> None:
    assert (
        redis_url_for_tests("redis://127.0.0.1:6390/0") == f"redis://127.0.0.1:6390/{TEST_REDIS_DB}"
    )
    assert redis_url_for_tests("redis://:pw@h:1") == f"redis://:pw@h:1/{TEST_REDIS_DB}"


def test_parallel_test_processes_keep_off_the_run_and_the_single_test_databases() -> None:
    """What settings give each xdist worker: never 0 (make run) nor TEST_REDIS_DB."""
    code = "from django.conf import settings; print(settings.REDIS_URL.rsplit('/', 1)[1])"
    seen = set()
    for n in (0, 1, 13, 14, 15, 29):
        env = os.environ | {"PYTEST_XDIST_WORKER": f"gw{n}", "REDIS_URL": "redis://h:1/0"}
        out = subprocess.run(
            [sys.executable, "-c", f"import django; django.setup(); {code}"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        seen.add(int(out.stdout.strip()))
    assert seen and all(1 <= db <= 14 for db in seen) and TEST_REDIS_DB not in seen
