"""`manage.py finetune`: start (and train here with --now), list, cancel, resume, promote, and
the accelerate launch line."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from collection.models import DatasetVersion, FinetuneJob, JobState
from modelhub.models import Model
from tests.helpers import ROOT, database_url_for_tests
from tests.training.conftest import BASE

pytestmark = pytest.mark.django_db


def _call(*args: str) -> str:
    out = StringIO()
    call_command("finetune", *args, stdout=out)
    return out.getvalue()


def test_it_starts_trains_lists_and_promotes_a_job_from_the_command_line(
    version: DatasetVersion, hub: dict[str, Model], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        out = _call(
            "start", "--version", str(version.id), "--method", "sft", "--base", BASE,
            "--set", "max_steps=2", "--set", "lora=true", "--set", "test_fraction=0.25",
            "--seed", "3", "--now",
        )  # fmt: skip
    job = FinetuneJob.objects.get()
    assert f"job {job.id} queued" in out and "Trained and evaluated" in out
    assert job.hyperparameters["lora"] is True and job.seed == 3 and job.step == 2
    assert f"{job.id}\tdone\tsft\t{BASE}" in _call("list")
    assert "Promoted" in _call("promote", str(job.id))
    assert Model.objects.filter(name=f"{BASE}-ft{job.id}").exists()


def test_it_cancels_and_resumes_and_refuses_what_cannot_be_done(
    version: DatasetVersion, hub: dict[str, Model], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        _call("start", "--version", str(version.id), "--method", "dpo", "--base", BASE)
        job = FinetuneJob.objects.get()
        assert "Cancelled" in _call("cancel", str(job.id))
        with pytest.raises(CommandError, match="cannot be cancelled"):
            _call("cancel", str(job.id))
        assert "Queued" in _call("resume", str(job.id))
    with pytest.raises(CommandError, match="unknown hyperparameter"):
        _call("start", "--version", str(version.id), "--method", "sft", "--base", BASE,
              "--set", "epochs=3")  # fmt: skip
    with pytest.raises(CommandError, match="does not exist"):
        _call("cancel", "999999")
    assert FinetuneJob.objects.get().state == JobState.QUEUED


@pytest.mark.django_db(transaction=True)  # the launched process reads the test database
def test_it_prints_the_accelerate_launch_line_which_runs_a_job_with_one_process(
    version: DatasetVersion, hub: dict[str, Model], settings: Any
) -> None:
    # Its task goes to the train queue too, which no worker consumes here: the launched process
    # trains it (and a later delivery would find it done).
    _call("start", "--version", str(version.id), "--method", "sft", "--base", BASE,
          "--set", "max_steps=2", "--set", "test_fraction=0.25")  # fmt: skip
    job = FinetuneJob.objects.get()
    line = _call("launch", str(job.id), "--processes", "1").strip()
    assert line == f"accelerate launch --num_processes 1 manage.py finetune run {job.id}"

    argv = shlex.split(line)
    argv[0] = str(Path(sys.executable).parent / "accelerate")
    env = dict(os.environ) | {
        "DATABASE_URL": database_url_for_tests(),
        "LUDUS_DATA_DIR": str(settings.DATA_DIR),
        "LUDUS_MODELS_DIR": str(settings.MODELS_DIR),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "ACCELERATE_USE_CPU": "true",
    }
    env.pop("PYTEST_XDIST_WORKER", None)
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)

    assert done.returncode == 0, done.stderr[-3000:]
    job.refresh_from_db()
    assert job.state == JobState.DONE and job.step == 2, job.error
    assert (Path(job.output_dir) / "model" / "config.json").exists()
