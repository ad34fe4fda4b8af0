"""Reading Prometheus text in tests: the way a scraper reads it, with prometheus_client's parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def metric_types(text: str) -> dict[str, str]:
    """Each family's name (a counter's without `_total`) and type."""
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def metric_value(text: str, sample: str, **labels: str) -> float | None:
    """The value of the sample named `sample` with exactly these labels; None when absent."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and found.labels == labels:
                return float(found.value)
    return None
