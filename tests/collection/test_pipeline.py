"""The filtering pipeline's steps on fixtures with known answers, and its command line."""

from __future__ import annotations

import json
import random
import re
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from collection.pipeline import (
    DetectLanguage,
    Downsample,
    ExactDedup,
    NearDedup,
    Normalize,
    QualityFilter,
    RedactPII,
    TagOffensive,
    apply,
    build_steps,
    redact,
)
from collection.pipeline.dedup import jaccard, shingles
from tests.helpers import ROOT


def conversation(row_id: Any, prompt: str, reply: str = "A fine answer.", **extra: Any) -> dict:
    return {
        "id": row_id,
        "messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": reply},
        ],
        **extra,
    }


def random_words(rng: random.Random, n: int) -> list[str]:
    return [
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 8)))
        for _ in range(n)
    ]


def test_it_repairs_mojibake_and_keeps_clean_rows_as_they_are() -> None:
    clean = conversation(1, "Plain text stays.")
    broken = conversation(2, "The cafÃ© serves crÃ¨me brÃ»lÃ©e &amp; tea")
    kept, log = apply(Normalize(), [clean, broken])
    assert kept[0] is clean
    assert kept[1]["messages"][0]["content"] == "The café serves crème brûlée & tea"
    assert broken["messages"][0]["content"].startswith("The cafÃ©")  # input untouched
    assert [(e.id, e.reason) for e in log.changed()] == [(2, "text_repaired")]


def test_it_drops_exact_duplicates_ignoring_whitespace_and_metadata() -> None:
    rows = [
        conversation("a", "What is the capital of France?", "Paris."),
        conversation("b", "What is  the capital of France? ", "Paris.", source="quest"),
        conversation("c", "What is the capital of France?", "Paris, of course."),
    ]
    kept, log = apply(ExactDedup(), rows)
    assert [r["id"] for r in kept] == ["a", "c"]
    [event] = log.dropped()
    assert (event.id, event.reason, event.detail) == ("b", "exact_duplicate", {"of": "a"})


def test_it_drops_planted_near_copies_and_keeps_distinct_prompts() -> None:
    rng = random.Random(7)
    rows, planted = [], {}
    for index in range(300):
        rows.append(conversation(f"o{index}", " ".join(random_words(rng, 60))))
    for index in range(60):
        source = rows[rng.randrange(300)]
        words = source["messages"][0]["content"].split()
        words[rng.randrange(len(words))] = "changed"
        words.insert(rng.randrange(len(words)), "inserted")
        text = " ".join(words).upper() if index % 2 else " ".join(words)
        # a near-copy by construction: shingle Jaccard above 0.8, yet no exact copy
        assert 0.8 <= jaccard(shingles(text), shingles(source["messages"][0]["content"])) < 1
        rows.append(conversation(f"d{index}", text, "another reply"))
        planted[f"d{index}"] = source["id"]
    # a prompt sharing only half its words with an original is not a near-copy
    half = rows[0]["messages"][0]["content"].split()[:30] + random_words(rng, 30)
    rows.append(conversation("half", " ".join(half)))

    kept, log = apply(NearDedup(), rows)
    dropped = {e.id: e.detail or {} for e in log.dropped()}
    assert set(dropped) == set(planted)
    assert all(dropped[i]["of"] == planted[i] for i in planted)
    assert all(dropped[i]["jaccard"] >= 0.8 for i in planted)
    assert len(kept) == 301
    assert {r["id"] for r in kept} >= {"half", "o0"}


def test_it_compares_only_the_user_turns_for_near_copies() -> None:
    prompt = "please summarise the attached report about quarterly revenue in three bullet points"
    rows = [conversation(1, prompt, "reply one"), conversation(2, prompt, "a different reply")]
    kept, log = apply(NearDedup(), rows)
    assert [r["id"] for r in kept] == [1]
    assert log.dropped()[0].reason == "near_duplicate"


