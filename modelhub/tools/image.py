"""The image tool: crop and zoom into the prompt's image (Pillow), for vision models. The crop
comes back to the model as an image after the tool message."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image

from modelhub.tools import Tool, ToolContext, ToolError, ToolOutput, tool_register

MAX_SIDE = 768
MAX_PIXELS = 40_000_000


def prompt_image(messages: Any) -> bytes | None:
    """The bytes of the last image (a data URL) in the conversation."""
    found = None
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            url = (part.get("image_url") or {}).get("url", "") if isinstance(part, dict) else ""
            if url.startswith("data:") and ";base64," in url:
                found = url.split(";base64,", 1)[1]
    return base64.b64decode(found) if found else None


def crop_image(arguments: dict[str, Any], context: ToolContext) -> ToolOutput:
    raw = prompt_image(context.messages)
    if raw is None:
        raise ToolError("the conversation has no image")
    box = [arguments[k] for k in ("left", "top", "right", "bottom")]
    if box[0] >= box[2] or box[1] >= box[3]:
        raise ToolError("left must be below right and top below bottom")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    with Image.open(io.BytesIO(raw)) as image:
        width, height = image.size
        region = image.convert("RGB").crop(
            (
                round(box[0] * width),
                round(box[1] * height),
                round(box[2] * width),
                round(box[3] * height),
            )
        )
    scale = min(MAX_SIDE / max(region.size), 4.0)  # zoom in on a small region, at most 4x
    region = region.resize(
        (max(1, round(region.width * scale)), max(1, round(region.height * scale)))
    )
    out = io.BytesIO()
    region.save(out, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()
    return ToolOutput(f"The crop ({region.width}x{region.height}) follows as an image.", url)


_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
CROP_IMAGE = tool_register(
    Tool(
        name="crop_image",
        description="Crop and zoom into the user's image. Coordinates are fractions of the "
        "width and height (0 to 1) from the top left corner.",
        parameters={
            "type": "object",
            "properties": {k: _FRACTION for k in ("left", "top", "right", "bottom")},
            "required": ["left", "top", "right", "bottom"],
            "additionalProperties": False,
        },
        function=crop_image,
        needs_image=True,
    )
)
