"""Checkpoint folders under RUN/checkpoints: naming, listing, atomic commit, pruning.

A checkpoint is written into a hidden staging folder (`.tmp-step_XXXXXXX`)
and renamed to `step_XXXXXXX` only when every process has finished writing, so
a folder with the final name is always complete.  Listing also requires the
engine's state file, which guards against folders made by other tools.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step_(\d{7,})$")


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


def staging_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f".tmp-{checkpoint_name(step)}"


def is_complete(folder: str | Path) -> bool:
    folder = Path(folder)
    return folder.is_dir() and (folder / STATE_FILE).is_file()


def complete_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of the complete checkpoints in `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _NAME.match(entry.name)
        if match and is_complete(entry):
            found.append((int(match.group(1)), entry))
    return sorted(found)


def latest_checkpoint(root: str | Path) -> Path | None:
    found = complete_checkpoints(root)
    return found[-1][1] if found else None


def commit(staging: Path, final: Path) -> None:
    """Rename a fully written staging folder onto `final` (replacing an older one)."""
    if final.exists():
        # Two renames: a crash in between leaves no `final`, never a mixed one.
        old = final.with_name(f".old-{final.name}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)


def prune(root: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints (keep <= 0 keeps all)."""
    if keep <= 0:
        return []
    doomed = [folder for _, folder in complete_checkpoints(root)[:-keep]]
    for folder in doomed:
        shutil.rmtree(folder, ignore_errors=True)
    return doomed


def clean_staging(root: str | Path) -> None:
    """Remove staging leftovers of a run killed while saving."""
    root = Path(root)
    if root.is_dir():
        for entry in root.iterdir():
            if entry.is_dir() and (entry.name.startswith(".tmp-step_") or entry.name.startswith(".old-step_")):
                shutil.rmtree(entry, ignore_errors=True)
