"""Tokenizer training and small Llama chat models: build, train, evaluate, save in HF format."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from modelhub.zoo import chat
from modelhub.zoo.corpus import Dialogue


@dataclass(frozen=True)
class TextSpec:
    """One zoo text model: its identity, shape and training budget."""

    name: str
    display_name: str
    hidden: int
    layers: int
    heads: int
    steps: int
    lr: float = 3e-3
    # Head size must stay >= 32: vLLM's CPU attention backend rejects 16.
    head_dim: int = 32

    @property
    def intermediate(self) -> int:
        return self.hidden * 3


def train_tokenizer(
    texts: list[str], vocab_size: int, tool_calls: bool = False
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer; returns a HF fast tokenizer with the chat template set.

    Byte-level means every string round-trips, even characters the corpus never contains. With
    ``tool_calls`` the vocabulary also holds the ``<|tool|>`` role token and the Hermes tags as
    single ordinary tokens (decoding keeps them; vLLM's hermes parser looks them up).
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=chat.SPECIAL_TOKENS + (["<|tool|>"] if tool_calls else []),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if tool_calls:
        tok.add_tokens(
            [AddedToken(tag, special=False, normalized=False) for tag in chat.TOOL_CALL_TAGS]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=chat.END,
        pad_token=chat.PAD,
        extra_special_tokens={"image_token": chat.IMAGE},
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = chat.CHAT_TEMPLATE
    return fast


def token_id(tok: PreTrainedTokenizerFast, token: str) -> int:
    """The id of one special token (raises if the tokenizer lacks it)."""
    ids = tok.convert_tokens_to_ids(token)
    if not isinstance(ids, int) or ids == tok.unk_token_id:
        raise KeyError(token)
    return ids


def pack(token_lists: list[list[int]], block: int) -> torch.Tensor:
    """Concatenate token lists and cut them into full blocks of ``block`` tokens (rest dropped)."""
    flat = [t for ids in token_lists for t in ids]
    n = len(flat) // block
    return torch.tensor(flat[: n * block], dtype=torch.long).view(n, block)


def encode_dialogues(tok: PreTrainedTokenizerFast, dialogues: list[Dialogue]) -> list[list[int]]:
    return encode_texts(tok, [chat.render(d) for d in dialogues])


def encode_texts(tok: PreTrainedTokenizerFast, texts: list[str]) -> list[list[int]]:
    return [list(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]


def llama_config(spec: TextSpec, tok: PreTrainedTokenizerFast, max_len: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        head_dim=spec.head_dim,
        max_position_embeddings=max_len,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=token_id(tok, chat.END),
        pad_token_id=token_id(tok, chat.PAD),
        dtype="float32",
    )


def lr_at(step: int, total: int, peak: float) -> float:
    """Linear warmup then cosine decay to 10% of peak."""
    warm = max(1, total // 20)
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_lm(
    model: torch.nn.Module,
    blocks: torch.Tensor,
    steps: int,
    batch: int,
    lr: float,
    generator: torch.Generator,
    on_step: Callable[[], None] | None = None,
) -> None:
    """Plain next-token training on packed blocks. Deterministic given ``generator``."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr)
        idx = torch.randint(0, blocks.shape[0], (batch,), generator=generator)
        x = blocks[idx]
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if on_step is not None:
            on_step()
    model.eval()


@torch.no_grad()
def heldout_loss(model: torch.nn.Module, blocks: torch.Tensor, batch: int = 32) -> float:
    """Mean next-token cross-entropy (nats/token) over every held-out block."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, blocks.shape[0], batch):
        x = blocks[i : i + batch]
        logits = model(input_ids=x).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum"
        )
        total += float(loss)
        count += x[:, 1:].numel()
    return total / count


def generation_config(tok: PreTrainedTokenizerFast, max_new: int = 128) -> GenerationConfig:
    """Defaults that vLLM (``--generation-config vllm``) and the local engine both read."""
    end = token_id(tok, chat.END)
    return GenerationConfig(
        do_sample=True,
        temperature=0.7,
        top_p=0.9,
        max_new_tokens=max_new,
        eos_token_id=end,
        pad_token_id=token_id(tok, chat.PAD),
    )


def save_tokenizer(tok: PreTrainedTokenizerFast, out: Path) -> None:
    """Save the tokenizer so that transformers 4.x (vLLM's pin) and 5.x both load it.

    transformers 5 writes the chat template to chat_template.jinja, names the class
    ``TokenizersBackend`` and lists extra special tokens as an array; 4.x reads the template
    from tokenizer_config.json, knows the class as ``PreTrainedTokenizerFast`` (5.x still accepts
    that name) and expects a mapping there. The template is written to both places.
    """
    tok.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    cfg: dict[str, Any] = json.loads(cfg_path.read_text())
    cfg["chat_template"] = chat.CHAT_TEMPLATE
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg.pop("backend", None)
    cfg["extra_special_tokens"] = {"image_token": chat.IMAGE}
    cfg.pop("image_token", None)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def save_text_model(model: LlamaForCausalLM, tok: PreTrainedTokenizerFast, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config = generation_config(tok)
    model.save_pretrained(out, safe_serialization=True)
    save_tokenizer(tok, out)


def param_count(model: torch.nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
