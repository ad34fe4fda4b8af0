"""A task for the worker tests, imported by the worker they start (celery worker -I): it holds its
message unacknowledged (acks late, like a generation) for as long as asked, then leaves a mark."""

from __future__ import annotations

import time
from pathlib import Path

from celery import shared_task


@shared_task(name="tests.worker.hold", acks_late=True)
def hold(seconds: float, mark: str) -> None:
    time.sleep(seconds)
    Path(mark).write_text("done")
