"""Local engine throughput: aggregate tokens/s with 1, 8 and 32 concurrent streams, and the zoo's
held-out losses.

    python bench/engine.py [--models-dir data/models] [--model zoo-llama-m] [--tokens 64]

Starts the engine (its own process, like production) on the zoo in --models-dir (the cached quick
zoo under data/test-zoo when that has no manifest), warms the model, then for each concurrency N
starts N streaming chats at once and divides the completion tokens by the wall time of the round.
Batching shows as tok_s_32 well above tok_s_1. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modelhub.zoo.serving import engine_server  # noqa: E402
from modelhub.zoo.testing import cached_quick_zoo  # noqa: E402


async def _one(client: object, model: str, i: int, tokens: int) -> int:
    import openai

    assert isinstance(client, openai.AsyncOpenAI)
    stream = await client.chat.completions.create(
        model=model,
        messages=[
            {"role": "user", "content": f"Tell me a short story about a brave fox number {i}."}
        ],
        max_tokens=tokens,
        temperature=1.0,
        seed=i,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},  # fixed-length replies: tokens/s, not reply length
    )
    used = 0
    async for chunk in stream:
        if chunk.usage is not None:
            used = chunk.usage.completion_tokens
    return used


async def _round(base_url: str, model: str, n: int, tokens: int) -> tuple[float, int, float]:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="unused", timeout=600)
    started = time.perf_counter()
    counts = await asyncio.gather(*(_one(client, model, i, tokens) for i in range(n)))
    wall = time.perf_counter() - started
    await client.close()
    return sum(counts) / wall, sum(counts), wall


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models-dir", type=Path, default=ROOT / "data" / "models")
    parser.add_argument("--model", default="zoo-llama-m")
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    models_dir = args.models_dir
    if not (models_dir / "manifest.json").exists():
        print(f"no zoo in {models_dir}; using the cached quick zoo", flush=True)
        models_dir = cached_quick_zoo()
    manifest = json.loads((models_dir / "manifest.json").read_text())
    results: dict[str, float] = {}
    with engine_server(models_dir) as base_url:
        asyncio.run(_round(base_url, args.model, 2, 8))  # load the model, warm up
        for n in (1, 8, 32):
            tok_s, total, wall = asyncio.run(_round(base_url, args.model, n, args.tokens))
            results[f"tok_s_{n}"] = round(tok_s, 1)
            print(
                f"{n:>3} streams: {total:>5} tokens in {wall:6.2f}s = {tok_s:8.1f} tok/s",
                flush=True,
            )
    losses = {e["name"]: e["heldout_loss"] for e in manifest["models"]}
    for name, loss in sorted(losses.items(), key=lambda kv: kv[1]):
        print(f"heldout_loss {name:14} {loss:.4f}")
    print(json.dumps({**results, "heldout_loss": losses}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
