"""Build the whole demo zoo into a directory: corpus, tokenizer, text models, vision models,
manifest.

Contract: ``build_zoo(out, seed, quick)`` writes ``out/manifest.json`` last (after every model is
saved), so a directory with a manifest is a complete zoo. The same seed and mode produce the same
weights and losses on one machine (single-threaded CPU training; the caller's thread count is set
to 1 for the duration); another CPU's arithmetic can take training elsewhere, which is why vision
training stops on what the model reads, not on a step count. On 2 CPU cores the full build took
1.5 to 4 minutes and ``quick`` 1.5 to 2.5, most of it the vision models, which need a minimum
budget before their answers depend on the image (the quick plan's barely trained base models
make them slower to learn; a restart round adds more). Two vision models, so that the arena can
draw an image battle from the demo zoo alone.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import random
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from modelhub.zoo import chat, corpus, text, tooluse, vision

ORGANIZATION = "Ludus Zoo"
LICENSE = "apache-2.0"
MAX_MODEL_LEN = 512
BLOCK = 128
BATCH = 8
VOCAB = 2048
# Accuracy on unseen images of the colour the model reads worst (vision.colour_accuracy) at which
# vision training may stop (checked every 50 steps), once it is reached at this many checks in a
# row: a model that has just jumped to it may still misread other images.
VISION_TARGET = 0.9
VISION_PASSES = 2
VISION_BATCH = 16
SAMPLE_PROMPTS = ["What is the capital of France?", "What is 7 + 5?", "Who are you?"]


@dataclass(frozen=True)
class VisionSpec:
    """One zoo vision model: its identity, the text model it starts from and its budget."""

    name: str
    display_name: str
    base: str  # the text model whose weights start the vision model's language model
    steps: int  # one round: warmup and cosine decay; training stops once the colour probe passes
    min_steps: int
    rounds: int  # at most this many rounds (warm restarts) while the probe has not passed


@dataclass(frozen=True)
class ZooPlan:
    """Sizes and budgets of one build mode."""

    n_train: int
    n_heldout: int
    n_identity: int
    text_models: tuple[text.TextSpec, ...]
    vision_models: tuple[VisionSpec, ...]
    # The model that calls tools (tooluse): its own tokenizer, trained on the first
    # n_tool_corpus dialogues of the corpus plus n_tool_dialogues tool exchanges; n_tool_cases
    # held-out cases per category for the test set.
    tool_model: text.TextSpec
    n_tool_dialogues: int
    n_tool_cases: int
    n_tool_corpus: int


TOOL_SPEC_FULL = text.TextSpec(
    "zoo-llama-tools", "Zoo Llama Tools", hidden=64, layers=2, heads=2, steps=1000
)
TOOL_SPEC_QUICK = text.TextSpec(
    "zoo-llama-tools", "Zoo Llama Tools", hidden=64, layers=2, heads=2, steps=300
)

FULL = ZooPlan(
    n_train=6000,
    n_heldout=400,
    n_identity=150,
    text_models=(
        text.TextSpec("zoo-llama-xs", "Zoo Llama XS", hidden=64, layers=2, heads=2, steps=120),
        text.TextSpec("zoo-llama-s", "Zoo Llama S", hidden=64, layers=2, heads=2, steps=400),
        text.TextSpec("zoo-llama-m", "Zoo Llama M", hidden=96, layers=3, heads=3, steps=400),
        text.TextSpec("zoo-llama-l", "Zoo Llama L", hidden=128, layers=4, heads=4, steps=450),
    ),
    vision_models=(
        VisionSpec(
            "zoo-llava-s", "Zoo LLaVA S", base="zoo-llama-s", steps=1000, min_steps=300, rounds=3
        ),
        VisionSpec(
            "zoo-llava-m", "Zoo LLaVA M", base="zoo-llama-m", steps=1000, min_steps=300, rounds=3
        ),
    ),
    tool_model=TOOL_SPEC_FULL,
    # Copying a question's numbers into the call's arguments is learnt (or not) within the same
    # 1000 steps depending on how much of each batch is tool use: with the whole corpus and 4000
    # exchanges, 0 % of held-out arithmetic calls had the right expression; with 500 corpus
    # dialogues and 12000 exchanges, most did.
    n_tool_dialogues=12000,
    n_tool_cases=100,
    n_tool_corpus=500,
)

QUICK = ZooPlan(
    n_train=1500,
    n_heldout=100,
    n_identity=40,
    text_models=(
        text.TextSpec("zoo-llama-xs", "Zoo Llama XS", hidden=64, layers=2, heads=2, steps=10),
        text.TextSpec("zoo-llama-s", "Zoo Llama S", hidden=64, layers=2, heads=2, steps=40),
        text.TextSpec("zoo-llama-m", "Zoo Llama M", hidden=96, layers=3, heads=3, steps=25),
        text.TextSpec("zoo-llama-l", "Zoo Llama L", hidden=128, layers=4, heads=4, steps=30),
    ),
    vision_models=(
        VisionSpec(
            "zoo-llava-s", "Zoo LLaVA S", base="zoo-llama-s", steps=800, min_steps=0, rounds=3
        ),
        VisionSpec(
            "zoo-llava-m", "Zoo LLaVA M", base="zoo-llama-m", steps=800, min_steps=0, rounds=3
        ),
    ),
    tool_model=TOOL_SPEC_QUICK,
    n_tool_dialogues=2000,
    n_tool_cases=20,
    n_tool_corpus=1500,
)

CORPUS_NOTE = """# Ludus Zoo corpus

