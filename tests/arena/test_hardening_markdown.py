"""Math in answers is found in time linear in the answer's length: a hostile answer of unclosed
openings is rendered as fast as any other, and math is found as before."""

from __future__ import annotations

import re

import pytest

from arena.rendering import math_spans, render_markdown

# The expression the renderer used before: from every `\[` without a closing `\]` it scanned to
# the end of the text.
QUADRATIC = re.compile(
    r"(\$\$[^$]+\$\$|\\\[.+?\\\]|\\\(.+?\\\)|(?<![\\$\w])\$[^$\n]+\$(?!\w))", re.S
)


@pytest.mark.timeout(20)
def test_it_renders_an_answer_of_unclosed_math_openings_in_linear_time() -> None:
    # 100,000 openings: the quadratic scan took about 2 minutes on these (0.8 s at 8,000).
    for opening in ("\\[ ", "\\( "):
        assert math_spans(opening * 100_000) == []
    html = render_markdown("\\[ " * 20_000)
    assert html.count("[") == 20_000 and "math" not in html  # each an escaped bracket


def test_it_finds_math_as_before() -> None:
    samples = [
        "Euler: $e^{i\\pi} + 1 = 0$, and $$\\sum_n n$$ in display.",
        "\\[ x^2 \\] then \\( y \\) and \\[ unclosed",
        "costs $5 and $6, not math; a$b$ neither; $x$y neither; \\$x$ neither",
        "$$$x$$ and $$\n$$ and $ \n $ and \\(\n\\) and \\[\\]\\]",
    ]
    for text in samples:
        assert math_spans(text) == [m.span() for m in QUADRATIC.finditer(text)], text
    assert '<span class="math math-display"> x^2 </span>' in render_markdown(samples[1])
