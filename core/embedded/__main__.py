"""`python -m core.embedded train NAME|tiny-gpt-ladder|all [--steps N] [--out DIR]` and
`python -m core.embedded evaluate [--small] [--only NAME,NAME]`."""

from __future__ import annotations

import argparse
import json

from .ladder import LADDER_NAME
from .train import DEFAULT_ROOT, MODEL_NAMES


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m core.embedded", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train an embedded model from scratch")
    train.add_argument("name", choices=[*MODEL_NAMES, LADDER_NAME, "all"])
    train.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the recipe's; under 100 is a smoke run on a small data set)")
    train.add_argument("--out", default=str(DEFAULT_ROOT), help="folder that receives NAME/ (default: assets/models)")
    evaluate = commands.add_parser("evaluate", help="held-out metrics of the shipped models, as one JSON object")
    evaluate.add_argument("--small", action="store_true", help="a small sample, for CI (< 60 s)")
    evaluate.add_argument("--models", default=str(DEFAULT_ROOT), help="folder holding the model folders")
    evaluate.add_argument("--only", default=None,
                          help="comma-separated entries to compute, e.g. tiny-vit-localisation (default: all)")
    args = parser.parse_args(argv)
    if args.command == "train":
        from .train import train as run

        from .ladder import train_ladder

        for name in [*MODEL_NAMES, LADDER_NAME] if args.name == "all" else [args.name]:
            if name == LADDER_NAME:
                train_ladder(args.out, args.steps)
            else:
                run(name, args.out, args.steps)
    else:
        from .evaluate import evaluate as run

        names = args.only.split(",") if args.only else None
        result = run(args.models, small=args.small, names=names)
        if names and len(result) < len(names):
            parser.error(f"unknown names in --only: {sorted(set(names) - set(result))}")
        print(json.dumps(result))


if __name__ == "__main__":
    main()