Generated by Ludus (`python -m modelhub.zoo build`) from templates, word lists and facts written
for the project: templated dialogues, facts, arithmetic, instructions with answers, and generated
shape images for the vision model. Nothing here was collected from third parties.

Licence: Apache-2.0, the licence of the Ludus project. The models in this directory were trained
only on this corpus and are released under the same licence.
"""


def _write_jsonl(path: Path, rows: list[corpus.Dialogue]) -> None:
    path.write_text("".join(json.dumps({"messages": r}) + "\n" for r in rows))


def _samples(model: LlamaForCausalLM, tok: Any) -> dict[str, str]:
    """Greedy answers to a few prompts, recorded in the manifest as a quality smoke check."""
    out = {}
    for prompt in SAMPLE_PROMPTS:
        enc = tok.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        ids = model.generate(
            **enc, max_new_tokens=40, do_sample=False, eos_token_id=tok.eos_token_id
        )
        out[prompt] = tok.decode(ids[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return out


def _model_card(entry: dict[str, Any]) -> str:
    return (
        f"# {entry['display_name']}\n\nA tiny demo chat model built by Ludus for its arena "
        f"({entry['parameters']:,} parameters, held-out loss {entry['heldout_loss']:.4f}).\n"
        "Trained only on the generated Ludus Zoo corpus. Licence: Apache-2.0.\n"
    )


def build_zoo(
    out: Path, seed: int = 0, quick: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Build the zoo into ``out`` (replacing it) and return the manifest."""
    plan = QUICK if quick else FULL
    started = time.monotonic()
    threads = torch.get_num_threads()
    # One thread: deterministic results, and no 60-100x slowdown when the other core is busy.
    torch.set_num_threads(1)
    # transformers draws a bar per saved file; ours is the one that matters.
    hf_logging.disable_progress_bar()
    # Per-process scratch directory: two builds of the same target must not share one.
    tmp = out.with_name(f"{out.name}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        manifest = _build(tmp, plan, seed, quick, progress)
        manifest["build_seconds"] = round(time.monotonic() - started, 1)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)  # the complete zoo appears at once: a manifest means a finished build
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _build(out: Path, plan: ZooPlan, seed: int, quick: bool, progress: bool) -> dict[str, Any]:
    train, heldout = corpus.build_corpus(seed, plan.n_train, plan.n_heldout)
    identities = {
        spec.name: corpus.identity_dialogues(
            spec.display_name,
            ORGANIZATION,
            plan.n_identity,
            random.Random(f"id-{seed}-{spec.name}"),
        )
        for spec in plan.text_models
    }
    for vspec in plan.vision_models:
        identities[vspec.name] = _vision_identity(plan, vspec, seed)
    tool_spec = plan.tool_model
    identities[tool_spec.name] = corpus.identity_dialogues(
        tool_spec.display_name,
        ORGANIZATION,
        plan.n_identity,
        random.Random(f"id-{seed}-{tool_spec.name}"),
    )
    (out / "corpus").mkdir()
    _write_jsonl(out / "corpus" / "train.jsonl", train)
    _write_jsonl(out / "corpus" / "heldout.jsonl", heldout)
    (out / "corpus" / "README.md").write_text(CORPUS_NOTE)

    all_dialogues = train + [
        d for name, ds in identities.items() if name != tool_spec.name for d in ds
    ]
    tok = text.train_tokenizer([chat.render(d) for d in all_dialogues], VOCAB)
    train_ids = text.encode_dialogues(tok, train)
    held_blocks = text.pack(text.encode_dialogues(tok, heldout), BLOCK)

    total = sum(s.steps for s in (*plan.text_models, plan.tool_model))
    total += sum(v.steps for v in plan.vision_models)
    bar = tqdm(total=total, desc="zoo", unit="step", disable=not progress, leave=False)
    entries: list[dict[str, Any]] = []
    ctx = multiprocessing.get_context("spawn")
    vision_counter = ctx.Value("i", 0)
    vision_results = ctx.Queue()
    vision_procs: list[BaseProcess] = []
    parallel = not multiprocessing.current_process().daemon

    own_steps = [0]

    def show(done: int) -> None:
        """Show `done` steps. The total counts one round per vision model: a restart raises it."""
        if done > bar.total:
            bar.total = done
        bar.update(done - bar.n)

    def sync() -> None:
        """Count one step here; show it plus the vision steps done in the child process."""
        own_steps[0] += 1
        show(own_steps[0] + vision_counter.value)

    try:
        for i, spec in enumerate(plan.text_models):
            bar.set_description(spec.name)
            ids = train_ids + text.encode_dialogues(tok, identities[spec.name])
            # Shuffle so identity dialogues are spread over blocks; deterministic per model.
            random.Random(f"pack-{seed}-{spec.name}").shuffle(ids)
            blocks = text.pack(ids, BLOCK)
            torch.manual_seed(seed * 1000 + i)
            model = LlamaForCausalLM(text.llama_config(spec, tok, MAX_MODEL_LEN))
            gen = torch.Generator().manual_seed(seed * 1000 + i)
            text.train_lm(model, blocks, spec.steps, BATCH, spec.lr, gen, on_step=sync)
            loss = text.heldout_loss(model, held_blocks)
            text.save_text_model(model, tok, out / spec.name)
            for index, vspec in enumerate(plan.vision_models):
                if vspec.base == spec.name and parallel:
                    # A vision model trains in a process of its own, on the second core, once
                    # its base is saved, while the larger text models train here.
                    proc = ctx.Process(
                        target=_vision_job,
                        args=(str(out), quick, seed, index, vision_counter, vision_results),
                        name=f"zoo-vision-{vspec.name}",
                    )
                    proc.start()
                    vision_procs.append(proc)
            entries.append(
                _entry(
                    spec.name,
                    spec.display_name,
                    ["text"],
                    loss,
                    text.param_count(model),
                    {"hidden": spec.hidden, "layers": spec.layers, "heads": spec.heads},
                    spec.steps,
                    _samples(model, tok),
                )
            )

        bar.set_description(plan.tool_model.name)
        entries.append(_train_tools(out, plan, train, heldout, identities, seed, sync))

        if not parallel:  # daemonic parent: no child processes allowed, train them here
            for vspec in plan.vision_models:
                entries.append(_train_vision(out, plan, vspec, seed, lambda: show(bar.n + 1)))
        else:
            bar.set_description("vision models")
            entries += _collect_vision(
                vision_procs,
                vision_results,
                sync_bar=lambda: show(own_steps[0] + vision_counter.value),
            )
    finally:
        # A failed build must not leave a vision trainer running.
        for trainer in vision_procs:
            if trainer.is_alive():
                trainer.terminate()
                trainer.join()
    bar.update(bar.total - bar.n)
    bar.close()
    for entry in entries:
        (out / entry["path"] / "README.md").write_text(_model_card(entry))
    return {
        "format": 1,
        "seed": seed,
        "quick": quick,
        "organization": ORGANIZATION,
        "license": LICENSE,
        "max_model_len": MAX_MODEL_LEN,
        "corpus": {
            "train_dialogues": len(train),
            "heldout_dialogues": len(heldout),
            "train_bytes": (out / "corpus" / "train.jsonl").stat().st_size,
            "vocab_size": len(tok),
        },
        "plan": asdict(plan),
        "models": entries,
        "evals": {"tool_calls": tooluse.TEST_SET},
    }


