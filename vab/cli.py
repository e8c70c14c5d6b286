"""The `vab` command line.  Each sub-command lives in `vab/commands/<name>.py` and
exposes ``register(subparsers)``; it sets ``func(args) -> int`` on its parser.

User errors (:class:`vab.errors.VabError`) are printed as one line with no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

# sub-command modules, in the order `vab --help` lists them
COMMANDS = ["extract", "info"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vab",
        description="Vision to Audio and Beyond: extract audio tokens and frame features, "
        "pretrain, generate soundtracks for silent videos, retrieve and classify.",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="show library warnings and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"vab.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from vab.errors import VabError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if not args.verbose:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        return int(args.func(args) or 0)
    except VabError as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
