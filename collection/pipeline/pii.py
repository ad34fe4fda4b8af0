"""PII and secret redaction that leaves no fragment of what it replaces.

Each finding is replaced whole by a placeholder (``[EMAIL]``, ``[PHONE]``...): a placeholder
carries no character of the value. Detectors run in a fixed order so that a wider match is taken
before a narrower one could leave a piece of it behind (a URL's ``user:pass@`` before the email
pattern, which would otherwise take ``pass@host`` and leave ``user:``).

Kinds: ``password`` (the value after "password:", "passwd=", "pwd:", "password is"),
``url_credentials``, ``private_key`` (PEM blocks), ``api_key`` (OpenAI/Anthropic ``sk-``,
Hugging Face ``hf_``, GitHub ``ghp_``/``gho_``/``github_pat_``, AWS ``AKIA``/``ASIA``, Slack
``xox?-``, Google ``AIza``), ``jwt``, ``email``, ``iban`` (python-stdnum checksum), ``card``
(13-19 digits passing the Luhn check), ``ip`` (IPv4 and IPv6, validated by ``ipaddress``),
``phone`` (``phonenumbers``: international numbers anywhere, national ones for ``phone_region``),
``secret`` (the value after "api_key=", "token:", "secret=" and friends; long hex; long base64
mixing upper case, lower case and digits).
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn

from .core import Log, Row, map_text

_VALUE = r"(\"[^\"\n]*\"|'[^'\n]*'|\S+)"
_PASSWORD = re.compile(r"(?i)\b(password|passwd|passphrase|pwd)(\s*[:=]\s*|\s+is\s+)" + _VALUE)
_NAMED_SECRET = re.compile(
    r"(?i)\b((?:api|access|auth|secret|private)[_-]?(?:key|token|secret)|secret|token)(\s*[:=]\s*)"
    + _VALUE
)
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@]+@")
_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S
)
_API_KEY = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{16,}"
    r"|hf_[A-Za-z0-9]{20,}"
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{30,})"
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+")
_EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?!\w)")
_IPV4 = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.]*\d)"
)
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![\w:])")
_HEX_SECRET = re.compile(r"\b[0-9a-fA-F]{32,}\b")
_B64_SECRET = re.compile(r"(?<![\w+/=-])[A-Za-z0-9+/_-]{32,}={0,2}(?![\w+/=-])")
_PHONE_HINT = re.compile(r"\d(?:[\s().\-]*\d){6}")  # seven digits, possibly spaced

PLACEHOLDER = {
    "password": "[PASSWORD]",
    "url_credentials": "[CREDENTIALS]@",
    "private_key": "[PRIVATE_KEY]",
    "api_key": "[API_KEY]",
    "jwt": "[JWT]",
    "email": "[EMAIL]",
    "iban": "[IBAN]",
    "card": "[CARD]",
    "ip": "[IP]",
    "phone": "[PHONE]",
    "secret": "[SECRET]",
}
KINDS = tuple(PLACEHOLDER)


def _iban_sub(match: re.Match[str]) -> str | None:
    # The pattern may run on into a following capitalised word: try shorter spans down to the
    # shortest IBAN (15 characters, Norway) before giving up.
    text = match.group(0)
    for end in range(len(text), 14, -1):
        candidate = text[:end]
        if candidate[-1] != " " and stdnum_iban.is_valid(candidate):
            return PLACEHOLDER["iban"] + text[end:]
    return None


def _card_sub(match: re.Match[str]) -> str | None:
    digits = re.sub(r"\D", "", match.group(0))
    if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
        return PLACEHOLDER["card"]
    return None


def _ipv6_sub(match: re.Match[str]) -> str | None:
    text = match.group(0)
    if text.count(":") < 2:
        return None
    try:
        ipaddress.IPv6Address(text.split("%")[0])
    except ValueError:
        return None
    return PLACEHOLDER["ip"]


def _b64_sub(match: re.Match[str]) -> str | None:
    text = match.group(0)
    if (
        any(c.isdigit() for c in text)
        and any(c.isupper() for c in text)
        and any(c.islower() for c in text)
    ):
        return PLACEHOLDER["secret"]
    return None


Substitute = Callable[[re.Match[str]], "str | None"]
Gate = Callable[["_Text"], bool]


class _Text:
    """Cheap facts about a text that let most detectors skip their regex scan (Python's ``re``
    spends 20-70 us on a 500-character text even without a match; substring tests cost ~1 us)."""

    __slots__ = ("digits", "longest", "lower", "text")
    text: str
    lower: str
    digits: bool
    longest: int

    def __init__(self, text: str) -> None:
        self.text = text
        self.lower = text.lower()
        self.digits = _DIGIT.search(text) is not None
        self.longest = max(map(len, text.split()), default=0)


_DIGIT = re.compile(r"\d")
_KEY_PREFIXES = (
    "sk-",
    "hf_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "AKIA",
    "ASIA",
    "xox",
    "AIza",
)

# (kind, gate, pattern, substitute or None for the kind's placeholder), in the order they run.
_DETECTORS: list[tuple[str, Gate, re.Pattern[str], Substitute | None]] = [
    ("private_key", lambda t: "PRIVATE KEY" in t.text, _PRIVATE_KEY, None),
    (
        "url_credentials",
        lambda t: "://" in t.text and "@" in t.text,
        _URL_CREDENTIALS,
        lambda m: m.group(1) + PLACEHOLDER["url_credentials"],
    ),
    (
        "password",
        lambda t: "pass" in t.lower or "pwd" in t.lower,
        _PASSWORD,
        lambda m: m.group(1) + m.group(2) + PLACEHOLDER["password"],
    ),
    (
        "secret",
        lambda t: (
            ("key" in t.lower or "token" in t.lower or "secret" in t.lower)
            and (":" in t.text or "=" in t.text)
        ),
        _NAMED_SECRET,
        lambda m: m.group(1) + m.group(2) + PLACEHOLDER["secret"],
    ),
    ("jwt", lambda t: "eyJ" in t.text, _JWT, None),
    ("api_key", lambda t: any(p in t.text for p in _KEY_PREFIXES), _API_KEY, None),
    ("email", lambda t: "@" in t.text, _EMAIL, None),
    # Long secrets before the number detectors, which would otherwise take digit runs out of a
    # hex or base64 string and leave the rest.
    ("secret", lambda t: t.longest >= 32, _HEX_SECRET, None),
    ("secret", lambda t: t.longest >= 32, _B64_SECRET, _b64_sub),
    ("iban", lambda t: t.digits and t.longest >= 4, _IBAN, _iban_sub),
    ("card", lambda t: t.digits, _CARD, _card_sub),
    ("ip", lambda t: t.digits and "." in t.text, _IPV4, None),
    ("ip", lambda t: t.text.count(":") >= 2, _IPV6, _ipv6_sub),
]


def redact(text: str, *, phone_region: str = "US") -> tuple[str, Counter[str]]:
    """``text`` with every finding replaced, and how many of each kind were found."""
    found: Counter[str] = Counter()
    facts = _Text(text)
    for kind, gate, pattern, substitute in _DETECTORS:
        if not gate(facts):
            continue

        def replace(match: re.Match[str], kind: str = kind, substitute: Any = substitute) -> str:
            new = substitute(match) if substitute else PLACEHOLDER[kind]
            if new is None:
                return match.group(0)
            found[kind] += 1
            return str(new)

        redacted = pattern.sub(replace, facts.text)
        if redacted != facts.text:
            facts = _Text(redacted)
    if facts.digits and _PHONE_HINT.search(facts.text):
        return _redact_phones(facts.text, phone_region, found), found
    return facts.text, found


def _redact_phones(text: str, region: str, found: Counter[str]) -> str:
    spans = [
        (m.start, m.end)
        for m in phonenumbers.PhoneNumberMatcher(text, region, phonenumbers.Leniency.POSSIBLE)
    ]
    for start, end in reversed(spans):
        text = text[:start] + PLACEHOLDER["phone"] + text[end:]
        found["phone"] += 1
    return text


class RedactPII:
    """Replaces PII and secrets in every message; a row is changed, never dropped."""

    name = "pii"

    def __init__(self, *, phone_region: str = "US") -> None:
        self.phone_region = phone_region

    def params(self) -> dict[str, Any]:
        return {
            "phone_region": self.phone_region,
            "kinds": list(KINDS),
            "phonenumbers": phonenumbers.__version__,
        }

    def __call__(self, rows: Iterable[Row], log: Log) -> Iterator[Row]:
        for row in rows:
            found: Counter[str] = Counter()
            redacted = map_text(row, partial(self._fix, found=found))
            if redacted is None:
                yield row
            else:
                log.change(self.name, row, "pii_redacted", **dict(sorted(found.items())))
                yield redacted

    def _fix(self, text: str, *, found: Counter[str]) -> str:
        redacted, kinds = redact(text, phone_region=self.phone_region)
        found.update(kinds)
        return redacted