def test_it_caps_over_frequent_prompts_at_the_percentile_frequency() -> None:
    rows = [conversation(f"u{i}", f"unique prompt number {i}") for i in range(5000)]
    rows += [conversation(f"hi{i}", "Hi!" if i % 2 else "  hi! ") for i in range(40)]
    rows += [conversation(f"joke{i % 10}-{i}", f"Tell me joke {i % 10}") for i in range(30)]
    kept, log = apply(Downsample(quantile=0.999), rows)
    # 5,011 distinct prompts: 5,000 asked once, ten three times, one ("hi") forty times; the
    # 99.9th percentile of those frequencies is 3
    kept_ids = [r["id"] for r in kept]
    assert sum(i.startswith("hi") for i in kept_ids) == 3
    assert sum(i.startswith("joke") for i in kept_ids) == 30
    assert sum(i.startswith("u") for i in kept_ids) == 5000
    assert kept_ids == [r["id"] for r in rows if r["id"] in set(kept_ids)]  # input order
    assert {e.reason for e in log.dropped()} == {"over_frequent_prompt"}
    assert log.dropped()[0].detail == {"cap": 3, "count": 40}
    again, _ = apply(Downsample(quantile=0.999), rows)
    assert [r["id"] for r in again] == kept_ids  # seeded: the same sample each run


