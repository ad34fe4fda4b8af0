"""Exact dedup, near-dedup and down-sampling of over-frequent prompts.

All three keep the first row of a group (input order), so a re-run on the same input keeps the
same rows, and say in the log which kept row a dropped one repeats.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import random
import re
import tempfile
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import orjson
from rensa import RMinHash, RMinHashLSH

from .core import Log, Row, message_text, role_text

_WORD = re.compile(r"\w+")
# One drop decided by a global step: the row's index in input order, the reason, the detail.
Decision = tuple[int, str, dict[str, Any]]


def _conversation_key(row: Row) -> bytes:
    """Digest of the messages (role and text), ignoring ids and metadata."""
    h = hashlib.blake2b(digest_size=16)
    for message in row.get("messages") or ():
        h.update(str(message.get("role")).encode())
        h.update(b"\x00")
        h.update(" ".join(message_text(message).split()).encode())
        h.update(b"\x01")
    return h.digest()


class ExactDedup:
    """Drops a row whose messages repeat an earlier row's (whitespace differences ignored)."""

    name = "dedup"

    def params(self) -> dict[str, Any]:
        return {"key": "messages, whitespace collapsed"}

    def __call__(self, rows: Iterable[Row], log: Log) -> Iterator[Row]:
        first: dict[bytes, Any] = {}
        for row in rows:
            key = _conversation_key(row)
            if key in first:
                log.drop(self.name, row, "exact_duplicate", of=first[key])
                continue
            first[key] = row.get("id")
            yield row

    # The sharded form (collection.pipeline.shards): keys per shard in parallel, then one pass in
    # input order deciding what to drop, with the same rule as ``__call__``.
    def keys(self, rows: Sequence[Row]) -> list[Any]:
        return [_conversation_key(row).hex() for row in rows]

    def decide(self, items: Callable[[], Iterable[tuple[Any, Any]]]) -> Iterator[Decision]:
        first: dict[str, Any] = {}
        for index, (row_id, key) in enumerate(items()):
            if key in first:
                yield index, "exact_duplicate", {"of": first[key]}
                continue
            first[key] = row_id


