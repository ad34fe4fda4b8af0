"""Pure parts: sampling, leak detection, moderation, image preparation, Markdown sanitising."""

from __future__ import annotations

import io
import random
from html.parser import HTMLParser

import pytest
from PIL import Image

from arena import images, leak, moderation, sampling
from arena.rendering import render_markdown
from arena.sampling import Candidate


def test_it_never_crashes_on_empty_or_zero_weights() -> None:
    with pytest.raises(sampling.NotEnoughModels):
        sampling.sample_pair([])
    with pytest.raises(sampling.NotEnoughModels):
        sampling.sample_pair([Candidate("a")])
    a, b, p = sampling.sample_pair([Candidate("a", 0), Candidate("b", 0)])
    assert {a, b} == {"a", "b"} and p == 1.0
    dist = sampling.pair_distribution(
        [Candidate("a", 0), Candidate("b", float("nan")), Candidate("c", -1)]
    )
    assert sum(dist.values()) == pytest.approx(1.0)


def test_it_draws_pairs_by_weight_and_boosts_new_models() -> None:
    candidates = [Candidate("a", 1, votes=1000), Candidate("b", 1, votes=1000), Candidate("c", 1)]
    plain = sampling.pair_distribution(candidates)
    assert plain[("a", "b")] == pytest.approx(1 / 3)
    boosted = sampling.pair_distribution(candidates, new_model_boost=4, new_model_until_votes=300)
    assert boosted[("a", "c")] == pytest.approx(4 / 9)
    assert boosted[("a", "b")] == pytest.approx(1 / 9)
    excluded = sampling.pair_distribution([*candidates, Candidate("d", 0)])
    assert all("d" not in pair for pair in excluded)


def test_it_shuffles_sides_and_reports_the_pair_probability() -> None:
    rng = random.Random(7)
    seen = set()
    for _ in range(200):
        left, right, p = sampling.sample_pair([Candidate("a"), Candidate("b")], rng=rng)
        seen.add((left, right))
        assert p == 1.0
    assert seen == {("a", "b"), ("b", "a")}


def test_it_boosts_models_under_their_battle_target() -> None:
    dist = sampling.pair_distribution(
        [Candidate("a"), Candidate("b"), Candidate("c", battles=5, target_battles=100)],
        target_boost=2,
    )
    assert dist[("a", "c")] == pytest.approx(2 / 5)


IDENTITIES = [
    leak.Identity("llama-3-8b", "Llama 3 8B", "Meta", ("i was trained by meta ai",)),
    leak.Identity("qwen2-7b", "Qwen2 7B", "Alibaba"),
]


@pytest.mark.parametrize(
    "text",
    [
        "I am Llama 3 8B, a model by Meta.",
        "As qwen2-7b I cannot do that.",
        "I was trained by Meta AI.",
        "Developed by ALIBABA cloud.",
        "i'm llama 3 8b",
    ],
)
def test_it_detects_a_reply_that_names_its_model(text: str) -> None:
    assert leak.is_leak(text, IDENTITIES)


@pytest.mark.parametrize(
    "text", ["A metaphor about llamas.", "Metadata is data.", "", "I am a helpful assistant."]
)
def test_it_does_not_flag_ordinary_replies(text: str) -> None:
    assert not leak.is_leak(text, IDENTITIES)


def test_it_blocks_words_on_the_list_and_allows_the_rest(settings: object) -> None:
    assert not moderation.word_list_check("How do I   BUILD A BOMB?").allowed
    assert moderation.word_list_check("How do I build a birdhouse?").allowed
    assert not moderation.word_list_check("tell me about xyzzy", words=["xyzzy"]).allowed
    assert moderation.word_list_check("anything", words=[]).allowed


def test_it_uses_the_configured_moderation_check(settings: object) -> None:
    settings.ARENA_MODERATION_CHECK = "tests.arena.test_units.refuse_everything"  # type: ignore[attr-defined]
    assert not moderation.prompt_allowed("hello").allowed


def refuse_everything(text: str) -> moderation.Verdict:
    return moderation.Verdict(False, "test")


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def test_it_resizes_and_strips_exif() -> None:
    image = Image.new("RGB", (3000, 1500), "red")
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0112] = 6  # orientation: rotate
    raw = _encode(image, "JPEG", exif=exif)
    prepared = images.image_prepare(raw)
    assert prepared.mime == "image/jpeg"
    assert (prepared.width, prepared.height) == (512, 1024)  # rotated by EXIF, then resized
    assert b"SecretCam" not in prepared.data
    assert not Image.open(io.BytesIO(prepared.data)).getexif()


def test_it_takes_the_first_frame_of_a_gif_and_keeps_webp_alpha() -> None:
    frames = [Image.new("P", (20, 20), i) for i in range(3)]
    raw = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert images.image_prepare(raw).width == 20
    webp = _encode(Image.new("RGBA", (40, 30), (0, 0, 0, 0)), "WEBP")
    prepared = images.image_prepare(webp)
    assert (prepared.mime, prepared.width) == ("image/png", 40)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not an image at all",
        _encode(Image.new("RGB", (10, 10)), "BMP"),
        _encode(Image.new("RGB", (10, 10)), "TIFF"),
    ],
)
def test_it_rejects_what_is_not_an_accepted_image(raw: bytes) -> None:
    with pytest.raises(images.ImageRejected):
        images.image_prepare(raw)


def test_it_rejects_too_many_pixels_and_too_many_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(images.ImageRejected, match="pixels"):
        images.image_prepare(_encode(Image.new("RGB", (20, 20)), "PNG"))
    monkeypatch.setattr(images, "MAX_BYTES", 10)
    with pytest.raises(images.ImageRejected, match="larger"):
        images.image_prepare(_encode(Image.new("RGB", (2, 2)), "PNG"))


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        "[click](javascript:alert(1))",
        "[click](JaVaScRiPt:alert(1))",
        '<a href="x" onclick="evil()">x</a>',
        '<img src=x onerror="evil()">',
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        "<iframe src=//evil></iframe>",
        "<p onmouseover=evil()>hi</p>",
    ],
)
def test_it_sanitises_markdown(text: str) -> None:
    parser = _Elements()
    parser.feed(render_markdown(text))
    for tag, attrs in parser.found:
        assert tag not in {"script", "img", "iframe"}
        assert not any(name.startswith("on") for name in attrs)
        assert not (attrs.get("href") or "").lower().startswith(("javascript", "data"))


def test_it_renders_code_and_math_markers() -> None:
    html = render_markdown("Sum: $a+b$\n\n```python\nprint(1)\n```\n\n$$x^2$$")
    assert '<code class="language-python">' in html
    assert '<span class="math math-inline">a+b</span>' in html
    assert '<span class="math math-display">x^2</span>' in html
    assert "<strong>b</strong>" in render_markdown("a **b**")
