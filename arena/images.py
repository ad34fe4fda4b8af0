"""Validation and preparation of an attached image: format, size and pixel limits, first frame of
a GIF, EXIF (and every other metadata) dropped by re-encoding, long side at most 1024 px.

Decoding is what costs: a 170 KB PNG can declare 6,000 x 6,000 pixels and take 100+ MB and
seconds to decode. So an upload is judged by its header first (`image_inspect` reads the format
and declared size without decoding a pixel), and decodes run a few at a time per process
(`decode_slot`); the arena checks its rate limits before either.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_BYTES = 10 * 1024 * 1024
# 25 megapixels: a 24 MP camera's 6000 x 4000 photo passes; decoding one takes about 75 MB (RGB).
MAX_PIXELS = 25_000_000
MAX_SIDE = 1024
ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP", "GIF"}
_UNREADABLE = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
               Image.DecompressionBombError, Image.DecompressionBombWarning)  # fmt: skip


class ImageRejected(ValueError):
    """The upload is not an image this arena accepts; the message is meant for the user and
    `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class DecodersBusy(Exception):
    """Every decode slot of this process stayed taken for the whole wait."""


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int


@dataclass(frozen=True)
class PreparedImage:
    data: bytes
    mime: str
    width: int
    height: int

    def data_url(self) -> str:
        import base64

        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode()}"


def _open(raw: bytes) -> Image.Image:
    """Pillow's lazy open: it parses the header (format, declared size) and decodes nothing."""
    if not raw:
        raise ImageRejected("The image is empty.")
    if len(raw) > MAX_BYTES:
        raise ImageRejected(f"The image is larger than {MAX_BYTES // (1024 * 1024)} MB.", 413)
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb warning: our cap (below) is lower and says how large it is.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(raw))
    except Image.DecompressionBombError:  # past twice Pillow's limit, refused by Pillow's open
        raise ImageRejected(_too_many_pixels("The image has too many pixels;"), 413) from None
    except _UNREADABLE:
        raise ImageRejected("The file is not a readable image.") from None
    if image.format not in ALLOWED_FORMATS:
        raise ImageRejected("Use a PNG, JPEG, WebP or GIF image.", 415)
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageRejected("The file is not a readable image.")
    if width * height > MAX_PIXELS:
        raise ImageRejected(_too_many_pixels(f"The image is {width} x {height} pixels;"), 413)
    return image


def _too_many_pixels(start: str) -> str:
    return (
        f"{start} the arena takes at most {MAX_PIXELS // 1_000_000} megapixels."
        " Please send a smaller image."
    )


def image_inspect(raw: bytes) -> ImageHeader:
    """The upload's format and declared size, read from its header alone (nothing is decoded).
    Raises ImageRejected for an empty, oversized, unreadable or unaccepted image."""
    image = _open(raw)
    return ImageHeader(format=str(image.format), width=image.width, height=image.height)


def image_prepare(raw: bytes) -> PreparedImage:
    """Decode, orient by EXIF, drop metadata, shrink to MAX_SIDE and re-encode (PNG when it has
    transparency, JPEG otherwise). The header is checked before any pixel is decoded."""
    image = _open(raw)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.seek(0)  # first frame of an animation
            if image.format == "JPEG":
                # libjpeg decodes at 1/2, 1/4 or 1/8 scale when that still covers MAX_SIDE.
                image.draft("RGB", (MAX_SIDE, MAX_SIDE))
            image.load()
    except _UNREADABLE:
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


@lru_cache(maxsize=4)
def _slots(limit: int) -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(max(1, limit))


@contextmanager
def decode_slot(*, limit: int, wait_s: float) -> Iterator[None]:
    """Hold one of this process's `limit` decode slots (request threads share them); raises
    DecodersBusy when none frees up within `wait_s` seconds."""
    slots = _slots(limit)
    if not slots.acquire(timeout=wait_s):
        raise DecodersBusy
    try:
        yield
    finally:
        slots.release()
