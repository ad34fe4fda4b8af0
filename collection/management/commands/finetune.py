"""Fine-tuning jobs from the command line: start, list, cancel, resume, promote, run.

manage.py finetune start --version 3 --method sft --base zoo-llama-xs [--judge zoo-llama-s]
                         [--set lora=true --set max_steps=50] [--seed 0] [--now]
manage.py finetune list
manage.py finetune cancel 12 | resume 12 | promote 12
manage.py finetune run 12          # train here, in this process (what a train worker does)
manage.py finetune launch 12 --processes 2   # the `accelerate launch` line for several GPUs
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from collection.models import DatasetVersion, FinetuneJob
from collection.training import services
from modelhub.models import Model


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def accelerate_command(job_id: int, processes: int) -> list[str]:
    """The command line that runs a job under `accelerate launch` (several GPUs or hosts)."""
    return [
        "accelerate",
        "launch",
        "--num_processes",
        str(processes),
        "manage.py",
        "finetune",
        "run",
        str(job_id),
    ]


class Command(BaseCommand):
    help = "Start, list, cancel, resume, promote or run fine-tuning jobs."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        start = sub.add_parser("start", help="launch a job on the train queue")
        start.add_argument("--version", type=int, required=True, help="dataset version id")
        start.add_argument("--method", choices=["sft", "dpo"], required=True)
        start.add_argument("--base", help="hub model name")
        start.add_argument("--base-path", default="", help="or a local Hugging Face directory")
        start.add_argument("--judge", help="hub model that judges the evaluation gate")
        start.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
        start.add_argument("--seed", type=int, default=0)
        start.add_argument("--now", action="store_true", help="train in this process")
        sub.add_parser("list", help="every job, newest first")
        for name in ("cancel", "resume", "promote", "run"):
            one = sub.add_parser(name)
            one.add_argument("job", type=int)
        launch = sub.add_parser("launch", help="print the accelerate launch command of a job")
        launch.add_argument("job", type=int)
        launch.add_argument("--processes", type=int, default=1)

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            if action == "start":
                self._start(options)
            elif action == "list":
                self._list()
            elif action == "launch":
                FinetuneJob.objects.get(id=options["job"])
                self.stdout.write(
                    shlex.join(accelerate_command(options["job"], options["processes"]))
                )
            else:
                self._one(action, options["job"])
        except services.JobError as error:
            raise CommandError(str(error)) from None
        except (FinetuneJob.DoesNotExist, Model.DoesNotExist, DatasetVersion.DoesNotExist) as e:
            raise CommandError(str(e)) from None

    def _start(self, options: dict[str, Any]) -> None:
        hyperparameters: dict[str, Any] = {}
        for item in options["set"]:
            name, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--set takes NAME=VALUE, got {item!r}")
            hyperparameters[name.strip()] = _value(value.strip())
        job = services.job_create(
            version=DatasetVersion.objects.get(id=options["version"]),
            method=options["method"],
            base_model=Model.objects.get(name=options["base"]) if options["base"] else None,
            base_path=options["base_path"],
            judge_model=Model.objects.get(name=options["judge"]) if options["judge"] else None,
            hyperparameters=hyperparameters,
            seed=options["seed"],
        )
        self.stdout.write(f"job {job.id} queued on the train queue; output in {job.output_dir}")
        if options["now"]:
            self._one("run", job.id)

    def _list(self) -> None:
        for job in FinetuneJob.objects.select_related("version", "version__dataset", "base_model"):
            loss = job.loss_history[-1][1] if job.loss_history else None
            self.stdout.write(
                f"{job.id}\t{job.state}\t{job.method}\t{services.base_label(job)}\t{job.version}"
                f"\tstep {job.step}/{job.max_steps}\tloss {loss}"
            )

    def _one(self, action: str, job_id: int) -> None:
        if action == "cancel":
            job = services.job_cancel(job_id=job_id)
        elif action == "resume":
            job = services.job_resume(job_id=job_id)
        elif action == "promote":
            job = services.job_promote(job_id=job_id)
        else:
            found = services.job_run(job_id=job_id)
            if found is None:
                raise FinetuneJob.DoesNotExist(f"no job {job_id}")
            job = found
            job.refresh_from_db()
        self.stdout.write(f"job {job.id}: {job.get_state_display()}")
        if job.metrics:
            self.stdout.write(json.dumps(job.metrics, sort_keys=True))
