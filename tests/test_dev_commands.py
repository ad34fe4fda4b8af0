"""The developer commands' environment: `make test` beside `make run` must not share their queues."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from ludus_dev.__main__ import TEST_REDIS_DB, redis_url_for_tests, wait_battle_ready
from ludus_dev.services import stop_embedded
from tests.helpers import ROOT


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


def test_stop_stops_the_embedded_servers_of_its_data_folder_and_starts_none(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`python -m ludus_dev stop` stops what runs from the data folder even with DATABASE_URL and
    REDIS_URL set (they name other servers, which it leaves alone), and with nothing running it
    starts nothing."""
    import socket

    with socket.socket() as sock:  # a free port for this folder's Redis
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env |= {"LUDUS_DATA_DIR": str(tmp_path), "LUDUS_REDIS_PORT": str(port)}
    start = "from pathlib import Path; from ludus_dev.services import ensure_services; "
    subprocess.run(
        [sys.executable, "-c", start + f"ensure_services(Path({str(tmp_path)!r}))"],
        cwd=ROOT, env=env, check=True,
    )  # fmt: skip
    assert (tmp_path / "postgres" / "postmaster.pid").exists()
    redis_pid = int((tmp_path / "redis" / "redis.pid").read_text())

    def stop() -> str:
        others = {
            "DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
            "REDIS_URL": "redis://127.0.0.1:1",
        }
        out = subprocess.run(
            [sys.executable, "-m", "ludus_dev", "stop"],
            cwd=ROOT, env=env | others, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return out.stdout

    try:
        assert "stopped redis and postgres" in stop()
        assert not (tmp_path / "postgres" / "postmaster.pid").exists()
        assert not Path(f"/proc/{redis_pid}").exists()
        assert "nothing was running" in stop()
        assert not (tmp_path / "postgres" / "postmaster.pid").exists()
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0
    finally:
        stop_embedded(tmp_path)  # whatever a failed check left running


def _without_key() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}


def _env_exports(env: dict[str, str]) -> dict[str, str]:
    """What `make env` exports, as a shell would read its lines."""
    out = subprocess.run(
        [sys.executable, "-m", "ludus_dev", "env"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    script = out.stdout + "\nenv -0"
    shell = subprocess.run(["sh", "-c", script], env={}, capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in shell.stdout.split("\0") if "=" in line)


def test_it_keeps_a_random_signing_key_in_the_data_folder_and_exports_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Made on first use, readable by its owner only, the same on every later run, and another
    data folder gets another key: no key is published."""
    env = _without_key() | {"LUDUS_DATA_DIR": str(tmp_path / "a")}
    first = _env_exports(env)["DJANGO_SECRET_KEY"]
    key_file = tmp_path / "a" / "secret_key"
    assert key_file.read_text().strip() == first
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert len(first) >= 50
    assert _env_exports(env)["DJANGO_SECRET_KEY"] == first
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["secret_key"]
    other = _env_exports(_without_key() | {"LUDUS_DATA_DIR": str(tmp_path / "b")})
    assert other["DJANGO_SECRET_KEY"] != first
    given = _env_exports(env | {"DJANGO_SECRET_KEY": "an operator's key"})
    assert given["DJANGO_SECRET_KEY"] == "an operator's key"


def test_it_refuses_to_start_without_a_signing_key_even_in_debug() -> None:
    env = _without_key() | {"DJANGO_DEBUG": "1"}
    out = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in out.stderr


@pytest.mark.django_db(transaction=True)  # the live server's thread reads what the test writes
def test_it_says_ready_only_once_two_models_answer_a_probe_made_since_the_start(
    live_server, upstream, settings
) -> None:  # type: ignore[no-untyped-def]
    """`make run`'s ready line: endpoint health left by an earlier run does not count, nor one model
    alone, nor a report with a part down; two models probed healthy since the start do."""
    from modelhub.models import Endpoint, Model
    from modelhub.tasks import probe_endpoints

    settings.LUDUS_REQUIRED_QUEUES = []  # no workers here: the queues are /healthz's own tests'
    earlier = timezone.now() - timedelta(minutes=5)
    first, second = (
        Model.objects.create(name=name, served_name=served)
        for name, served in (("ready-a", "fake"), ("ready-b", "fake-500"))
    )
    for model in (first, second):  # as the last probe of an earlier run left them
        Endpoint.objects.create(
            model=model, base_url=upstream.base_url, healthy=True, last_checked_at=earlier
        )
    since = timezone.now()
    settings.METRICS_TOKEN = "ready-check"  # /healthz's details are the token's, as make run sets

    def ready() -> bool:
        return wait_battle_ready(live_server.url, since=since, timeout_s=0, token="ready-check")

    assert not ready()
    probe_endpoints()  # the second model's engine is still loading: it answers 500
    assert not ready()
    Model.objects.filter(id=second.id).update(served_name="fake")
    probe_endpoints()
    assert ready()
    settings.LUDUS_REQUIRED_QUEUES = ["gen.nobody"]
    assert not ready()