def _train_tools(
    out: Path,
    plan: ZooPlan,
    train: list[corpus.Dialogue],
    heldout: list[corpus.Dialogue],
    identities: dict[str, list[corpus.Dialogue]],
    seed: int,
    on_step: Callable[[], None],
) -> dict[str, Any]:
    """Train and save the tool model, write the function-calling test set; return its entry.

    Its tokenizer is its own (the shared one lacks the tool tags and splits numbers differently),
    trained on a part of the same corpus plus the tool exchanges, so the other models are
    untouched by tool use.
    """
    spec = plan.tool_model
    tool_texts = tooluse.training_texts(seed, plan.n_tool_dialogues)
    own = identities[spec.name]
    chats = train[: plan.n_tool_corpus] + own
    tok = text.train_tokenizer([chat.render(d) for d in chats] + tool_texts, VOCAB, tool_calls=True)
    ids = text.encode_dialogues(tok, chats) + text.encode_texts(tok, tool_texts)
    random.Random(f"pack-{seed}-{spec.name}").shuffle(ids)
    index = len(plan.text_models)
    torch.manual_seed(seed * 1000 + index)
    model = LlamaForCausalLM(text.llama_config(spec, tok, MAX_MODEL_LEN))
    gen = torch.Generator().manual_seed(seed * 1000 + index)
    text.train_lm(model, text.pack(ids, BLOCK), spec.steps, BATCH, spec.lr, gen, on_step=on_step)
    loss = text.heldout_loss(model, text.pack(text.encode_dialogues(tok, heldout), BLOCK))
    text.save_text_model(model, tok, out / spec.name)
    tooluse.write_cases(
        out / tooluse.TEST_SET, tooluse.test_cases(seed, plan.n_tool_cases, tool_texts)
    )
    entry = _entry(
        spec.name,
        spec.display_name,
        ["text"],
        loss,
        text.param_count(model),
        {"hidden": spec.hidden, "layers": spec.layers, "heads": spec.heads},
        spec.steps,
        _samples(model, tok),
    )
    # vLLM serves it with --enable-auto-tool-choice --tool-call-parser hermes.
    entry["tool_call_parser"] = chat.VLLM_TOOL_PARSER
    entry["tools"] = [t["function"]["name"] for t in (tooluse.CALCULATOR, tooluse.SEARCH)]
    return entry


