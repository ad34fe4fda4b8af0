"""Engine counters, exposed through prometheus_client as a collector read at scrape time.

Besides Ludus's own ``ludus_engine_*`` series, the gauges vLLM exposes for load
(``vllm:num_requests_running`` / ``vllm:num_requests_waiting``, labelled ``model_name``) are
published under the same names, so the supervisor reads load from either engine the same way.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

_Family = type[CounterMetricFamily] | type[GaugeMetricFamily]


class Metrics:
    """Thread-safe counters keyed by model name (written by scheduler threads and the server).

    It is a prometheus_client collector: register it in a ``CollectorRegistry`` and
    ``generate_latest`` reads the counters as they stand, under the same lock the writers take.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: defaultdict[tuple[str, str], int] = defaultdict(int)  # (model, finish)
        self.prompt_tokens: defaultdict[str, int] = defaultdict(int)
        self.generation_tokens: defaultdict[str, int] = defaultdict(int)
        self.in_flight: defaultdict[str, int] = defaultdict(int)
        self.waiting_now: defaultdict[str, int] = defaultdict(int)
        self.steps: defaultdict[str, int] = defaultdict(int)
        self.batch_sum: defaultdict[str, int] = defaultdict(int)
        self.batch_max: defaultdict[str, int] = defaultdict(int)
        self.batch_last: defaultdict[str, int] = defaultdict(int)
        self.http_errors: defaultdict[int, int] = defaultdict(int)

    def started(self, model: str) -> None:
        with self._lock:
            self.in_flight[model] += 1

    def waiting(self, model: str, delta: int) -> None:
        with self._lock:
            self.waiting_now[model] += delta

    def finished(self, model: str, reason: str, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            self.in_flight[model] -= 1
            self.requests[(model, reason)] += 1
            self.prompt_tokens[model] += prompt_tokens

    def tokens(self, model: str, n: int) -> None:
        with self._lock:
            self.generation_tokens[model] += n

    def step(self, model: str, batch: int) -> None:
        with self._lock:
            self.steps[model] += 1
            self.batch_sum[model] += batch
            self.batch_last[model] = batch
            self.batch_max[model] = max(self.batch_max[model], batch)

    def error(self, status: int) -> None:
        with self._lock:
            self.http_errors[status] += 1

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            models = sorted(set(self.in_flight) | set(self.steps) | set(self.generation_tokens))

            requests = CounterMetricFamily(
                "ludus_engine_requests",
                "Finished chat requests by finish reason.",
                labels=["model", "finish_reason"],
            )
            for (model, reason), n in sorted(self.requests.items()):
                requests.add_metric([model, reason], n)
            yield requests

            per_model: list[tuple[_Family, str, str, dict[str, int]]] = [
                (CounterMetricFamily, "ludus_engine_prompt_tokens", "Prompt tokens processed.", self.prompt_tokens),
                (CounterMetricFamily, "ludus_engine_generation_tokens", "Tokens generated.", self.generation_tokens),
                (GaugeMetricFamily, "ludus_engine_requests_in_flight", "Requests submitted and not finished.", self.in_flight),
                (CounterMetricFamily, "ludus_engine_decode_steps", "Batched decoding steps run.", self.steps),
                (CounterMetricFamily, "ludus_engine_batched_sequences", "Sequences decoded, summed over decoding steps (divide by decode steps for the mean batch size).", self.batch_sum),
                (GaugeMetricFamily, "ludus_engine_batch_size_max", "Largest decoding batch since start.", self.batch_max),
                (GaugeMetricFamily, "ludus_engine_batch_size", "Batch size of the latest decoding step.", self.batch_last),
            ]  # fmt: skip
            for family_type, name, help_text, values in per_model:
                family = family_type(name, help_text, labels=["model"])
                for model in models:
                    family.add_metric([model], values.get(model, 0))
                yield family

            errors = CounterMetricFamily(
                "ludus_engine_http_errors", "Error responses by status.", labels=["status"]
            )
            for status, n in sorted(self.http_errors.items()):
                errors.add_metric([str(status)], n)
            yield errors

            running = GaugeMetricFamily(
                "vllm:num_requests_running",
                "Requests being decoded (vLLM-compatible name).",
                labels=["model_name"],
            )
            waiting = GaugeMetricFamily(
                "vllm:num_requests_waiting",
                "Requests waiting to be admitted (vLLM-compatible name).",
                labels=["model_name"],
            )
            for model in models:
                queued = self.waiting_now.get(model, 0)
                running.add_metric([model], self.in_flight.get(model, 0) - queued)
                waiting.add_metric([model], queued)
            yield running
            yield waiting
