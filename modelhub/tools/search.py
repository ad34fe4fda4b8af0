"""The search tool: BM25 (rank_bm25, offline) over the documents admins load (ToolDocument)."""

from __future__ import annotations

import re
from typing import Any

from django.db import close_old_connections, connection
from rank_bm25 import BM25Plus

from modelhub.tools import Tool, ToolContext, tool_register

MAX_DOCUMENTS = 5000
SNIPPET_CHARS = 600
_WORD = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def search(arguments: dict[str, Any], context: ToolContext) -> str:
    from modelhub.models import ToolDocument

    close_old_connections()
    try:
        rows = list(
            ToolDocument.objects.filter(enabled=True).values_list("title", "text")[:MAX_DOCUMENTS]
        )
    finally:
        connection.close()  # a tool thread holds no connection between calls
    query = _words(arguments["query"])
    if not rows or not query:
        return "No documents found."
    documents = [_words(f"{title} {text}") for title, text in rows]
    # BM25+ rather than Okapi: Okapi's IDF is zero for a word in half of a small collection.
    scores = BM25Plus(documents).get_scores(query)
    wanted = set(query)
    matching = [i for i, words in enumerate(documents) if wanted.intersection(words)]
    ranked = sorted(matching, key=lambda i: -scores[i])[: arguments.get("k", 3)]
    found = [f"{rows[i][0]}: {rows[i][1][:SNIPPET_CHARS]}" for i in ranked]
    return "\n\n".join(found) if found else "No documents found."


SEARCH = tool_register(
    Tool(
        name="search",
        description="Search the reference documents; returns the best matches with their text.",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "maxLength": 300},
                "k": {"type": "integer", "minimum": 1, "maximum": 5},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        function=search,
    )
)