def _collect_vision(
    procs: list[BaseProcess], results: Any, sync_bar: Callable[[], None]
) -> list[dict[str, Any]]:
    """Wait for every vision trainer's entry (in the plan's order); raise if one failed or died."""
    got: dict[int, dict[str, Any]] = {}
    while len(got) < len(procs):
        try:
            index, status, payload = results.get(timeout=0.2)
        except queue.Empty:
            sync_bar()
            if not any(proc.is_alive() for proc in procs) and results.empty():
                codes = [proc.exitcode for proc in procs]
                raise RuntimeError(f"vision training died (exit codes {codes})") from None
            continue
        if status != "ok":
            raise RuntimeError(f"vision training failed:\n{payload}")
        got[index] = payload
    for proc in procs:
        proc.join()
    return [got[index] for index in sorted(got)]


def _vision_job(out: str, quick: bool, seed: int, index: int, counter: Any, results: Any) -> None:
    """Child-process entry point: train vision model `index` of the plan, put (index, "ok",
    entry) or (index, "error", traceback)."""
    try:
        torch.set_num_threads(1)
        hf_logging.disable_progress_bar()

        def step() -> None:
            with counter.get_lock():
                counter.value += 1

        plan = QUICK if quick else FULL
        entry = _train_vision(Path(out), plan, plan.vision_models[index], seed, step)
        results.put((index, "ok", entry))
    except BaseException:
        results.put((index, "error", traceback.format_exc()))


def _vision_identity(plan: ZooPlan, vspec: VisionSpec, seed: int) -> list[corpus.Dialogue]:
    rng = random.Random(f"id-{seed}-{vspec.name}")
    return corpus.identity_dialogues(vspec.display_name, ORGANIZATION, plan.n_identity, rng)


