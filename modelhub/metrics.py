"""Per-endpoint serving figures kept in Redis (shared by every worker), read by /metrics and the
status page. In-flight counts come from PostgreSQL (generations streaming per endpoint), so they
heal themselves when a worker dies."""

from __future__ import annotations

import logging

from modelhub.redis_clients import client as redis_client

log = logging.getLogger(__name__)

FIELDS = ("requests", "errors", "ttft_ms_sum", "ttft_count", "tokens", "stream_seconds")


def _key(endpoint_id: int) -> str:
    return f"ludus:metrics:endpoint:{endpoint_id}"


def _safe(fn):  # type: ignore[no-untyped-def]
    """Metrics must never break a generation."""

    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return fn(*args, **kwargs)
        except Exception:
            log.exception("metrics update failed")
            return None

    return wrapper


# A request is counted when it ends (finished or failed), in the same round trip as its other
# figures (for one that finished, the round trip that stores its terminal frame): counting it as
# it starts was one more round trip before every upstream request.


@_safe
def request_failed(endpoint_id: int) -> None:
    key, increments = failed_counters(endpoint_id)
    pipe = redis_client().pipeline(transaction=False)
    for name, amount in increments:
        pipe.hincrby(key, name, int(amount))
    pipe.execute()


def failed_counters(endpoint_id: int) -> tuple[str, list[tuple[str, float]]]:
    """What a failed request adds to its endpoint's figures: written by request_failed, or with
    the generation's error frame by streams.add_terminal when the failure ends the generation."""
    return _key(endpoint_id), [("requests", 1), ("errors", 1)]


def finished_counters(
    endpoint_id: int, *, ttft_ms: float | None, tokens: int, seconds: float
) -> tuple[str, list[tuple[str, float]]]:
    """What a request that ended adds to its endpoint's figures, as the counters that
    streams.add_terminal writes with the generation's terminal frame (no round trip of its own)."""
    increments: list[tuple[str, float]] = [("requests", 1)]
    if ttft_ms is not None:
        increments += [("ttft_ms_sum", ttft_ms), ("ttft_count", 1)]
    increments += [("tokens", tokens), ("stream_seconds", seconds)]
    return _key(endpoint_id), increments


@_safe
def endpoint_reset(endpoint_id: int) -> None:
    redis_client().delete(_key(endpoint_id))


def endpoint_figures(endpoint_ids: list[int]) -> dict[int, dict[str, float]]:
    pipe = redis_client().pipeline(transaction=False)
    for endpoint_id in endpoint_ids:
        pipe.hgetall(_key(endpoint_id))
    result: dict[int, dict[str, float]] = {}
    for endpoint_id, raw in zip(endpoint_ids, pipe.execute(), strict=True):
        figures = {name: float(raw.get(name.encode(), 0)) for name in FIELDS}
        figures["error_rate"] = (
            figures["errors"] / figures["requests"] if figures["requests"] else 0.0
        )
        figures["ttft_ms_avg"] = (
            figures["ttft_ms_sum"] / figures["ttft_count"] if figures["ttft_count"] else 0.0
        )
        figures["tokens_per_s"] = (
            figures["tokens"] / figures["stream_seconds"] if figures["stream_seconds"] else 0.0
        )
        result[endpoint_id] = figures
    return result
