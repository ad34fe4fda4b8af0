"""The trainer run of a fine-tuning job (no Django): TRL's SFTTrainer or DPOTrainer, PEFT LoRA
when asked, checkpoints every ``save_steps`` and resumption from the last one, then the outputs
in Hugging Face format.

Layout of ``out_dir``:

- ``checkpoints/checkpoint-<step>/``: the Trainer's checkpoints (weights, optimizer, scheduler,
  RNG state), so a killed run continues where its last checkpoint left it.
- ``model/``: the trained model with its tokenizer and chat template, loadable by transformers,
  vLLM and the local engine (a LoRA run merges its adapter into the base here), and README.md,
  the model card.
- ``adapter/``: a LoRA run's adapter alone (PEFT format), for engines that serve adapters.
- ``training_log.jsonl``: every logged step (loss, learning rate, tokens seen, ...).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Record = dict[str, Any]


@dataclass
class Progress:
    step: int
    max_steps: int
    loss: float | None
    tokens_per_second: float | None
    eta_seconds: float | None


@dataclass
class Outcome:
    finished: bool
    step: int
    model_dir: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def last_checkpoint(out_dir: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = out_dir / "checkpoints"
    if not folder.is_dir():
        return None
    found = get_last_checkpoint(str(folder))
    return Path(found) if found else None


def checkpoint_step(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[1])


def _device_kwargs() -> dict[str, Any]:
    import torch

    return {"use_cpu": not torch.cuda.is_available()}


def _config(method: str, out_dir: Path, hp: dict[str, Any], seed: int) -> Any:
    from trl import DPOConfig, SFTConfig

    common: dict[str, Any] = {
        "output_dir": str(out_dir / "checkpoints"),
        "max_steps": hp["max_steps"],
        "per_device_train_batch_size": hp["batch_size"],
        "gradient_accumulation_steps": hp["gradient_accumulation_steps"],
        "learning_rate": hp["learning_rate"],
        "warmup_steps": hp["warmup_steps"],
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": hp["save_steps"],
        "save_total_limit": 2,
        "seed": seed,
        "data_seed": seed,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "include_num_input_tokens_seen": True,
        "max_length": hp["max_length"],
        **_device_kwargs(),
    }
    if method == "dpo":
        return DPOConfig(beta=hp["beta"], **common)
    return SFTConfig(packing=False, **common)


def _peft_config(hp: dict[str, Any]) -> Any:
    if not hp["lora"]:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=hp["lora_r"],
        lora_alpha=hp["lora_alpha"],
        lora_dropout=hp["lora_dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def train(
    *,
    method: str,
    base_dir: Path,
    out_dir: Path,
    records: list[Record],
    hyperparameters: dict[str, Any],
    seed: int,
    on_progress: Callable[[Progress], bool] | None = None,
    stop_at_step: int | None = None,
) -> Outcome:
    """Train (or go on training from the last checkpoint under ``out_dir``). ``on_progress`` gets
    every logged step and returns True to stop (a cancel); ``stop_at_step`` stops after the
    checkpoint of that step, as a worker killed there would. Only a run that reaches
    ``max_steps`` writes ``model/``."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        PrinterCallback,
        TrainerCallback,
        set_seed,
    )
    from trl import DPOTrainer, SFTTrainer

    hp = hyperparameters
    set_seed(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    resume = last_checkpoint(out_dir)
    resumed_from = checkpoint_step(resume) if resume else None
    stopped: dict[str, bool] = {"cancelled": False}

    class Watch(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.started = time.monotonic()
            self.first_step = resumed_from or 0
            self.first_tokens = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.started = time.monotonic()
            self.first_tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            logs = logs or {}
            if "loss" not in logs or on_progress is None:
                return
            elapsed = max(time.monotonic() - self.started, 1e-6)
            done = state.global_step - self.first_step
            tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
            rate = (tokens - self.first_tokens) / elapsed if tokens else None
            eta = (state.max_steps - state.global_step) * elapsed / done if done > 0 else None
            progress = Progress(
                step=state.global_step,
                max_steps=state.max_steps,
                loss=float(logs["loss"]),
                tokens_per_second=rate,
                eta_seconds=eta,
            )
            if on_progress(progress):
                stopped["cancelled"] = True
                control.should_save = True
                control.should_training_stop = True

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if stop_at_step is not None and state.global_step >= stop_at_step:
                control.should_save = True
                control.should_training_stop = True

    dataset = Dataset.from_list(records)
    trainer_class = DPOTrainer if method == "dpo" else SFTTrainer
    trainer = trainer_class(
        model=model,
        args=_config(method, out_dir, hp, seed),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=_peft_config(hp),
        callbacks=[Watch()],
    )
    trainer.remove_callback(PrinterCallback)  # the log goes to the job and training_log.jsonl
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.monotonic() - started
    step = trainer.state.global_step
    _write_log(out_dir, trainer.state.log_history)
    if step < hp["max_steps"] or stopped["cancelled"]:
        return Outcome(finished=False, step=step)
    model_dir = out_dir / "model"
    if hp["lora"]:
        peft_model: Any = trainer.model
        peft_model.save_pretrained(out_dir / "adapter")
        tokenizer.save_pretrained(out_dir / "adapter")
        merged = peft_model.merge_and_unload()
        merged.save_pretrained(model_dir)
    else:
        trainer.save_model(str(model_dir))
    tokenizer.save_pretrained(model_dir)
    tokens = int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0)
    metrics = {
        "train_loss": float(result.training_loss),
        "train_seconds": round(seconds, 3),
        "tokens_seen": tokens,
        "device": "cuda" if not _device_kwargs()["use_cpu"] else "cpu",
    }
    return Outcome(
        finished=True,
        step=step,
        model_dir=model_dir,
        metrics=metrics,
    )


def _write_log(out_dir: Path, history: list[dict[str, Any]]) -> None:
    with open(out_dir / "training_log.jsonl", "w") as log:
        for entry in history:
            log.write(json.dumps(entry, sort_keys=True) + "\n")


def model_card(
    *,
    model_name: str,
    base: str,
    method: str,
    dataset: str,
    dataset_hash: str,
    hyperparameters: dict[str, Any],
    seed: int,
    metrics: dict[str, Any],
) -> str:
    """A Hugging Face model card: front matter, the dataset version and its hash, the base model,
    every hyperparameter, the seed and the evaluation figures."""
    lines = [
        "---",
        "library_name: transformers",
        f"base_model: {json.dumps(base)}",
        "tags:",
        "  - trl",
        f"  - {method}",
        "  - ludus",
        *(["  - peft", "  - lora"] if hyperparameters.get("lora") else []),
        "---",
        "",
        f"# {model_name}",
        "",
        f"Fine-tuned from `{base}` with TRL's {method.upper()} trainer"
        + (" (a LoRA adapter, merged)" if hyperparameters.get("lora") else " (every weight)")
        + ".",
        "",
        "## Training data",
        f"- Dataset version: {dataset}",
        f"- Content hash (sha256): `{dataset_hash}`",
        "",
        "## Hyperparameters",
        "| name | value |",
        "|---|---|",
        *[f"| {name} | {json.dumps(value)} |" for name, value in sorted(hyperparameters.items())],
        f"| seed | {seed} |",
        "",
        "## Evaluation",
        *(
            [f"- {name}: {json.dumps(value)}" for name, value in sorted(metrics.items())]
            or ["- not evaluated"]
        ),
        "",
    ]
    return "\n".join(lines)