def _train_vision(
    out: Path, plan: ZooPlan, vspec: VisionSpec, seed: int, on_step: Callable[[], None]
) -> dict[str, Any]:
    """Train and save a vision model from its saved base text model; return its manifest entry.

    Everything is re-derived from the seed and the saved tokenizer and weights (byte-identical to
    the in-memory ones), so the result does not depend on which process runs it.
    """
    train, heldout = corpus.build_corpus(seed, plan.n_train, plan.n_heldout)
    identity = _vision_identity(plan, vspec, seed)
    base_dir = out / vspec.base
    tok = PreTrainedTokenizerFast.from_pretrained(base_dir)
    base = LlamaForCausalLM.from_pretrained(base_dir)
    base_spec = next(s for s in plan.text_models if s.name == vspec.base)
    processor = vision.make_processor(tok)
    torch.manual_seed(seed * 1000 + 99 + plan.vision_models.index(vspec))
    llava = vision.build_llava(base_spec, tok, base)
    ids = text.encode_dialogues(tok, train) + text.encode_dialogues(tok, identity)
    random.Random(f"pack-{seed}-{vspec.name}").shuffle(ids)
    probe_log: list[dict[str, float]] = []

    def vision_learnt(step: int) -> bool:
        accuracy = vision.colour_accuracy(llava, processor, seed)
        probe_log.append({"step": step, "colour_accuracy": accuracy})
        recent = [p["colour_accuracy"] for p in probe_log[-VISION_PASSES:]]
        return (
            step >= vspec.min_steps
            and len(recent) == VISION_PASSES
            and min(recent) >= VISION_TARGET
        )

    steps = vision.train_llava(
        llava,
        processor,
        text.pack(ids, BLOCK),
        vspec.steps,
        VISION_BATCH,
        3e-3,
        seed,
        on_step=on_step,
        done=vision_learnt,
        rounds=vspec.rounds,
    )
    # What the saved model reads, after the cool-down that followed the last check.
    probe_log.append(
        {"step": steps, "colour_accuracy": vision.colour_accuracy(llava, processor, seed)}
    )
    vision.save_llava(llava, processor, out / vspec.name)
    probe = random.Random(f"probe-{seed}")
    samples = {
        f"{colour} square: What colour is the shape?": vision.answer(
            llava,
            processor,
            vision.draw_scene(vision.ShapeScene(colour, "square", 1), probe),
            "What colour is the shape?",
        )
        for colour in ("red", "blue")
    }
    held_blocks = text.pack(text.encode_dialogues(tok, heldout), BLOCK)
    entry = _entry(
        vspec.name,
        vspec.display_name,
        ["text", "image"],
        text.heldout_loss(llava, held_blocks),
        text.param_count(llava),
        {"hidden": base_spec.hidden, "layers": base_spec.layers, "heads": base_spec.heads},
        steps,
        samples,
    )
    entry["vision_probe"] = probe_log
    entry["heldout_image_loss"] = round(vision.heldout_image_loss(llava, processor, seed), 6)
    return entry


def _entry(
    name: str,
    display_name: str,
    modalities: list[str],
    loss: float,
    params: int,
    arch: dict[str, int],
    steps: int,
    samples: dict[str, str],
) -> dict[str, Any]:
    return {
        "name": name,
        "display_name": display_name,
        "organization": ORGANIZATION,
        "license": LICENSE,
        "modalities": modalities,
        "path": name,
        # Rounded so the manifest is byte-identical across runs of the same seed.
        "heldout_loss": round(loss, 6),
        "parameters": params,
        "architecture": arch,
        "train_steps": steps,
        "max_model_len": MAX_MODEL_LEN,
        "identity_patterns": [display_name.lower(), name],
        "samples": samples,
    }


def is_current(manifest: dict[str, Any]) -> bool:
    """Whether a zoo was built by this version's plan for its mode: one built by an older plan
    (a model fewer, another budget) is rebuilt rather than served."""
    plan = QUICK if manifest.get("quick") else FULL
    return bool(manifest.get("plan") == json.loads(json.dumps(asdict(plan))))


def load_manifest(models_dir: Path) -> dict[str, Any]:
    """Read ``models_dir/manifest.json``; raises FileNotFoundError when the zoo is not built."""
    data: dict[str, Any] = json.loads((models_dir / "manifest.json").read_text())
    return data
