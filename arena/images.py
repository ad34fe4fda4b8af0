"""Validation and preparation of an attached image: format, size and pixel limits, first frame of
a GIF, EXIF (and every other metadata) dropped by re-encoding, long side at most 1024 px."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000
MAX_SIDE = 1024
ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP", "GIF"}


class ImageRejected(ValueError):
    """The upload is not an image this arena accepts; the message is meant for the user."""


@dataclass(frozen=True)
class PreparedImage:
    data: bytes
    mime: str
    width: int
    height: int

    def data_url(self) -> str:
        import base64

        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode()}"


def image_prepare(raw: bytes) -> PreparedImage:
    if not raw:
        raise ImageRejected("The image is empty.")
    if len(raw) > MAX_BYTES:
        raise ImageRejected(f"The image is larger than {MAX_BYTES // (1024 * 1024)} MB.")
    image: Image.Image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened: Image.Image = Image.open(io.BytesIO(raw))
            image = opened
            if opened.format not in ALLOWED_FORMATS:
                raise ImageRejected("Use a PNG, JPEG, WebP or GIF image.")
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageRejected("The image has too many pixels.")
            image.seek(0)  # first frame of an animation
            image.load()
    except ImageRejected:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning):  # fmt: skip
        raise ImageRejected("The file is not a readable image.") from None
    image = ImageOps.exif_transpose(image) or image
    has_alpha = image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info)
    image = image.convert("RGBA" if has_alpha else "RGB")
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if has_alpha:
        image.save(out, format="PNG", optimize=True)
        mime = "image/png"
    else:
        image.save(out, format="JPEG", quality=88)
        mime = "image/jpeg"
    return PreparedImage(data=out.getvalue(), mime=mime, width=image.width, height=image.height)
