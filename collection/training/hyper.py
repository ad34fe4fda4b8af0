"""Hyperparameters of a fine-tuning job: defaults, validation and what each means (pure).

Every value a job trains with is stored on the job and written to its model card, defaults
included, so a card states the whole recipe.
"""

from __future__ import annotations

from typing import Any

# name: (type, default, lowest, highest, meaning)
SPEC: dict[str, tuple[type, Any, float | None, float | None, str]] = {
    "lora": (bool, False, None, None, "train a LoRA adapter (PEFT) instead of every weight"),
    "lora_r": (int, 8, 1, 256, "LoRA rank"),
    "lora_alpha": (int, 16, 1, 1024, "LoRA scaling numerator"),
    "lora_dropout": (float, 0.0, 0.0, 0.9, "dropout on the LoRA path"),
    "learning_rate": (float, 5e-4, 1e-7, 1.0, "peak learning rate"),
    "max_steps": (int, 30, 1, 1_000_000, "optimizer steps in all"),
    "batch_size": (int, 4, 1, 4096, "records per device per step"),
    "gradient_accumulation_steps": (int, 1, 1, 1024, "micro-batches per optimizer step"),
    "warmup_steps": (int, 0, 0, 100_000, "linear warm-up steps"),
    "max_length": (int, 256, 16, 131_072, "longest tokenized record kept"),
    "save_steps": (int, 10, 1, 1_000_000, "steps between checkpoints"),
    "beta": (float, 0.1, 1e-4, 100.0, "DPO: strength of the pull towards the reference model"),
    "test_fraction": (float, 0.1, 0.0, 0.9, "share of the version's rows held out for the gate"),
    "judge_prompts": (int, 8, 0, 10_000, "held-out prompts the judge compares on"),
    "max_new_tokens": (int, 48, 1, 4096, "reply length in the judge comparison"),
    "function_calling_cases": (
        int,
        40,
        0,
        100_000,
        "function-calling test cases the gate runs when the base has tools (0: none)",
    ),
}


class HyperparameterError(ValueError):
    """A hyperparameter that is unknown or out of range (the message names it)."""


def resolve(given: dict[str, Any] | None) -> dict[str, Any]:
    """Every hyperparameter with its value: ``given`` checked and completed with the defaults."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(SPEC))
    if unknown:
        raise HyperparameterError(
            f"unknown hyperparameter {', '.join(unknown)}; known: {', '.join(SPEC)}"
        )
    values: dict[str, Any] = {}
    for name, (kind, default, low, high, _) in SPEC.items():
        value = given.get(name, default)
        if kind is bool:
            if not isinstance(value, bool):
                raise HyperparameterError(f"{name} must be true or false")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise HyperparameterError(f"{name} must be a whole number")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise HyperparameterError(f"{name} must be a number")
        else:
            value = float(value)
        if low is not None and high is not None and not low <= value <= high:
            raise HyperparameterError(f"{name} must lie between {low} and {high}")
        values[name] = value
    return values
