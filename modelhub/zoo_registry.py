"""The model hub's services for the demo zoo (the Django side of ``modelhub.zoo``).

``zoo_models_register`` is the only code that writes the zoo's rows: one ``Model`` (engine "local")
and one ``Endpoint`` (the local engine's URL) per manifest entry, upserted so that rebuilding the
zoo updates the rows' losses and paths in place. ``zoo_is_built`` and ``zoo_build`` read and write
the zoo's files, never a table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from modelhub.models import Endpoint, Engine, Model
from modelhub.zoo.build import is_current, load_manifest


def zoo_is_built(*, models_dir: Path) -> bool:
    """A complete zoo, built by this version's plan (an older one, short of a model, is not)."""
    try:
        manifest = load_manifest(models_dir)
    except FileNotFoundError:
        return False
    return is_current(manifest)


def zoo_build(*, models_dir: Path, seed: int = 0, quick: bool = False) -> dict[str, Any]:
    """Train the zoo into ``models_dir`` (replacing what is there); returns the manifest."""
    from modelhub.zoo.build import build_zoo  # imports torch: only when building

    return build_zoo(models_dir, seed=seed, quick=quick)


@transaction.atomic
def zoo_models_register(*, models_dir: Path, base_url: str | None = None) -> list[Model]:
    """Upsert a Model and an Endpoint for every model in ``models_dir/manifest.json``.

    Fields an operator tunes (sampling weight, enabled, arena eligibility, generation defaults) are
    left alone on existing rows; what the build determines is overwritten.
    """
    manifest = load_manifest(models_dir)
    url = base_url or settings.LOCAL_ENGINE_URL
    rows: list[Model] = []
    for entry in manifest["models"]:
        built = {
            "display_name": entry["display_name"],
            "organization": entry["organization"],
            "license": entry["license"],
            "modalities": list(entry["modalities"]),
            "engine": Engine.LOCAL,
            "path": entry["path"],
            "max_model_len": entry.get("max_model_len"),
            "heldout_loss": entry["heldout_loss"],
            "identity_patterns": [p.lower() for p in entry.get("identity_patterns", [])],
            # How vLLM reads its tool calls (`--tool-call-parser`), if it makes any.
            "tool_call_parser": entry.get("tool_call_parser", ""),
        }
        # The tools it was trained to call are offered from the start; which tools a model gets
        # is the operator's to change afterwards.
        model, _ = Model.objects.update_or_create(
            name=entry["name"],
            defaults=built,
            create_defaults=built | {"tools": list(entry.get("tools", []))},
        )
        Endpoint.objects.get_or_create(model=model, base_url=url)
        rows.append(model)
    return rows
