"""Engine counters, rendered as Prometheus text.

Besides Ludus's own ``ludus_engine_*`` series, the gauges vLLM exposes for load
(``vllm:num_requests_running`` / ``vllm:num_requests_waiting``, labelled ``model_name``) are
published under the same names, so the supervisor reads load from either engine the same way.
"""

from __future__ import annotations

import threading
from collections import defaultdict


class Metrics:
    """Thread-safe counters keyed by model name (written by scheduler threads and the server)."""

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

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        with self._lock:
            out: list[str] = []

            def series(name: str, kind: str, help_: str, rows: list[tuple[str, float]]) -> None:
                out.append(f"# HELP {name} {help_}")
                out.append(f"# TYPE {name} {kind}")
                out.extend(f"{name}{labels} {value}" for labels, value in rows)

            models = sorted(set(self.in_flight) | set(self.steps) | set(self.generation_tokens))
            series(
                "ludus_engine_requests_total",
                "counter",
                "Finished chat requests by finish reason.",
                [
                    (f'{{model="{m}",finish_reason="{r}"}}', n)
                    for (m, r), n in sorted(self.requests.items())
                ],
            )
            series(
                "ludus_engine_prompt_tokens_total",
                "counter",
                "Prompt tokens processed.",
                [(f'{{model="{m}"}}', self.prompt_tokens[m]) for m in models],
            )
            series(
                "ludus_engine_generation_tokens_total",
                "counter",
                "Tokens generated.",
                [(f'{{model="{m}"}}', self.generation_tokens[m]) for m in models],
            )
            series(
                "ludus_engine_requests_in_flight",
                "gauge",
                "Requests submitted and not finished.",
                [(f'{{model="{m}"}}', self.in_flight[m]) for m in models],
            )
            series(
                "ludus_engine_decode_steps_total",
                "counter",
                "Batched decoding steps run.",
                [(f'{{model="{m}"}}', self.steps[m]) for m in models],
            )
            series(
                "ludus_engine_batch_size_sum",
                "counter",
                "Sum over decoding steps of the batch size (divide by steps for the mean).",
                [(f'{{model="{m}"}}', self.batch_sum[m]) for m in models],
            )
            series(
                "ludus_engine_batch_size_max",
                "gauge",
                "Largest decoding batch since start.",
                [(f'{{model="{m}"}}', self.batch_max[m]) for m in models],
            )
            series(
                "ludus_engine_batch_size",
                "gauge",
                "Batch size of the latest decoding step.",
                [(f'{{model="{m}"}}', self.batch_last[m]) for m in models],
            )
            series(
                "ludus_engine_http_errors_total",
                "counter",
                "Error responses by status.",
                [(f'{{status="{s}"}}', n) for s, n in sorted(self.http_errors.items())],
            )
            series(
                "vllm:num_requests_running",
                "gauge",
                "Requests being decoded (vLLM-compatible name).",
                [
                    (f'{{model_name="{m}"}}', self.in_flight[m] - self.waiting_now[m])
                    for m in models
                ],
            )
            series(
                "vllm:num_requests_waiting",
                "gauge",
                "Requests waiting to be admitted (vLLM-compatible name).",
                [(f'{{model_name="{m}"}}', self.waiting_now[m]) for m in models],
            )
            return "\n".join(out) + "\n"
