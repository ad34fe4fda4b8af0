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
    emitted_chars: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)
    generator: torch.Generator = field(default_factory=torch.Generator)
    finished: bool = False

    def cancel(self) -> None:
        """Stop decoding this request at the next step (client went away)."""
        self.cancelled.set()


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
        self, messages: list[dict[str, Any]], images: list[Image.Image]
    ) -> tuple[list[int], torch.Tensor | None]:
        """Prompt token ids (image placeholders expanded) and pixel values, via the chat template."""
        if images and not self.is_vision:
            raise RequestError(f"model '{self.name}' does not accept images", param="messages")
        prompt = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        if self.is_vision and images:
            enc = self.processor(images=images, text=prompt, return_tensors="pt")
            return enc["input_ids"][0].tolist(), enc["pixel_values"]
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return list(ids), None


def _sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """Pick the next token from one row of logits: greedy at temperature 0, else top-p sampling."""
    if params.temperature <= 0.0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
        drop = cumulative - sorted_probs >= params.top_p
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


def _held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters might start a stop sequence and must not be emitted yet."""
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    return hold


class Scheduler:
    """The decoding loop of one model (see module docstring)."""

    def __init__(self, lm: LoadedModel, metrics: Metrics, max_batch: int = MAX_BATCH) -> None:
        self.lm = lm
        self.metrics = metrics
        self.max_batch = max_batch
        self.pending: queue.Queue[Sequence] = queue.Queue()
        self.active: list[Sequence] = []
        # Batched KV cache: per layer (keys, values) of shape (B, heads, L, dim), left-padded;
        # lens[b] is how many of the L positions are real for row b.
        self._kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._lens: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"engine-{lm.name}", daemon=True)
        self._thread.start()

    def submit(self, seq: Sequence) -> None:
        seed = seq.sampling.seed
        seq.generator.manual_seed(
            seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
        )
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
                self.active, self._kv, self._lens = [], None, []

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
        cache = out.past_key_values
        row = [(layer.keys, layer.values) for layer in cache.layers]
        self._join(seq, row, len(seq.prompt_ids))
        self._accept(seq, out.logits[0, -1])

    def _join(
        self, seq: Sequence, row: list[tuple[torch.Tensor, torch.Tensor]], length: int
    ) -> None:
        """Add one request's KV cache to the batch, re-padding rows to a common length."""
        rows = [*self._split(), row]
        self.active.append(seq)
        self._lens.append(length)
        self._kv = self._stack(rows)

    def _split(self) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        if self._kv is None:
            return []
        total = self._kv[0][0].shape[2]
        return [
            [(k[b : b + 1, :, total - n :], v[b : b + 1, :, total - n :]) for k, v in self._kv]
            for b, n in enumerate(self._lens)
        ]

    def _stack(
        self, rows: list[list[tuple[torch.Tensor, torch.Tensor]]]
    ) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        if not rows:
            return None
        longest = max(self._lens)
        layers = []
        for layer in range(len(rows[0])):
            keys, values = [], []
            for row, n in zip(rows, self._lens, strict=True):
                k, v = row[layer]
                pad = longest - n
                if pad:
                    zeros = k.new_zeros(1, k.shape[1], pad, k.shape[3])
                    k, v = torch.cat([zeros, k], 2), torch.cat([zeros, v], 2)
                keys.append(k)
                values.append(v)
            layers.append((torch.cat(keys), torch.cat(values)))
        return layers

    def _step(self) -> None:
        """One decoding step for every active request."""
        assert self._kv is not None
        device = self.lm.device
        batch = len(self.active)
        total = self._kv[0][0].shape[2]
        last = torch.tensor([[seq.generated[-1]] for seq in self.active], device=device)
        mask = torch.zeros(batch, total + 1, dtype=torch.long, device=device)
        for b, n in enumerate(self._lens):
            mask[b, total - n :] = 1
        positions = torch.tensor([[n] for n in self._lens], device=device)
        cache = DynamicCache(ddp_cache_data=self._kv, config=self.lm.model.config.get_text_config())
        out = self.lm.model(
            input_ids=last, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True
        )
        self._kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        self._lens = [n + 1 for n in self._lens]
        self.metrics.step(self.lm.name, batch)
        logits = out.logits[:, -1]
        for b, seq in enumerate(self.active):
            self._accept(seq, logits[b])

    def _accept(self, seq: Sequence, logits: torch.Tensor) -> None:
        """Sample the next token for ``seq``, stream new text, and finish it when it is done."""
        if seq.cancelled.is_set():
            self._finish(seq, "cancelled")
            return
        token = _sample(logits, seq.sampling, seq.generator)
        if token in self.lm.eos_ids:
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
        """Emit text decoded since the last flush; True when a stop sequence was reached."""
        text = self.lm.tokenizer.decode(seq.generated, skip_special_tokens=True)
        stops = seq.sampling.stop
        hit = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
        if hit >= 0:
            text = text[:hit]
            ready = len(text)
        elif final:
            ready = len(text)
        else:
            # Hold back an incomplete UTF-8 character and anything that may begin a stop sequence.
            ready = len(text) - (1 if text.endswith("\ufffd") else 0)
            ready = min(ready, len(text) - _held_back(text, stops))
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
        self._kv = self._stack([rows[i] for i in keep])


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
