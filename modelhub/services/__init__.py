"""Writes for the model hub, by sub-domain:

- lifecycle: a generation created, enqueued, stopped, finished, heartbeated, reaped
- dispatch: claiming generations for a worker, max_concurrency slots, requeue, redelivery
- run: streaming a task's generations from their endpoints (the worker side)
- endpoints: endpoint health, from requests and probes
- registry: models and endpoints from configuration
- adapters: LoRA adapters loaded into their base's running vLLM servers

Callers use the names below (`from modelhub import services; services.generation_create(...)`).
"""

from modelhub.services.adapters import adapter_load
from modelhub.services.dispatch import generations_claim, generations_requeue
from modelhub.services.endpoints import (
    endpoint_mark_failure,
    endpoint_mark_success,
    endpoint_probe,
)
from modelhub.services.lifecycle import (
    RUN_GENERATION_TASK,
    GenerationRejected,
    generation_create,
    generation_fail,
    generation_finish,
    generation_params,
    generation_reap_stale,
    generation_stop,
    generations_create,
    generations_enqueue,
    generations_heartbeat,
    generations_requeue_lost,
)
from modelhub.services.registry import ModelConfigError, model_set_enabled, models_load
from modelhub.services.run import Heartbeat, generation_run, generations_run

__all__ = [
    "RUN_GENERATION_TASK",
    "GenerationRejected",
    "Heartbeat",
    "ModelConfigError",
    "adapter_load",
    "endpoint_mark_failure",
    "endpoint_mark_success",
    "endpoint_probe",
    "generation_create",
    "generation_fail",
    "generation_finish",
    "generation_params",
    "generation_reap_stale",
    "generation_run",
    "generation_stop",
    "generations_claim",
    "generations_create",
    "generations_enqueue",
    "generations_heartbeat",
    "generations_requeue",
    "generations_requeue_lost",
    "generations_run",
    "model_set_enabled",
    "models_load",
]