def shingles(text: str, n: int = 3) -> list[str]:
    """Lower-cased word ``n``-grams; a text of fewer than ``n`` words is one shingle of all."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return [" ".join(words)] if words else []
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    sa, sb = set(a), set(b)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


class NearDedup:
    """Drops a row whose user turns are a near-copy of an earlier kept row's.

    MinHash (rensa, ``num_perm`` permutations) over word ``ngram``-shingles of the user turns;
    LSH with ``bands`` bands finds candidates (for 126 permutations in 21 bands of 6 rows, a pair
    at Jaccard 0.8 becomes a candidate with probability 0.998, one at 0.5 with 0.28); each
    candidate is then checked on the exact shingle sets (as 32-bit hashes), so a row is dropped
    only when its Jaccard similarity to a kept row is at least ``threshold``. Memory grows with
    the kept rows: rensa's index takes about 1 KB a row (21 bands), the shingle hashes 4 bytes
    a shingle.
    """

    name = "neardup"

    def __init__(
        self,
        *,
        threshold: float = 0.8,
        num_perm: int = 126,
        bands: int = 21,
        ngram: int = 3,
        seed: int = 42,
        batch: int = 2048,
    ) -> None:
        if not 0 < threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        if num_perm % bands:
            raise ValueError("num_perm must be a multiple of bands (rensa's LSH splits it evenly)")
        self.threshold = threshold
        self.num_perm = num_perm
        self.bands = bands
        self.ngram = ngram
        self.seed = seed
        self.batch = batch

    def params(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "num_perm": self.num_perm,
            "bands": self.bands,
            "ngram": self.ngram,
            "seed": self.seed,
            "text": "user turns",
        }

    def __call__(self, rows: Iterable[Row], log: Log) -> Iterator[Row]:
        lsh = RMinHashLSH(self.threshold, self.num_perm, self.bands)
        kept = _KeptShingles()
        pending: list[Row] = []
        for row in rows:
            pending.append(row)
            if len(pending) >= self.batch:
                yield from self._batch(pending, lsh, kept, log)
                pending = []
        yield from self._batch(pending, lsh, kept, log)

    def _signatures(self, rows: Sequence[Row]) -> list[tuple[RMinHash, np.ndarray] | None]:
        """Each row's MinHash and sorted unique shingle hashes (None: no user text to compare)."""
        token_sets = [shingles(role_text(row, "user"), self.ngram) for row in rows]
        minhashes = RMinHash.from_token_sets(token_sets, self.num_perm, self.seed)
        hashed = RMinHash.hash_token_sets(token_sets)
        out: list[tuple[RMinHash, np.ndarray] | None] = []
        for tokens, minhash, token_hashes in zip(token_sets, minhashes, hashed, strict=True):
            if not tokens:  # nothing to compare: the quality step judges empty prompts
                out.append(None)
                continue
            mine = np.unique(np.asarray(token_hashes, dtype=np.uint64).astype(np.uint32))
            out.append((minhash, mine))
        return out

    def _nearest(
        self, lsh: RMinHashLSH, kept: _KeptShingles, minhash: RMinHash, mine: np.ndarray
    ) -> tuple[float, int]:
        """The best Jaccard similarity to a kept row among the LSH candidates, and that row."""
        best, best_key = 0.0, -1
        for key in lsh.query(minhash):
            other = kept.shingles(key)
            common = np.intersect1d(mine, other, assume_unique=True).size
            score = common / (mine.size + other.size - common)
            if score > best:
                best, best_key = score, key
        return best, best_key

    def _batch(
        self,
        rows: list[Row],
        lsh: RMinHashLSH,
        kept: _KeptShingles,
        log: Log,
    ) -> Iterator[Row]:
        if not rows:
            return
        for row, signature in zip(rows, self._signatures(rows), strict=True):
            if signature is None:
                yield row
                continue
            minhash, mine = signature
            best, best_key = self._nearest(lsh, kept, minhash, mine)
            if best >= self.threshold:
                log.drop(
                    self.name, row, "near_duplicate", of=kept.ids[best_key], jaccard=round(best, 3)
                )
                continue
            lsh.insert(kept.add(row.get("id"), mine), minhash)
            yield row

    # The sharded form: signatures per shard in parallel (the costly part), serialised as JSON
    # (the MinHash's own state bytes and the shingle hashes, base64), then one global LSH pass.
    def keys(self, rows: Sequence[Row]) -> list[Any]:
        out: list[Any] = []
        for start in range(0, len(rows), self.batch):
            for signature in self._signatures(rows[start : start + self.batch]):
                if signature is None:
                    out.append(None)
                    continue
                minhash, mine = signature
                out.append(
                    [
                        base64.b64encode(minhash.__getstate__()).decode(),
                        base64.b64encode(mine.astype("<u4").tobytes()).decode(),
                    ]
                )
        return out

    def decide(self, items: Callable[[], Iterable[tuple[Any, Any]]]) -> Iterator[Decision]:
        lsh = RMinHashLSH(self.threshold, self.num_perm, self.bands)
        kept = _KeptShingles()
        for index, (row_id, key) in enumerate(items()):
            if key is None:
                continue
            minhash = RMinHash(self.num_perm, self.seed)
            minhash.__setstate__(base64.b64decode(key[0]))
            mine = np.frombuffer(base64.b64decode(key[1]), dtype="<u4").astype(np.uint32)
            best, best_key = self._nearest(lsh, kept, minhash, mine)
            if best >= self.threshold:
                yield index, "near_duplicate", {"of": kept.ids[best_key], "jaccard": round(best, 3)}
                continue
            lsh.insert(kept.add(row_id, mine), minhash)


