"""Model loading and the batching scheduler behind the local engine.

One ``Scheduler`` thread per loaded model runs decoding steps for every active request together:
new requests are prefilled one at a time between steps (their KV cache computed alone), then join
a left-padded batch whose KV cache is kept across steps and only re-laid-out when a request joins or
leaves. So N concurrent streams cost about one forward pass per token step, not N.

Threading contract: ``Scheduler.submit`` and ``Sequence.cancel`` may be called from any thread
(the asyncio server thread); everything else on a Scheduler runs on its own thread. Results leave
through the ``emit`` callback each Sequence carries, called on the scheduler thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    DynamicCache,
    GenerationConfig,
)
from transformers.cache_utils import DynamicLayer

from modelhub.engine.metrics import Metrics
from modelhub.engine.protocol import RequestError, SamplingParams

log = logging.getLogger(__name__)

MAX_BATCH = 64
DEFAULT_MAX_TOKENS = 256


@dataclass
class Event:
    """What the scheduler reports for a Sequence: a text delta, or the end (``finish`` set)."""

    text: str = ""
    finish: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


@dataclass(eq=False)
class Sequence:
    """One request being decoded. ``emit`` is called on the scheduler thread."""

    prompt_ids: list[int]
    sampling: SamplingParams
    max_tokens: int
    emit: Callable[[Event], None]
    pixel_values: torch.Tensor | None = None
    generated: list[int] = field(default_factory=list)
    text: str = ""  # decoded so far (stop sequences included, until cut)
    emitted_chars: int = 0
    # Incremental detokenisation: generated[prefix_offset:read_offset] is already in ``text``.
    prefix_offset: int = 0
    read_offset: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)
    generator: torch.Generator = field(default_factory=torch.Generator)
    finished: bool = False

    def cancel(self) -> None:
        """Stop decoding this request at the next step (client went away)."""
        self.cancelled.set()


class BufferLayer(DynamicLayer):
    """A DynamicLayer that writes new keys/values into preallocated room instead of concatenating.

    DynamicLayer copies the whole cache on every step (torch.cat); with a batch of 32 that copy was
    the largest cost of a decoding step. ``keys``/``values`` stay views of the filled part, so the
    rest of transformers (masks, seq length) sees an ordinary dynamic layer.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int = 64) -> None:
        super().__init__()
        self.device = keys.device
        self.is_initialized = True
        self._len = keys.shape[2]
        self._k = self._alloc(keys, self._len + room)
        self._v = self._alloc(values, self._len + room)
        self._views()

    @staticmethod
    def _alloc(data: torch.Tensor, capacity: int) -> torch.Tensor:
        buf = data.new_empty(data.shape[0], data.shape[1], capacity, data.shape[3])
        buf[:, :, : data.shape[2]] = data
        return buf

    def _views(self) -> None:
        self.keys = self._k[:, :, : self._len]
        self.values = self._v[:, :, : self._len]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = key_states.shape[2]
        if self._len + n > self._k.shape[2]:
            capacity = max(2 * self._k.shape[2], self._len + n)
            self._k = self._alloc(self._k[:, :, : self._len], capacity)
            self._v = self._alloc(self._v[:, :, : self._len], capacity)
        self._k[:, :, self._len : self._len + n] = key_states
        self._v[:, :, self._len : self._len + n] = value_states
        self._len += n
        self._views()
        assert self.keys is not None and self.values is not None
        return self.keys, self.values


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class LoadedModel:
    """A model directory loaded for serving: weights, tokenizer (and processor for vision)."""

    def __init__(self, name: str, path: Path, device: torch.device) -> None:
        self.name = name
        self.path = path
        self.device = device
        config = json.loads((path / "config.json").read_text())
        self.is_vision = "vision_config" in config
        self.processor: Any = None
        if self.is_vision:
            self.processor = AutoProcessor.from_pretrained(path)
            self.tokenizer: Any = self.processor.tokenizer
            model: Any = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        self.model = model.to(device).eval()
        text_cfg = config.get("text_config", config)
        self.max_len = int(text_cfg.get("max_position_embeddings", 2048))
        gen = (
            GenerationConfig.from_pretrained(path)
            if (path / "generation_config.json").exists()
            else None
        )
        eos = (gen.eos_token_id if gen else None) or self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.default_max_tokens = min(
            DEFAULT_MAX_TOKENS, (gen.max_new_tokens if gen and gen.max_new_tokens else 10**9)
        )

    def encode(
        self,
        messages: list[dict[str, Any]],
        images: list[Image.Image],
        tools: list[dict[str, Any]] | None = None,
        reply_prefix: str = "",
    ) -> tuple[list[int], torch.Tensor | None]:
        """Prompt token ids (image placeholders expanded) and pixel values, via the chat template
        (which renders ``tools``); ``reply_prefix`` is appended as the start of the reply."""
        if images and not self.is_vision:
            raise RequestError(f"model '{self.name}' does not accept images", param="messages")
        prompt = self.tokenizer.apply_chat_template(
            messages, tools=tools or None, add_generation_prompt=True, tokenize=False
        )
        prompt += reply_prefix
        if self.is_vision and images:
            enc = self.processor(images=images, text=prompt, return_tensors="pt")
            return enc["input_ids"][0].tolist(), enc["pixel_values"]
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return list(ids), None


