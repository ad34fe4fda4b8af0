"""The demo zoo: manifest, HF-format files, distinct losses, determinism, licence."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    PreTrainedTokenizerFast,
)

from modelhub.zoo import build, chat, corpus, text, tooluse, vision

HF_FILES = [
    "config.json",
    "model.safetensors",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
]


def _manifest(zoo_dir: Path) -> dict:
    return json.loads((zoo_dir / "manifest.json").read_text())


def test_it_lists_four_text_models_and_two_vision_models(zoo_dir: Path) -> None:
    """Two vision models: the fewest from which the arena draws an image battle."""
    models = _manifest(zoo_dir)["models"]
    text_models = [m for m in models if m["modalities"] == ["text"]]
    vision_models = [m for m in models if m["modalities"] == ["text", "image"]]
    assert len(text_models) >= 4
    assert [m["name"] for m in vision_models] == ["zoo-llava-s", "zoo-llava-m"]
    for entry in models:
        assert entry["name"].startswith("zoo-")
        assert entry["organization"] == "Ludus Zoo"
        assert entry["license"] == "apache-2.0"
        assert entry["parameters"] > 0
        assert entry["display_name"].lower() in entry["identity_patterns"]
        assert (zoo_dir / entry["path"]).is_dir()


def test_it_records_distinct_heldout_losses(zoo_dir: Path) -> None:
    losses = [m["heldout_loss"] for m in _manifest(zoo_dir)["models"]]
    assert all(loss > 0 for loss in losses)
    assert len(set(losses)) == len(losses)


def test_it_saves_hf_format_files_with_a_chat_template(zoo_dir: Path) -> None:
    for entry in _manifest(zoo_dir)["models"]:
        model_dir = zoo_dir / entry["path"]
        for name in HF_FILES:
            assert (model_dir / name).exists(), f"{entry['name']} lacks {name}"
        tok_cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
        assert tok_cfg["chat_template"] == chat.CHAT_TEMPLATE
        gen_cfg = json.loads((model_dir / "generation_config.json").read_text())
        assert gen_cfg["eos_token_id"] == json.loads((model_dir / "config.json").read_text()).get(
            "eos_token_id", gen_cfg["eos_token_id"]
        )


def test_it_uses_head_size_vllm_cpu_accepts(zoo_dir: Path) -> None:
    for entry in _manifest(zoo_dir)["models"]:
        config = json.loads((zoo_dir / entry["path"] / "config.json").read_text())
        text_cfg = config.get("text_config", config)
        assert text_cfg["head_dim"] >= 32
        assert text_cfg["hidden_size"] == text_cfg["head_dim"] * text_cfg["num_attention_heads"]


def test_it_reloads_text_models_and_recomputes_their_loss(zoo_dir: Path) -> None:
    manifest = _manifest(zoo_dir)
    entry = next(m for m in manifest["models"] if m["name"] == "zoo-llama-s")
    model_dir = zoo_dir / entry["path"]
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok: Any = AutoTokenizer.from_pretrained(model_dir)
    heldout = [
        json.loads(line)["messages"]
        for line in (zoo_dir / "corpus" / "heldout.jsonl").read_text().splitlines()
    ]
    blocks = text.pack(text.encode_dialogues(tok, heldout), 128)
    assert abs(text.heldout_loss(model, blocks) - entry["heldout_loss"]) < 1e-4
    messages = [{"role": "user", "content": "Hi!"}]
    assert tok.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    ) == chat.render(messages, add_generation_prompt=True)


def test_it_reloads_each_vision_model_with_auto_processor(zoo_dir: Path) -> None:
    entries = [m for m in _manifest(zoo_dir)["models"] if "image" in m["modalities"]]
    assert len(entries) == 2
    for entry in entries:
        model_dir = zoo_dir / entry["path"]
        processor = AutoProcessor.from_pretrained(model_dir)
        model: Any = AutoModelForImageTextToText.from_pretrained(model_dir)
        image = vision.draw_scene(vision.ShapeScene("red", "circle", 2), random.Random(0), 48)
        reply = vision.answer(model, processor, image, "What colour is the shape?")
        assert isinstance(reply, str)
        assert reply
        # Each trained until it named the colour it reads worst on nine unseen shapes in ten at
        # two checks in a row (not until its steps ran out)...
        probes = [p["colour_accuracy"] for p in entry["vision_probe"]]
        run = probes[-1 - build.VISION_PASSES : -1]
        assert len(run) == build.VISION_PASSES and min(run) >= build.VISION_TARGET, probes
        # ...and the saved model, after its cool-down, still reads every colour: one that ignored
        # the image would name its worst colour on almost none.
        assert probes[-1] >= 0.8, probes


def test_vision_training_restarts_until_its_probe_passes_then_cools_down(zoo_dir: Path) -> None:
    """The control flow of train_llava, on a few steps of a real LLaVA: while `done` fails, rounds
    of `steps` run one after another (past the first round's end); once it passes, `cooldown` more
    steps run and training ends; with no pass, it ends after `rounds` rounds."""
    spec = next(s for s in build.QUICK.text_models if s.name == "zoo-llama-xs")
    tok = PreTrainedTokenizerFast.from_pretrained(zoo_dir / spec.name)
    processor = vision.make_processor(tok)
    no_text = torch.zeros((0, build.BLOCK), dtype=torch.long)

    def train(passes_at: int | None) -> tuple[int, list[int]]:
        asked: list[int] = []

        def done(step: int) -> bool:
            asked.append(step)
            return passes_at is not None and step >= passes_at

        torch.manual_seed(0)
        model = vision.build_llava(spec, tok, None)
        ran = vision.train_llava(
            model, processor, no_text, 4, 2, 1e-3, 0,
            done=done, check_every=2, rounds=3, cooldown=3,
        )  # fmt: skip
        return ran, asked

    assert train(passes_at=6) == (9, [2, 4, 6])  # passed in the second round, then 3 more
    assert train(passes_at=None) == (12, [2, 4, 6, 8, 10])  # three rounds, no check at the end


def test_it_generates_the_same_corpus_and_weights_from_the_same_seed() -> None:
    first = corpus.build_corpus(7, 200, 20)
    assert first == corpus.build_corpus(7, 200, 20)
    assert first != corpus.build_corpus(8, 200, 20)
    texts = [chat.render(d) for d in first[0]]
    tok_a, tok_b = text.train_tokenizer(texts, 512), text.train_tokenizer(texts, 512)
    assert tok_a.get_vocab() == tok_b.get_vocab()
    blocks = text.pack(text.encode_dialogues(tok_a, first[0]), 64)
    spec = text.TextSpec("t", "T", hidden=64, layers=1, heads=2, steps=3)
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = text.LlamaForCausalLM(text.llama_config(spec, tok_a, 128))
        text.train_lm(model, blocks, 3, 4, 1e-3, torch.Generator().manual_seed(0))
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_it_states_the_corpus_licence(zoo_dir: Path) -> None:
    note = (zoo_dir / "corpus" / "README.md").read_text()
    assert "Apache-2.0" in note
    assert "Generated by Ludus" in note
    assert (zoo_dir / "corpus" / "train.jsonl").stat().st_size > 100_000 or _manifest(zoo_dir)[
        "quick"
    ]


def test_it_teaches_models_their_own_name() -> None:
    dialogues = corpus.identity_dialogues("Zoo Llama S", "Ludus Zoo", 10, random.Random(0))
    assert all("Zoo Llama S" in d[-1]["content"] for d in dialogues)


def test_it_draws_images_whose_colour_matches_the_scene() -> None:
    image = vision.draw_scene(vision.ShapeScene("blue", "square", 1), random.Random(0))
    colours = {colour for _, colour in image.getcolors(4096) or []}
    assert vision.COLOURS["blue"] in colours


def test_it_builds_a_tool_model_vllm_can_parse(zoo_dir: Path) -> None:
    """Its tokenizer holds the Hermes tags as single tokens that decoding keeps (vLLM's hermes
    parser looks them up), its template renders a tool exchange as training did, and the build
    ships the held-out function-calling test set."""
    manifest = _manifest(zoo_dir)
    entry = next(m for m in manifest["models"] if m["name"] == "zoo-llama-tools")
    assert entry["tool_call_parser"] == "hermes"
    assert entry["tools"] == ["calculator", "search"]
    tok: Any = AutoTokenizer.from_pretrained(zoo_dir / entry["path"])
    vocab = tok.get_vocab()
    ids = [vocab[tag] for tag in chat.TOOL_CALL_TAGS]
    assert tok.decode(ids, skip_special_tokens=True) == "".join(chat.TOOL_CALL_TAGS)
    messages, _ = tooluse.arithmetic(random.Random(0))
    tools = [tooluse.CALCULATOR, tooluse.SEARCH]
    rendered = tok.apply_chat_template(messages, tools=tools, tokenize=False)
    assert rendered == chat.render(messages, tools=tools)
    assert tok(rendered, add_special_tokens=False)["input_ids"].count(ids[0]) == 1
    cases = tooluse.read_cases(zoo_dir / manifest["evals"]["tool_calls"])
    assert len(cases) == 2 * build.QUICK.n_tool_cases
    # The other models keep the shared tokenizer, which knows nothing of tools.
    plain: Any = AutoTokenizer.from_pretrained(zoo_dir / "zoo-llama-s")
    assert "<tool_call>" not in plain.get_vocab()