class _KeptShingles:
    """Each kept row's id and sorted shingle hashes, in one flat buffer (a numpy array per row
    would add ~100 bytes of object overhead to every row)."""

    def __init__(self) -> None:
        self.ids: list[Any] = []
        self._flat = array("I")
        self._starts = array("Q", [0])

    def add(self, row_id: Any, hashes: np.ndarray) -> int:
        self.ids.append(row_id)
        self._flat.frombytes(hashes.astype(np.uint32).tobytes())
        self._starts.append(len(self._flat))
        return len(self.ids) - 1

    def shingles(self, key: int) -> np.ndarray:
        start, end = self._starts[key], self._starts[key + 1]
        return np.array(self._flat[start:end], dtype=np.uint32)


def prompt_key(row: Row) -> str:
    """The first user turn, case-folded with whitespace collapsed."""
    for message in row.get("messages") or ():
        if message.get("role") == "user":
            return " ".join(message_text(message).casefold().split())
    return ""


class Downsample:
    """Caps how many rows share one prompt (the first user turn) at the ``quantile`` of the
    per-prompt frequencies (99.9th percentile by default), keeping a seeded uniform sample of each
    over-frequent prompt's rows, in input order.

    Needs every row's prompt before deciding, so rows are spooled to a temporary file (not held in
    memory) between the counting pass and the choosing pass.
    """

    name = "downsample"

    def __init__(self, *, quantile: float = 0.999, cap: int | None = None, seed: int = 0) -> None:
        self.quantile = quantile
        self.cap = cap
        self.seed = seed

    def params(self) -> dict[str, Any]:
        return {"quantile": self.quantile, "cap": self.cap, "seed": self.seed}

    def __call__(self, rows: Iterable[Row], log: Log) -> Iterator[Row]:
        counts: Counter[bytes] = Counter()
        with tempfile.TemporaryFile(dir=os.environ.get("TMPDIR")) as spool:
            for row in rows:
                key = hashlib.blake2b(prompt_key(row).encode(), digest_size=8).digest()
                counts[key] += 1
                spool.write(orjson.dumps(row))
                spool.write(b"\n")
            if not counts:
                return
            cap, chosen = self._chosen(counts)
            seen: defaultdict[bytes, int] = defaultdict(int)
            spool.seek(0)
            for line in spool:
                row = orjson.loads(line)
                key = hashlib.blake2b(prompt_key(row).encode(), digest_size=8).digest()
                index = seen[key]
                seen[key] += 1
                if key in chosen and index not in chosen[key]:
                    log.drop(self.name, row, "over_frequent_prompt", cap=cap, count=counts[key])
                    continue
                yield row

    def _cap(self, counts: Counter[bytes]) -> int:
        return self.cap or max(
            1, math.ceil(float(np.quantile(np.fromiter(counts.values(), int), self.quantile)))
        )

    def _chosen(self, counts: Counter[bytes]) -> tuple[int, dict[bytes, set[int]]]:
        """The cap, and for each over-frequent prompt which of its occurrences (by position) stay:
        a sample seeded by the prompt and the step's seed, so every run keeps the same ones."""
        cap = self._cap(counts)
        chosen: dict[bytes, set[int]] = {}
        for key, n in counts.items():
            if n > cap:
                rng = random.Random(int.from_bytes(key, "big") ^ self.seed)
                chosen[key] = set(rng.sample(range(n), cap))
        return cap, chosen

    def keys(self, rows: Sequence[Row]) -> list[Any]:
        return [
            hashlib.blake2b(prompt_key(row).encode(), digest_size=8).hexdigest() for row in rows
        ]

    def decide(self, items: Callable[[], Iterable[tuple[Any, Any]]]) -> Iterator[Decision]:
        counts: Counter[bytes] = Counter(bytes.fromhex(key) for _, key in items())
        if not counts:
            return
        cap, chosen = self._chosen(counts)
        seen: defaultdict[bytes, int] = defaultdict(int)
        for index, (_, hex_key) in enumerate(items()):
            key = bytes.fromhex(hex_key)
            nth = seen[key]
            seen[key] += 1
            if key in chosen and nth not in chosen[key]:
                yield index, "over_frequent_prompt", {"cap": cap, "count": counts[key]}
