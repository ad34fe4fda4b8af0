"""``python -m modelhub.zoo build --out DIR [--seed 0] [--quick]``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelhub.zoo")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="train the demo zoo into a directory")
    build.add_argument("--out", type=Path, required=True)
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--quick", action="store_true", help="tiny budget, for tests")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from modelhub.zoo.build import build_zoo  # heavy import (torch) only once arguments are valid

    manifest = build_zoo(args.out, seed=args.seed, quick=args.quick)
    for entry in manifest["models"]:
        print(
            f"{entry['name']:14} params={entry['parameters']:>9,} "
            f"heldout_loss={entry['heldout_loss']:.4f}"
        )
    print(json.dumps({"out": str(args.out), "build_seconds": manifest["build_seconds"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
