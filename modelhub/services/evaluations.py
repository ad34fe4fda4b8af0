"""Function-calling evaluations: a model's endpoint answers the bundled test set (see
modelhub.zoo.toolcheck) and the score is stored with the model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import openai

from modelhub.models import Model, ToolCallEvaluation
from modelhub.selectors import endpoint_api_key, endpoints_for_dispatch
from modelhub.zoo import toolcheck, tooluse


class EvaluationFailed(Exception):
    """The evaluation could not run (no endpoint, no test set, the endpoint failed): nothing is
    stored."""


def tool_call_evaluation_run(*, model: Model, cases_path: Path) -> ToolCallEvaluation:
    """Run the test set against the model's first endpoint in dispatch order (healthy, least
    loaded) with the official openai client, as a user's client would, and store the score.

    The requests run outside any transaction (minutes on a slow model); one row is written at
    the end."""
    try:
        body = cases_path.read_bytes()
    except OSError as exc:
        raise EvaluationFailed(f"cannot read the test set {cases_path}: {exc}") from None
    cases = tooluse.read_cases(cases_path)
    if not cases:
        raise EvaluationFailed(f"the test set {cases_path} holds no case")
    endpoints = endpoints_for_dispatch(model=model)
    if not endpoints:
        raise EvaluationFailed(f"{model.name} has no enabled endpoint")
    endpoint = endpoints[0]
    try:
        result = toolcheck.evaluate(
            endpoint.base_url,
            model.upstream_name,
            cases,
            api_key=endpoint_api_key(endpoint) or "unused",
        )
    except openai.OpenAIError as exc:
        raise EvaluationFailed(f"{model.name} at {endpoint.base_url}: {exc}") from None
    return ToolCallEvaluation.objects.create(
        model=model,
        accuracy=result["accuracy"],
        cases=result["cases"],
        by_category=result["by_category"],
        called_by_category=result["called_by_category"],
        test_set_sha256=hashlib.sha256(body).hexdigest(),
    )