# Every kind of PII the redaction step knows, planted in a sentence. The secret is the value;
# nothing of it may survive (no digit run, no local part, no piece of a key).
PLANTED = {
    "email": "john.doe+test42@mail.example.co.uk",
    "phone_international": "+44 20 7946 0958",
    "phone_e164": "+4915123456789",
    "phone_us_national": "(415) 555-2671",
    "card_spaced": "4111 1111 1111 1111",
    "card_compact": "5500005555555559",
    "iban_grouped": "DE89 3704 0044 0532 0130 00",
    "iban_compact": "GB82WEST12345698765432",
    "ipv4": "192.168.37.201",
    "ipv6": "2001:db8:85a3::8a2e:370:7334",
    "openai_key": "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    "anthropic_key": "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2",
    "hf_token": "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "github_token": "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R",
    "aws_key": "AKIAIOSFODNN7EXAMPLE",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "hex_secret": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "base64_secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}
PASSWORD = "Tr0ub4dor&3"
URL_USER, URL_PASSWORD = "admin", "s3cr3tPassw0rd"


def fragments(value: str) -> set[str]:
    """Pieces that must not survive: every run of 3+ digits and every 4+ letter/digit run."""
    return set(re.findall(r"\d{3,}", value)) | set(re.findall(r"[A-Za-z0-9]{4,}", value))


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_it_redacts_each_kind_of_pii_without_leaving_a_fragment(kind: str) -> None:
    value = PLANTED[kind]
    text = f"Hello, here it is: {value}. Thanks!"
    redacted, found = redact(text)
    assert sum(found.values()) == 1, (redacted, found)
    leaked = [f for f in fragments(value) if f in redacted and f not in text.replace(value, "")]
    assert leaked == [], redacted
    if kind == "email":
        assert "john.doe" not in redacted and "mail.example" not in redacted


def test_it_redacts_passwords_and_url_credentials_but_keeps_the_host() -> None:
    text = (
        f"my password: {PASSWORD} and pwd={PASSWORD}x; "
        f"connect to postgres://{URL_USER}:{URL_PASSWORD}@db.example.com:5432/app"
    )
    redacted, found = redact(text)
    assert PASSWORD[:5] not in redacted and "Tr0ub" not in redacted
    assert URL_PASSWORD not in redacted and f"{URL_USER}:" not in redacted
    assert "postgres://[CREDENTIALS]@db.example.com:5432/app" in redacted
    assert found == {"password": 2, "url_credentials": 1}


def test_it_leaves_numbers_that_are_not_pii() -> None:
    text = (
        "In 2024 we sold 1,250 units; order 4111111111111112 fails Luhn; "
        "meet at 12:30:45; see section 3.2"
    )
    redacted, found = redact(text)
    assert redacted == text
    assert not found


def test_it_redacts_every_message_and_records_the_kinds() -> None:
    rows = [
        conversation(
            "r1",
            f"mail {PLANTED['email']} or call {PLANTED['phone_international']}",
            f"Your card {PLANTED['card_spaced']} is stored.",
            meta={"kept": True},
        ),
        conversation("r2", "nothing personal here"),
    ]
    kept, log = apply(RedactPII(), rows)
    text = json.dumps(kept[0])
    for value in ("john.doe", "7946", "0958", "1111"):
        assert value not in text
    assert kept[0]["meta"] == {"kept": True}
    assert kept[1] is rows[1]
    [event] = log.changed()
    assert (event.id, event.reason) == ("r1", "pii_redacted")
    assert event.detail == {"card": 1, "email": 1, "phone": 1}


def test_it_identifies_known_languages() -> None:
    samples = {
        "en": "Could you explain how photosynthesis works in simple terms?",
        "fr": "Pouvez-vous m'expliquer comment fonctionne la photosynthèse ?",
        "de": "Kannst du mir erklären, wie die Photosynthese funktioniert?",
        "es": "¿Puedes explicarme cómo funciona la fotosíntesis?",
        "ja": "光合成の仕組みを簡単に説明してください。",
        "ru": "Объясни, пожалуйста, как работает фотосинтез.",
    }
    rows = [conversation(lang, text) for lang, text in samples.items()]
    kept, _ = apply(DetectLanguage(), rows)
    assert {r["id"]: r["language"] for r in kept} == {lang: lang for lang in samples}

    kept, log = apply(DetectLanguage(keep=["en", "de"]), rows)
    assert [r["id"] for r in kept] == ["en", "de"]
    assert {e.id: e.detail for e in log.dropped()}["fr"] == {"language": "fr"}


def test_it_tags_offensive_language() -> None:
    rows = [
        conversation("rude", "You are a fucking idiot, shut up."),
        conversation("polite", "Thank you for the lovely recipe, it worked well."),
    ]
    kept, log = apply(TagOffensive(), rows)
    scores = {r["id"]: r for r in kept}
    assert scores["rude"]["offensive"] >= 0.8 and scores["rude"]["tags"] == ["offensive"]
    assert scores["polite"]["offensive"] < 0.5 and "tags" not in scores["polite"]
    assert [e.id for e in log.changed()] == ["rude"]

    kept, log = apply(TagOffensive(drop=True), rows)
    assert [r["id"] for r in kept] == ["polite"]
    assert log.dropped()[0].reason == "offensive"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"id": 1, "messages": []}, "empty"),
        (conversation(1, "   ", "hi"), "empty"),
        (conversation(1, "Explain recursion", ""), "empty"),
        (conversation(1, "?", "What do you mean?"), "too_short"),
        (conversation(1, "Say something", " ".join(["the cat sat"] * 20)), "repetition"),
        (conversation(1, "Say something", "Ok " + "!" * 80), "repetition"),
        (
            conversation(1, "Fix it", "Traceback (most recent call last):\n  File x"),
            "error_marker",
        ),
        (conversation(1, "Hello", "Error: rate limit exceeded, retry later"), "error_marker"),
        (
            conversation(1, "Who are you?", "I am ChatGPT, a model trained by OpenAI."),
            "identity_leak",
        ),
        (conversation(1, "Who made you?", "Anthropic built me."), "identity_leak"),
        (conversation(1, "Write code", "Here:\n```python\nprint(1)"), "cut_off"),
        (conversation(1, "Write a poem", "Roses are red,", finish_reason="length"), "cut_off"),
        (conversation(1, "Write a poem", "Roses are red,", cut_off=True), "cut_off"),
    ],
)
def test_it_drops_low_quality_rows_with_the_reason(row: dict, reason: str) -> None:
    kept, log = apply(QualityFilter(), [row])
    assert kept == []
    assert [e.reason for e in log.dropped()] == [reason]


def test_it_keeps_ordinary_conversations_through_the_quality_filter() -> None:
    rows = [
        conversation(1, "What is 2+2?", "4."),
        conversation(2, "Name a colour", "Blue is a colour; so is red, and so is green."),
        conversation(3, "Who wrote Hamlet?", "William Shakespeare wrote Hamlet around 1600."),
        conversation(4, "Show code", "```python\nprint('hi')\n```\nDone."),
    ]
    kept, log = apply(QualityFilter(), rows)
    assert [r["id"] for r in kept] == [1, 2, 3, 4]
    assert log.dropped() == []


