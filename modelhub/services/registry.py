"""The model registry: models and their endpoints loaded from configuration, switched on and off."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from modelhub.models import Endpoint, Engine, Model
from modelhub.tools import validate_tool_names

MODEL_FIELDS = {
    "display_name", "organization", "license", "modalities", "engine", "served_name", "queue",
    "sampling_weight", "max_concurrency", "arena_eligible", "enabled", "deprecated", "temperature",
    "top_p", "max_tokens", "system_prompt", "path", "tensor_parallel_size", "max_model_len",
    "limit_images_per_prompt", "identity_patterns", "heldout_loss", "tools", "tool_call_parser",
    "source_url", "source_label",
}  # fmt: skip


class ModelConfigError(ValueError):
    pass


def models_load(*, entries: list[dict[str, Any]]) -> list[Model]:
    """Create or update models (and their endpoints) from configuration entries, all or nothing.

    Each entry: {"name": ..., <model fields>, "endpoints": [{"base_url": ..., "api_key_env": ...}]}.
    A LoRA adapter served by vLLM names its base model with "lora_base" (a vLLM model); its
    path is the adapter's directory and its endpoints are the base's servers.
    Endpoints not listed for a model are disabled, not deleted (generations keep their history).
    An entry carrying an API key itself is refused: keys come from the environment only.
    """
    if not isinstance(entries, list):
        raise ModelConfigError("the file must hold a list of models (or {'models': [...]})")
    loaded: list[Model] = []
    with transaction.atomic():
        for index, entry in enumerate(entries, start=1):
            if not isinstance(entry, dict) or not entry.get("name"):
                raise ModelConfigError(f"model #{index}: each model needs a name")
            unknown = set(entry) - MODEL_FIELDS - {"name", "endpoints", "lora_base"}
            if unknown:
                raise ModelConfigError(f"model {entry['name']}: unknown fields {sorted(unknown)}")
            model, _ = Model.objects.get_or_create(name=entry["name"])
            for key in MODEL_FIELDS & set(entry):
                setattr(model, key, entry[key])
            if "lora_base" in entry:
                model.lora_base = _lora_base(entry, model)
            try:
                model.full_clean()
            except ValidationError as exc:
                raise ModelConfigError(f"model {entry['name']}: {exc.message_dict}") from None
            try:
                validate_tool_names(model.tools)
            except ValidationError as exc:
                raise ModelConfigError(f"model {entry['name']}: {exc.message}") from None
            model.save()
            seen: list[int] = []
            for ep in entry.get("endpoints") or []:
                if not isinstance(ep, dict) or not ep.get("base_url"):
                    raise ModelConfigError(f"model {entry['name']}: each endpoint needs a base_url")
                if "api_key" in ep:
                    raise ModelConfigError(
                        f"model {entry['name']}: put the API key in an environment variable and name it with api_key_env"
                    )
                endpoint, _ = Endpoint.objects.update_or_create(
                    model=model,
                    base_url=ep["base_url"],
                    defaults={
                        "api_key_env": ep.get("api_key_env", ""),
                        "enabled": ep.get("enabled", True),
                    },
                )
                try:
                    endpoint.full_clean()
                except ValidationError as exc:
                    raise ModelConfigError(
                        f"model {entry['name']}: endpoint {exc.message_dict}"
                    ) from None
                seen.append(endpoint.id)
            if "endpoints" in entry:
                model.endpoints.exclude(id__in=seen).update(enabled=False)
            loaded.append(model)
    return loaded


def _lora_base(entry: dict[str, Any], model: Model) -> Model | None:
    name = entry["lora_base"]
    if not name:
        return None
    base = Model.objects.filter(name=name).first()
    if base is None:
        raise ModelConfigError(f"model {entry['name']}: no base model named {name!r}")
    if base.engine != Engine.VLLM or model.engine != Engine.VLLM:
        raise ModelConfigError(
            f"model {entry['name']}: a LoRA adapter and its base {name} are both served by vLLM"
        )
    if base.lora_base_id is not None:
        raise ModelConfigError(f"model {entry['name']}: the base {name} is itself an adapter")
    return base


def model_set_enabled(*, name: str, enabled: bool) -> Model:
    updated = Model.objects.filter(name=name).update(enabled=enabled)
    if not updated:
        raise Model.DoesNotExist(f"no model named {name!r}")
    return Model.objects.get(name=name)
