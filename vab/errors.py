"""User-facing errors.

Anything a user can cause (a bad file, a wrong config key, a missing weight file)
raises :class:`VabError`.  The command line prints its message as one line and
exits non-zero, with no traceback.  Programming errors stay ordinary exceptions.
"""

from __future__ import annotations

import os


class VabError(Exception):
    """A problem with the user's input, printed as one line by the CLI."""


class MediaError(VabError):
    """A media file cannot be used (missing, corrupt, no stream of the needed kind)."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(VabError):
    """A configuration file or override is invalid."""


def describe(exc: BaseException) -> str:
    """One line for a failure: a user error's own message, anything else as
    ``unexpected <Type>: <first line of its message>`` (so a batch can report it and go on)."""
    if isinstance(exc, VabError):
        return str(exc)
    lines = str(exc).strip().splitlines()
    return f"unexpected {type(exc).__name__}" + (f": {lines[0]}" if lines else "")