def test_it_runs_steps_in_the_order_given_and_reports_counts() -> None:
    rows = [
        conversation(1, "Email me at jane@example.org please", "Sure thing, I will."),
        conversation(2, "Email me at jane@example.org please", "Sure thing, I will."),
        conversation(3, "?", "Huh?"),
    ]
    kept, log = apply(build_steps(["dedup", "pii", "quality"]), rows)
    assert [r["id"] for r in kept] == [1]
    report = log.report()
    assert [(s["name"], s["rows_in"], s["rows_out"]) for s in report["steps"]] == [
        ("dedup", 3, 2),
        ("pii", 2, 2),
        ("quality", 2, 1),
    ]
    assert report["steps"][0]["dropped"] == {"exact_duplicate": 1}
    assert report["steps"][1]["changed"] == {"pii_redacted": 1}
    assert [d["id"] for d in report["dropped"]] == [2, 3]


def test_it_rejects_unknown_steps_and_parameters() -> None:
    with pytest.raises(ValueError, match="unknown step"):
        build_steps(["normalize", "sparkle"])
    with pytest.raises(ValueError, match="neardup"):
        build_steps(["neardup"], {"neardup": {"colour": "blue"}})


def test_it_runs_the_command_line_end_to_end(tmp_path: Path) -> None:
    rows = [
        conversation("keep", "Comment ça va aujourd'hui, mon ami ?", "Très bien, merci beaucoup !"),
        conversation("dup", "Comment ça va aujourd'hui, mon ami ?", "Très bien, merci beaucoup !"),
        conversation(
            "near",
            "comment ça va aujourd'hui mon ami",
            "Bien, et toi ? Tout va bien ici.",
        ),
        conversation(
            "pii",
            "My card is 4111 1111 1111 1111 and my email bob@example.com",
            "Noted, I will not share it.",
            source="quest",
            votes=[1, 2],
        ),
        conversation("short", "?", "?"),
        conversation("mojibake", "The cafÃ© is open on Sundays?", "Yes, from nine until noon."),
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    output, report_path = tmp_path / "out.jsonl", tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "collection.pipeline",
            "run",
            "--steps",
            "normalize,dedup,neardup,pii,lang,toxicity,quality",
            "--input",
            str(source),
            "--output",
            str(output),
            "--report",
            str(report_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr  # no progress bar when stderr is not a terminal
    kept = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["id"] for r in kept] == ["keep", "pii", "mojibake"]
    by_id = {r["id"]: r for r in kept}
    assert by_id["pii"]["source"] == "quest" and by_id["pii"]["votes"] == [1, 2]
    assert "1111" not in json.dumps(by_id["pii"]) and "bob@" not in json.dumps(by_id["pii"])
    assert by_id["mojibake"]["messages"][0]["content"] == "The café is open on Sundays?"
    assert by_id["keep"]["language"] == "fr" and by_id["pii"]["language"] == "en"
    assert all("offensive" in r for r in kept)

    report = json.loads(report_path.read_text())
    assert [s["name"] for s in report["steps"]] == [
        "normalize",
        "dedup",
        "neardup",
        "pii",
        "lang",
        "toxicity",
        "quality",
    ]
    assert report["steps"][2]["params"]["threshold"] == 0.8
    assert {(d["id"], d["step"], d["reason"]) for d in report["dropped"]} == {
        ("dup", "dedup", "exact_duplicate"),
        ("near", "neardup", "near_duplicate"),
        ("short", "quality", "too_short"),
    }


def test_it_takes_step_parameters_and_reports_bad_input(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps(conversation(1, "Wie geht es dir heute?", "Gut, danke der Nachfrage."))
        + "\n"
        + json.dumps(conversation(2, "How are you doing today?", "Fine, thank you for asking."))
        + "\n"
    )
    output = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "collection.pipeline", "run", "--steps", "lang"]
    done = subprocess.run(
        [*command, "--input", str(source), "--output", str(output), "--param", 'lang.keep=["de"]'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["id"] for line in output.read_text().splitlines()] == [1]

    source.write_text('{"messages": []}\n')
    done = subprocess.run(
        [*command, "--input", str(source), "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "line 1" in done.stderr
