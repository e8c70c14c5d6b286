"""The app's temporary folder: Gradio's uploads and copies, one folder per job, and every
other temporary file of the server process.

Everything a server writes lives under one ``vab-app-*`` folder in the system's temporary
directory: ``uploads/`` (Gradio's cache of uploaded and served files, which Gradio itself
ages out), ``jobs/<id>/`` (what one request produced), and, once
:meth:`Workspace.hold_temporary_files` made the folder the process's temporary folder,
Gradio's own scratch files, the multipart parser's copies of posted files and anything a
library makes with `tempfile` (Gradio then also counts the job folders as its own).  Job
folders older than `keep` seconds are removed by :meth:`Workspace.sweep`, which runs before
every new job and every `keep` / 4 seconds in a background thread; :meth:`Workspace.close`
removes the whole folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from vab.errors import VabError

#: the environment variables :meth:`Workspace.hold_temporary_files` points into the workspace
_TEMPORARY_ENV = ("GRADIO_TEMP_DIR", "TMPDIR")


class Workspace:
    """A private temporary folder (mode 0700) whose job folders expire after `keep` seconds."""

    def __init__(self, keep: float = 3600.0, parent: str | Path | None = None):
        if not keep > 0:
            raise VabError(f"results must be kept for more than 0 seconds, got {keep:g}")
        self.keep = float(keep)
        try:
            self.root = Path(tempfile.mkdtemp(prefix="vab-app-", dir=parent))
        except OSError as exc:
            raise VabError(f"{parent or tempfile.gettempdir()}: cannot make a temporary folder "
                           f"({exc.strerror or exc})") from None
        self.uploads = self.root / "uploads"
        self.jobs = self.root / "jobs"
        self.uploads.mkdir()
        self.jobs.mkdir()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._held: tuple[dict[str, str | None], str | None] | None = None  # what hold_temporary_files replaced

    def hold_temporary_files(self) -> None:
        """Point this process's temporary files into the workspace: Gradio's cache
        (``GRADIO_TEMP_DIR``, read by Gradio when it is imported, so this must run first),
        Python's `tempfile` and the ``TMPDIR`` of child processes (ffmpeg ...).  Then nothing
        the server writes lands outside the workspace, and a clean stop removes it all."""
        if self._held is None:
            self._held = ({name: os.environ.get(name) for name in _TEMPORARY_ENV}, tempfile.tempdir)
        os.environ["GRADIO_TEMP_DIR"] = str(self.uploads)
        os.environ["TMPDIR"] = str(self.root)
        tempfile.tempdir = str(self.root)

    def _release_temporary_files(self) -> None:
        """Undo :meth:`hold_temporary_files` (the folder is about to go)."""
        if self._held is None:
            return
        environment, tempfile.tempdir = self._held
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._held = None

    def new_job(self) -> Path:
        """A fresh, empty folder for one request's outputs (expired folders are removed first)."""
        self.sweep()
        return Path(tempfile.mkdtemp(prefix=time.strftime("%H%M%S-"), dir=self.jobs))

    def sweep(self, now: float | None = None) -> list[Path]:
        """Remove the job folders made more than `keep` seconds before `now`; returns them."""
        limit = (time.time() if now is None else now) - self.keep
        removed = []
        for job in list(self.jobs.iterdir()) if self.jobs.is_dir() else []:
            try:
                if job.stat().st_mtime < limit:
                    shutil.rmtree(job, ignore_errors=True)
                    removed.append(job)
            except FileNotFoundError:
                pass  # another sweep took it
        return removed

    def start_sweeping(self, interval: float | None = None) -> None:
        """Sweep every `interval` seconds (default keep / 4) in a daemon thread until close()."""
        interval = self.keep / 4 if interval is None else float(interval)

        def loop() -> None:
            while not self._stop.wait(interval):
                self.sweep()

        self._sweeper = threading.Thread(target=loop, name="vab-app-sweeper", daemon=True)
        self._sweeper.start()

    def close(self) -> None:
        """Stop sweeping, give the process its own temporary folder back and remove the whole folder."""
        self._stop.set()
        self._release_temporary_files()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
