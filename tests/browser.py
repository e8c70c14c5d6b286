"""A real browser for the page's tests and benchmark: Debian's headless chromium driven by
Playwright, and `vab app` started in a subprocess on a free local port.

The browser is the system's (`apt-get install chromium`; `.ci/run` installs it), never one
Playwright downloads: nothing here needs the internet.  The flags keep chromium from
reaching out on its own (background networking, component updates, sync), which on a
closed network only costs time.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator

CHROMIUM = os.environ.get("VAB_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
MISSING = (f"{CHROMIUM} not found: the browser tests need Debian's chromium (apt-get install chromium "
           "chromium-driver; .ci/run installs it)")
READY = re.compile(r"vab app: serving .* at (?P<url>http://\S+) \(Ctrl-C to stop\); results in (?P<folder>.+) for ")
#: the `vab` command line, run from this interpreter (and its PYTHONPATH)
VAB = [sys.executable, "-c", "import sys; from vab.cli import main; sys.exit(main())"]


def chromium_missing() -> str | None:
    """Why the browser cannot run, or None."""
    if not Path(CHROMIUM).is_file():
        return MISSING
    try:
        import playwright  # noqa: F401
    except ImportError:
        return 'Playwright for Python is missing: pip install -e ".[dev]"'
    return None


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 1000) -> Iterator["object"]:
    """A Playwright browser context in headless chromium with a fresh profile folder."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="vab-chromium-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS, viewport={"width": width, "height": height},
        )
        try:
            yield context
        finally:
            context.close()


class AppServer:
    """`vab app ARGS` in a subprocess; :attr:`url` and :attr:`folder` (its workspace) once it
    serves.  stderr goes to :attr:`log`; `tmp` (if given) is the server's system temporary
    folder (``TMPDIR``), where its workspace is made."""

    def __init__(self, args: list[str], log: Path, timeout: float = 180.0, tmp: Path | None = None):
        self.log = Path(log)
        self._lines: list[str] = []
        self._stderr = open(self.log, "w")
        env = dict(os.environ, **({"TMPDIR": str(tmp)} if tmp is not None else {}))
        env.pop("GRADIO_TEMP_DIR", None)  # the server chooses it (inside its workspace)
        self.proc = subprocess.Popen(VAB + ["app", *args], stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                     env=env)
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        match = None
        while match is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vab app exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"vab app did not serve within {timeout:g} s: {self.log.read_text()[-2000:]}")
            match = next((m for m in map(READY.search, list(self._lines)) if m), None)
            time.sleep(0.2)
        self.url = match["url"]
        self.folder = Path(match["folder"])

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as `kill` sends; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        return self.proc.returncode


def fetch(url: str, out: Path) -> Path:
    """Download `url` (the page's own server) to `out`."""
    with urllib.request.urlopen(url, timeout=60) as response:
        out.write_bytes(response.read())
    return out


def peak_rss_mb(pid: int) -> float:
    """The high-water mark of a live process's resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


# ---------------------------------------------------------------------- the page
#: viewports the page is tried at: a desktop window and a phone (CSS pixels)
VIEWPORTS = {"desktop": {"width": 1280, "height": 1000}, "phone": {"width": 390, "height": 844}}


def open_page(context, url: str, tab: str | None = None, page=None, viewport: str = "desktop"):
    """The app's page (a new one at `viewport`, or `page` reloaded: empty upload fields), on
    `tab`, once it has loaded (the settings opened or folded for the screen's width)."""
    if page is None:
        page = context.new_page()
        page.set_viewport_size(VIEWPORTS[viewport])
        page.goto(url)
    else:
        page.reload()
    page.wait_for_selector("#generate-button", timeout=60_000)
    page.wait_for_function("(document.querySelector('#laid-out')?.textContent || '').includes('laid out')",
                           timeout=60_000)
    if tab:
        page.get_by_role("tab", name=tab).click()
    return page


def upload(page, element: str, path: Path) -> None:
    """Put a file in the upload field with elem_id `element`."""
    page.set_input_files(f"#{element} input[type=file]", str(path))


def wait_text(page, selector: str, text: str, timeout: float = 60_000) -> str:
    """The text of `selector` once it contains `text` (else an AssertionError saying what it shows)."""
    try:
        page.wait_for_function("([sel, text]) => (document.querySelector(sel)?.innerText || '').includes(text)",
                               arg=[selector, text], timeout=timeout)
    except Exception:  # say what the page shows instead
        shown = page.locator(selector).all_inner_texts()
        raise AssertionError(f"{selector} never showed {text!r}; it shows {shown}") from None
    return page.inner_text(selector).strip()


def set_number(page, element: str, value) -> None:
    """Type `value` into the number field with elem_id `element` (a slider's box too)."""
    page.fill(f"#{element} input[type=number]", str(value))
    page.press(f"#{element} input[type=number]", "Tab")
