"""LoRA adapters served by vLLM: loading a newly registered adapter into the running servers of
its base model, so it answers at once, without a restart. (A restart serves it too: the
supervisor starts the base with all its adapters, modelhub.supervisor.spec_from_model.)

vLLM loads adapters at run time through ``POST /v1/load_lora_adapter`` when it was started with
``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``; the path it is sent is read by
the server, so the models directory must be the same path on the vLLM host (a shared volume).
"""

from __future__ import annotations

import httpx

from modelhub.models import Model
from modelhub.selectors import endpoint_api_key
from modelhub.services.endpoints import endpoint_mark_failure, endpoint_mark_success


def adapter_load(*, model: Model, timeout_s: float = 60.0) -> dict[str, str]:
    """Load a LoRA adapter model into the vLLM server behind each of its enabled endpoints, under
    the name clients send (its upstream name). Returns the error of each server that refused,
    by base URL; such an endpoint is marked unhealthy with the reason (the next probe clears it
    once the server serves the adapter, e.g. after a restart), one that loaded it healthy."""
    if model.lora_base_id is None:
        raise ValueError(f"{model.name} is not a LoRA adapter")
    payload = {
        "lora_name": model.upstream_name,
        "lora_path": str(model.files().resolve()),
        # Loaded again when a server already has the name (a restart that read it from the hub).
        "load_inplace": True,
    }
    errors: dict[str, str] = {}
    for endpoint in model.endpoints.filter(enabled=True):
        api_key = endpoint_api_key(endpoint)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        url = endpoint.base_url.rstrip("/") + "/load_lora_adapter"
        try:
            # No redirect followed: the API key goes to the endpoint's own URL only.
            response = httpx.post(
                url, json=payload, headers=headers, timeout=timeout_s, follow_redirects=False
            )
            error = (
                ""
                if response.status_code < 300
                else f"HTTP {response.status_code}: {response.text[:500]}"
            )
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error:
            error = (
                f"vLLM did not load the LoRA adapter {model.upstream_name} ({error}); it is "
                "served once the base's server restarts with it (--enable-lora --lora-modules)"
            )
            endpoint_mark_failure(endpoint=endpoint, error=error)
            errors[endpoint.base_url] = error
        else:
            endpoint_mark_success(endpoint=endpoint)
    return errors
