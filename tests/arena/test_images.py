"""Attached images: judged by their header before a pixel is decoded, after the rate limits, and
decoded a few at a time per process."""

from __future__ import annotations

import io
from functools import cache
from typing import Any

import pytest
from django.test import Client
from PIL import Image, ImageFile

from arena import images
from arena.models import Battle
from modelhub.models import Generation
from tests.factories import EndpointFactory, ModelFactory

pytestmark = pytest.mark.django_db


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, format="PNG")
    return out.getvalue()


@cache
def _bomb() -> bytes:
    """6000 x 6000 pixels (36 megapixels, over 100 MB decoded) in a file of about 40 KB."""
    return _png((6000, 6000), mode="L")


def _upload(raw: bytes, name: str = "photo.png") -> io.BytesIO:
    upload = io.BytesIO(raw)
    upload.name = name
    return upload


def _post_image(client: Client, raw: bytes, prompt: str = "What is in this picture?") -> Any:
    return client.post(
        "/battles/", {"prompt": prompt, "image": _upload(raw)}, HTTP_HX_REQUEST="true"
    )


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The sizes of the images Pillow decodes while the test runs."""
    seen: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load

    def counting_load(self: ImageFile.ImageFile) -> Any:
        seen.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    return seen


@pytest.fixture
def vision_models(arena_models: list[Any]) -> list[Any]:
    """arena_models plus a second vision model, so that an anonymous image battle can draw a pair."""
    second = ModelFactory.create(name="epsilon-vl", modalities=["text", "image"])
    second.queue = "gen.arena-unit-tests"
    second.save(update_fields=["queue"])
    EndpointFactory.create(model=second)
    return [*arena_models, second]


def test_it_refuses_an_image_bomb_by_its_header_without_decoding_it(
    vision_models: list[Any], decodes: list[tuple[int, int]]
) -> None:
    raw = _bomb()
    assert len(raw) < 200_000
    response = _post_image(Client(), raw)
    assert response.status_code == 413
    assert b"6000 x 6000 pixels" in response.content
    assert b"at most 25 megapixels" in response.content
    assert decodes == []
    assert not Battle.objects.exists() and not Generation.objects.exists()


def test_it_reads_the_declared_size_without_decoding(decodes: list[tuple[int, int]]) -> None:
    header = images.image_inspect(_png((300, 200)))
    assert (header.format, header.width, header.height) == ("PNG", 300, 200)
    with pytest.raises(images.ImageRejected, match="6000 x 6000") as refused:
        images.image_inspect(_bomb())
    assert refused.value.status == 413
    with pytest.raises(images.ImageRejected, match="6000 x 6000"):
        images.image_prepare(_bomb())
    assert decodes == []


def test_it_counts_the_rate_limit_before_looking_at_the_image(
    vision_models: list[Any], settings: Any, decodes: list[tuple[int, int]]
) -> None:
    settings.ARENA_BATTLES_PER_MINUTE = 1
    client = Client()
    assert client.post("/battles/", {"prompt": "hi"}, HTTP_HX_REQUEST="true").status_code == 200
    truncated = _png((64, 64))[:60]  # a readable header, then nothing: decoding it would fail
    for raw in (truncated, _bomb(), _png((10, 10))):
        response = _post_image(client, raw)
        assert response.status_code == 429, response.content
    assert decodes == []
    assert Battle.objects.count() == 1


def test_it_answers_503_when_every_decode_slot_stays_taken(
    vision_models: list[Any], settings: Any
) -> None:
    settings.ARENA_IMAGE_DECODES = 1
    settings.ARENA_IMAGE_DECODE_WAIT_S = 0.05
    with images.decode_slot(limit=1, wait_s=1):  # another request is decoding
        response = _post_image(Client(), _png((10, 10)))
    assert response.status_code == 503
    assert b"busy reading other images" in response.content
    assert not Battle.objects.exists()
    assert _post_image(Client(), _png((10, 10))).status_code == 200  # the slot is free again


def test_a_normal_image_still_starts_a_battle(
    vision_models: list[Any], decodes: list[tuple[int, int]]
) -> None:
    response = _post_image(Client(), _png((2000, 1000)))
    assert response.status_code == 200
    battle = Battle.objects.select_related("model_a", "model_b").get()
    assert battle.image_mime == "image/jpeg" and battle.image is not None
    stored = Image.open(io.BytesIO(bytes(battle.image)))
    assert stored.size == (1024, 512)
    assert (2000, 1000) in decodes
    names = {m.name for m in (battle.model_a, battle.model_b) if m is not None}
    assert names == {"delta-vision", "epsilon-vl"}


def test_it_names_a_format_it_does_not_take(vision_models: list[Any]) -> None:
    out = io.BytesIO()
    Image.new("RGB", (10, 10)).save(out, format="BMP")
    response = _post_image(Client(), out.getvalue())
    assert response.status_code == 415
    assert b"Use a PNG, JPEG, WebP or GIF image." in response.content


def test_it_refuses_an_image_past_pillows_own_bomb_limit_by_the_same_rule(
    vision_models: list[Any], decodes: list[tuple[int, int]]
) -> None:
    # 100 and 2,500 megapixels: past Pillow's warning (~89 MP) and past its refusal (~179 MP).
    for side in (10_000, 50_000):
        response = _post_image(Client(), _png_header_only(side, side))
        assert response.status_code == 413, response.content
        assert b"at most 25 megapixels" in response.content
    assert decodes == []


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height grey pixels and holds a few bytes of image data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
