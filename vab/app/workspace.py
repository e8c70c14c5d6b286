"""The app's temporary folder: Gradio's uploads and copies, and one folder per job.

Everything a server writes lives under one ``vab-app-*`` folder in the system's temporary
directory: ``uploads/`` (Gradio's cache of uploaded and served files, which Gradio itself
ages out) and ``jobs/<id>/`` (what one request produced).  Job folders older than `keep`
seconds are removed by :meth:`Workspace.sweep`, which runs before every new job and every
`keep` / 4 seconds in a background thread; :meth:`Workspace.close` removes the whole folder.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

from vab.errors import VabError


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
        """Stop sweeping and remove the whole folder."""
        self._stop.set()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