def _sample_batch(logits: torch.Tensor, seqs: list[Sequence]) -> list[int]:
    """Next token for each row: greedy at temperature 0, else top-p sampling by inverse CDF.

    Vectorised over the batch; randomness comes from each request's own generator (one uniform per
    row), so a request's seed fixes its sample whatever else shares the batch.
    """
    logits = logits.float()
    tokens = torch.argmax(logits, dim=-1).tolist()
    rows = [i for i, s in enumerate(seqs) if s.sampling.temperature > 0.0]
    if not rows:
        return [int(t) for t in tokens]
    index = torch.tensor(rows, device=logits.device)
    temps = torch.tensor([seqs[i].sampling.temperature for i in rows], device=logits.device)
    probs = torch.softmax(logits[index] / temps[:, None], dim=-1)
    top_p = torch.tensor([seqs[i].sampling.top_p for i in rows], device=logits.device)
    if bool((top_p < 1.0).any()):
        probs, order = torch.sort(probs, dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
        probs = probs.masked_fill(torch.cumsum(probs, -1) - probs >= top_p[:, None], 0.0)
    else:
        order = None
    cumulative = torch.cumsum(probs, dim=-1)
    uniforms = torch.cat([torch.rand(1, generator=seqs[i].generator) for i in rows])
    targets = (uniforms.to(logits.device).clamp_min(1e-7) * cumulative[:, -1]).unsqueeze(1)
    picked = torch.searchsorted(cumulative, targets).clamp_max(probs.shape[-1] - 1)
    if order is not None:
        picked = order.gather(1, picked)
    for row, token in zip(rows, picked[:, 0].tolist(), strict=True):
        tokens[row] = token
    return [int(t) for t in tokens]


def _held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters might start a stop sequence and must not be emitted yet."""
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    return hold


KV = list[tuple[torch.Tensor, torch.Tensor]]


def _layers(cache: Any) -> KV:
    """(keys, values) of every layer of a DynamicCache (full-attention layers only)."""
    out: KV = []
    for layer in cache.layers:
        assert isinstance(layer, DynamicLayer) and layer.keys is not None
        assert layer.values is not None
        out.append((layer.keys, layer.values))
    return out


class Scheduler:
    """The decoding loop of one model (see module docstring)."""

    def __init__(self, lm: LoadedModel, metrics: Metrics, max_batch: int = MAX_BATCH) -> None:
        self.lm = lm
        self.metrics = metrics
        self.max_batch = max_batch
        self.pending: queue.Queue[Sequence] = queue.Queue()
        self.active: list[Sequence] = []
        # Batched KV cache (BufferLayers, left-padded to a common length); lens[b] is how many of
        # its positions are real for row b. Re-laid-out only when a request joins or leaves.
        self._cache: DynamicCache | None = None
        self._lens: list[int] = []
        self._text_config = lm.model.config.get_text_config()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"engine-{lm.name}", daemon=True)
        self._thread.start()

    def submit(self, seq: Sequence) -> None:
        seed = seq.sampling.seed
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little") >> 1
        seq.generator.manual_seed(seed)
        self.metrics.waiting(self.lm.name, +1)
        self.pending.put(seq)

    def shutdown(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    # -- scheduler thread -------------------------------------------------------------------

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while not self._stop.is_set():
            try:
                self._admit(block=not self.active)
                self._drop_finished()
                if self.active:
                    self._step()
                    self._drop_finished()
            except Exception as exc:  # a bug must fail requests, not kill the model's thread
                log.exception("engine step failed for %s", self.lm.name)
                for seq in self.active:
                    self._finish(seq, "error", error=str(exc))
                self.active, self._cache, self._lens = [], None, []

    def _admit(self, block: bool) -> None:
        while len(self.active) < self.max_batch:
            try:
                seq = self.pending.get(timeout=0.1) if block else self.pending.get_nowait()
            except queue.Empty:
                return
            block = False
            self.metrics.waiting(self.lm.name, -1)
            if seq.cancelled.is_set():
                self._finish(seq, "cancelled")
                continue
            self._prefill(seq)

    def _prefill(self, seq: Sequence) -> None:
        device = self.lm.device
        ids = torch.tensor([seq.prompt_ids], device=device)
        kwargs: dict[str, Any] = {}
        if seq.pixel_values is not None:
            kwargs["pixel_values"] = seq.pixel_values.to(device)
        out = self.lm.model(input_ids=ids, use_cache=True, **kwargs)
        row = _layers(out.past_key_values)
        rows = [*self._split(), row]
        self.active.append(seq)
        self._lens.append(len(seq.prompt_ids))
        self._cache = self._stack(rows)
        self._accept(seq, _sample_batch(out.logits[:, -1], [seq])[0])

    def _split(self) -> list[KV]:
        """Each active row's real (unpadded) keys and values."""
        if self._cache is None:
            return []
        layers = _layers(self._cache)
        total = layers[0][0].shape[2]
        return [
            [(k[b : b + 1, :, total - n :], v[b : b + 1, :, total - n :]) for k, v in layers]
            for b, n in enumerate(self._lens)
        ]

    def _stack(self, rows: list[KV]) -> DynamicCache | None:
        """One left-padded batched cache from per-row caches (lengths in self._lens)."""
        if not rows:
            return None
        longest = max(self._lens)
        layers = []
        for layer in range(len(rows[0])):
            keys, values = [], []
            for row, n in zip(rows, self._lens, strict=True):
                k, v = row[layer]
                if longest > n:
                    zeros = k.new_zeros(1, k.shape[1], longest - n, k.shape[3])
                    k, v = torch.cat([zeros, k], 2), torch.cat([zeros, v], 2)
                keys.append(k)
                values.append(v)
            layers.append((torch.cat(keys), torch.cat(values)))
        cache = DynamicCache(ddp_cache_data=layers, config=self._text_config)
        cache.layers = [BufferLayer(k, v) for k, v in layers]
        return cache

    def _step(self) -> None:
        """One decoding step for every active request."""
        assert self._cache is not None
        device = self.lm.device
        total = self._cache.get_seq_length()
        lens = torch.tensor(self._lens, device=device)
        last = torch.tensor([[seq.generated[-1]] for seq in self.active], device=device)
        # Row b attends to its last lens[b] cached positions and to the new token.
        mask = (torch.arange(total + 1, device=device)[None, :] >= (total - lens)[:, None]).long()
        out = self.lm.model(
            input_ids=last,
            attention_mask=mask,
            position_ids=lens[:, None],
            cache=self._cache,
            use_cache=True,
        )
        self._lens = [n + 1 for n in self._lens]
        self.metrics.step(self.lm.name, len(self.active))
        tokens = _sample_batch(out.logits[:, -1], self.active)
        for seq, token in zip(self.active, tokens, strict=True):
            self._accept(seq, token)

    def _accept(self, seq: Sequence, token: int) -> None:
        """Take ``token`` for ``seq``, stream new text, and finish it when it is done."""
        if seq.cancelled.is_set():
            self._finish(seq, "cancelled")
            return
        if token in self.lm.eos_ids and not seq.sampling.ignore_eos:
            self._flush(seq, final=True)
            self._finish(seq, "stop")
            return
        seq.generated.append(token)
        self.metrics.tokens(self.lm.name, 1)
        if self._flush(seq, final=False):
            self._finish(seq, "stop")
        elif len(seq.generated) >= seq.max_tokens or (
            len(seq.prompt_ids) + len(seq.generated) >= self.lm.max_len
        ):
            self._flush(seq, final=True)
            self._finish(seq, "length")

    def _flush(self, seq: Sequence, final: bool) -> bool:
        """Emit text decoded since the last flush; True when a stop sequence was reached.

        Detokenises incrementally (only tokens since the last complete character), so a step
        costs the same at token 500 as at token 5.
        """
        tok = self.lm.tokenizer
        window = seq.generated[seq.prefix_offset :]
        new = tok.decode(window, skip_special_tokens=True)
        if not new.endswith("\ufffd") or final:
            old = tok.decode(
                seq.generated[seq.prefix_offset : seq.read_offset], skip_special_tokens=True
            )
            seq.text += new[len(old) :]
            seq.prefix_offset = seq.read_offset
            seq.read_offset = len(seq.generated)
        text, stops = seq.text, seq.sampling.stop
        hit = -1
        if stops:
            # Only the tail can hold a stop sequence that was not there at the last flush.
            start = max(0, seq.emitted_chars - max(len(s) for s in stops))
            hit = min((i for i in (text.find(s, start) for s in stops) if i >= 0), default=-1)
        if hit >= 0:
            ready = hit
        elif final:
            ready = len(text)
        else:
            # Hold back anything that may be the beginning of a stop sequence.
            ready = len(text) - _held_back(text, stops)
        if ready > seq.emitted_chars:
            seq.emit(Event(text=text[seq.emitted_chars : ready]))
            seq.emitted_chars = ready
        return hit >= 0

    def _finish(self, seq: Sequence, reason: str, error: str | None = None) -> None:
        if seq.finished:
            return
        seq.finished = True
        self.metrics.finished(self.lm.name, reason, len(seq.prompt_ids), len(seq.generated))
        seq.emit(
            Event(
                finish=reason,
                prompt_tokens=len(seq.prompt_ids),
                completion_tokens=len(seq.generated),
                error=error,
            )
        )

    def _drop_finished(self) -> None:
        for seq in self.active:
            if seq.cancelled.is_set():
                self._finish(seq, "cancelled")
        if all(not seq.finished for seq in self.active):
            return
        rows = self._split()
        keep = [i for i, seq in enumerate(self.active) if not seq.finished]
        self.active = [self.active[i] for i in keep]
        self._lens = [self._lens[i] for i in keep]
        self._cache = self._stack([rows[i] for i in keep])


class ModelRegistry:
    """Every model in a models directory, loaded on first use; one Scheduler per loaded model.

    The directory is the zoo's layout: ``manifest.json`` listing ``{"name", "path", ...}``. Model
    directories without a manifest entry but with a ``config.json`` are served under their folder
    name, so any HF-format model dropped in is served too.
    """

    def __init__(
        self, models_dir: Path, metrics: Metrics, device: torch.device | None = None
    ) -> None:
        self.models_dir = models_dir
        self.metrics = metrics
        self.device = device or pick_device()
        self.entries: dict[str, dict[str, Any]] = {}
        self._schedulers: dict[str, Scheduler] = {}
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        """Re-read the models directory (new models appear without a restart)."""
        entries: dict[str, dict[str, Any]] = {}
        manifest = self.models_dir / "manifest.json"
        if manifest.exists():
            for entry in json.loads(manifest.read_text()).get("models", []):
                entries[entry["name"]] = entry
        if self.models_dir.is_dir():
            for child in sorted(self.models_dir.iterdir()):
                if (child / "config.json").exists() and child.name not in entries:
                    known = {e.get("path") for e in entries.values()}
                    if child.name not in known:
                        entries[child.name] = {"name": child.name, "path": child.name}
        self.entries = entries

    def get(self, name: str) -> Scheduler:
        """The Scheduler for ``name``, loading the model on first use (blocking: call off-loop)."""
        if name not in self.entries:
            self.refresh()
        if name not in self.entries:
            raise RequestError(
                f"The model '{name}' does not exist",
                status=404,
                param="model",
                code="model_not_found",
            )
        with self._lock:
            if name not in self._schedulers:
                started = time.monotonic()
                path = self.models_dir / self.entries[name]["path"]
                lm = LoadedModel(name, path, self.device)
                self._schedulers[name] = Scheduler(lm, self.metrics)
                log.info("loaded %s from %s in %.2fs", name, path, time.monotonic() - started)
            return self._schedulers[name]

    def loaded(self) -> list[str]:
        return sorted(self._schedulers)

    def shutdown(self) -> None:
        for sched in self._schedulers.values():
            with contextlib.suppress(Exception):
                sched.shutdown()
