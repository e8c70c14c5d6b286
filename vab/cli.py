"""The `vab` command line.  Each sub-command lives in `vab/commands/<name>.py` and
exposes ``register(subparsers)``; it sets ``func(args) -> int`` on its parser.

User errors (:class:`vab.errors.VabError`) are printed as one line with no traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import warnings
from typing import Callable

# write failures reported as one line (disk full, quota exceeded, read-only file system)
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}

# sub-command modules, in the order `vab --help` lists them
COMMANDS = ["demo", "synth", "extract", "generate", "info", "embed", "search", "curate", "app", "push"]


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


def parse_with_overrides(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse `argv`; words of the form ``key=value`` anywhere on the line become
    ``args.overrides`` (config overrides such as ``train.lr=1e-4``)."""
    args, extra = parser.parse_known_args(argv)
    overrides = [w for w in extra if "=" in w and not w.startswith("-")]
    unknown = [w for w in extra if w not in overrides]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if overrides and not hasattr(args, "overrides"):
        parser.error(f"this command takes no config overrides: {' '.join(overrides)}")
    if hasattr(args, "overrides"):
        args.overrides = list(args.overrides or []) + overrides
    return args


def guarded(call: Callable[[], int | None], verbose: bool = False) -> int:
    """Run `call`; a user error (VabError) becomes one line on stderr and exit code 2,
    Ctrl-C becomes "interrupted" and 130.  With `verbose` user errors raise (full traceback)."""
    from vab.errors import VabError

    try:
        return int(call() or 0)
    except VabError as exc:
        if verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        # the disk filled up or the output went read-only mid-run: the user's environment, not a bug
        if verbose or exc.errno not in _DISK_ERRNOS:
            raise
        print(f"error: {exc.filename or 'output'}: cannot write ({exc.strerror or exc})", file=sys.stderr)
        return 2


def run_script(
    parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int | None], argv: list[str] | None = None
) -> int:
    """The `main` of every script in recipes/, finetune/ and eval/: parse `argv` (key=value words
    become ``args.overrides``), run ``body(args)`` and turn user errors into one-line messages."""
    args = parse_with_overrides(parser, argv)
    return guarded(lambda: body(args))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_with_overrides(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if not args.verbose:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return guarded(lambda: args.func(args), verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
