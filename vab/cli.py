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

from vab.errors import VabError

# write failures reported as one line (disk full, quota exceeded, read-only file system)
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}

#: sub-commands, in the order `vab --help` lists them, with the line it shows; each lives in
#: vab/commands/<name>.py, whose ``register(subparsers, help)`` adds its parser
COMMANDS = {
    "demo": "start here: synthetic data -> pretrain -> generate -> retrieval -> classification, on a CPU",
    "synth": "write a synthetic audio-visual data set (mp4 files + manifest with splits)",
    "extract": "videos -> audio tokens + frame features (a training-ready data set)",
    "generate": "soundtracks for videos (wav + muxed mp4), also editing and continuation",
    "info": "print a configuration and its parameter counts",
    "embed": "audio and video embeddings of clips, for `vab search` and `vab curate`",
    "search": "clips that sound like a video looks, or videos that fit a sound",
    "curate": "filter a data set by how well each clip's sound fits its picture",
    "app": "a web page to generate, edit, continue, search and classify (needs vab[app])",
    "push": "publish a model directory on the Hugging Face Hub",
}


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, like every other error of vab (argparse
    prints the usage and then the error: two lines, and the usage may wrap)."""

    def error(self, message: str):  # type: ignore[override]
        one_line_usage_error(self, message)


def one_line_usage_error(parser: argparse.ArgumentParser, message: str):
    """Print ``error: <message> (see <prog> --help)`` on one line and exit with code 2."""
    text = " ".join(str(message).split())
    parser.exit(2, f"error: {text} (see {parser.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `vab` parser.  Only the module of `command` (the sub-command about to run) is
    imported, so a command loads only its own stack; the others are listed by their line of
    :data:`COMMANDS` (None: all of them, for ``vab --help``)."""
    parser = Parser(
        prog="vab",
        description="Vision to Audio and Beyond: extract audio tokens and frame features, "
        "pretrain, generate soundtracks for silent videos, retrieve and classify.",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="show library warnings and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, line in COMMANDS.items():
        if name == command:
            importlib.import_module(f"vab.commands.{name}").register(sub, line)
        else:
            sub.add_parser(name, help=line, add_help=False)
    return parser


def command_in(argv: list[str]) -> str | None:
    """The sub-command `argv` names (its first word that is one), or None."""
    return next((word for word in argv if word in COMMANDS), None)


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


def one_line(text: str) -> str:
    """`text` on one line: line breaks a user's value brought in (a file name, an option) are
    shown as ``\\n``, so an error stays one line for whoever reads or greps it."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def guarded(call: Callable[[], int | None], verbose: bool = False) -> int:
    """Run `call`; a user error (VabError) becomes one line on stderr and exit code 2,
    Ctrl-C becomes "interrupted" and 130.  With `verbose` user errors raise (full traceback)."""
    try:
        return int(call() or 0)
    except VabError as exc:
        if verbose:
            raise
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
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
    become ``args.overrides``), run ``body(args)`` and turn user errors into one-line messages
    (argparse's too)."""
    parser.error = lambda message: one_line_usage_error(parser, message)  # type: ignore[method-assign]
    args = parse_with_overrides(parser, argv)
    return guarded(lambda: body(args))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_in(argv))
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
