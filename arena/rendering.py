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
MATH_RE = re.compile(r"(\$\$[^$]+\$\$|\\\[.+?\\\]|\\\(.+?\\\)|(?<![\\$\w])\$[^$\n]+\$(?!\w))", re.S)
CODE_SPLIT_RE = re.compile(r"(```.*?(?:```|\Z)|`[^`\n]*`)", re.S)


def _protect_math(text: str) -> tuple[str, list[str]]:
    """Replace math outside code by placeholders the Markdown parser leaves alone."""
    found: list[str] = []

    def stash(match: re.Match[str]) -> str:
        found.append(match.group(0))
        return f"\ue000MATH{len(found) - 1}\ue001"

    parts = CODE_SPLIT_RE.split(text)
    for i in range(0, len(parts), 2):
        parts[i] = MATH_RE.sub(stash, parts[i])
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
