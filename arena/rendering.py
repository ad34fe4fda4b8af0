"""Answers as sanitised Markdown. Raw HTML in an answer is escaped by the parser, and the output
is cleaned again by nh3 with an allow-list, so script, on* attributes and javascript: links never
survive. Math is left as marked spans that the page typesets only when present."""

from __future__ import annotations

import re

import nh3
from markdown_it import MarkdownIt

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True}).enable(
    ["table", "strikethrough"]
)
ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td", "span",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "span": {"class"},
    "th": {"style"},
    "td": {"style"},
    "ol": {"start"},
}
# Where math may start. The rest of each expression is found with str.find, once per opening: a
# lazy regex from `\[` to `\]` scans to the end of the text from every `\[` that has no `\]`,
# quadratic in the answer's length (8,000 repetitions of `\[ ` took 0.8 s per render).
MATH_OPEN_RE = re.compile(r"\$\$|\\\[|\\\(|(?<![\\$\w])\$")
_CLOSERS = {"\\[": "\\]", "\\(": "\\)"}
_INLINE_END_RE = re.compile(r"[$\n]")
_WORD_RE = re.compile(r"\w")
CODE_SPLIT_RE = re.compile(r"(```.*?(?:```|\Z)|`[^`\n]*`)", re.S)


def math_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each math expression, left to right, in linear time: `$$...$$` (no `$`
    inside), `\\[...\\]` and `\\(...\\)` (anything inside, newlines too), and inline `$...$` on one
    line, not after a backslash, `$` or word character and not before a word character. Every
    body is at least one character."""
    spans: list[tuple[int, int]] = []
    missing: set[str] = set()  # closers absent from the rest of the text: no need to look again
    pos = 0
    while (opening := MATH_OPEN_RE.search(text, pos)) is not None:
        start, token = opening.start(), opening.group(0)
        end = -1
        if token in _CLOSERS:
            closer = _CLOSERS[token]
            if closer not in missing:
                found = text.find(closer, start + 3)
                if found < 0:
                    missing.add(closer)
                else:
                    end = found + 2
        elif token == "$$":
            found = text.find("$", start + 2)
            if found > start + 2 and text.startswith("$$", found):
                end = found + 2
        else:
            stop = _INLINE_END_RE.search(text, start + 1)
            found = stop.start() if stop is not None else -1
            after = text[found + 1 : found + 2]
            if found > start + 1 and text[found] == "$" and not _WORD_RE.match(after):
                end = found + 1
        if end < 0:
            pos = start + 1
        else:
            spans.append((start, end))
            pos = end
    return spans


def _protect_math(text: str) -> tuple[str, list[str]]:
    """Replace math outside code by placeholders the Markdown parser leaves alone."""
    found: list[str] = []
    parts = CODE_SPLIT_RE.split(text)
    for i in range(0, len(parts), 2):
        part, out, last = parts[i], [], 0
        for start, end in math_spans(part):
            found.append(part[start:end])
            out += [part[last:start], f"\ue000MATH{len(found) - 1}\ue001"]
            last = end
        parts[i] = "".join(out) + part[last:]
    return "".join(parts), found


def render_markdown(text: str) -> str:
    protected, maths = _protect_math(text or "")
    html = _md.render(protected)
    for i, expression in enumerate(maths):
        display = expression.startswith(("$$", "\\["))
        body = expression[2:-2] if display or expression.startswith("\\(") else expression[1:-1]
        css = "math math-display" if display else "math math-inline"
        escaped = body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        html = html.replace(f"\ue000MATH{i}\ue001", f'<span class="{css}">{escaped}</span>')
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        filter_style_properties={"text-align"},
    )
