"""``python -m modelhub.engine serve --models-dir DIR [--host H] [--port P] [--preload NAME ...]``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelhub.engine")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the models of a directory over HTTP")
    serve.add_argument("--models-dir", type=Path, required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8100)
    serve.add_argument("--preload", nargs="*", default=[], help="models to load before serving")
    serve.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    serve.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=args.log_level.upper())

    import torch
    import uvicorn

    from modelhub.engine.app import create_app
    from modelhub.engine.metrics import Metrics
    from modelhub.engine.runtime import ModelRegistry

    if args.threads or os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(args.threads or int(os.environ["OMP_NUM_THREADS"]))
    registry = ModelRegistry(args.models_dir, Metrics())
    for name in args.preload:
        registry.get(name)
    uvicorn.run(
        create_app(args.models_dir, registry),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
