"""Launch the page with Gradio, offline and local.

Gradio serves its front end (scripts, styles, fonts) from its own package, so the page
renders with no internet; what would reach out is switched off here: usage analytics and
the version check (``analytics_enabled=False``, ``GRADIO_ANALYTICS_ENABLED``), share links
(``share=False``), server-side rendering through Node (``ssr_mode=False``), the MCP server,
run history, the monitoring endpoint and the footer's outside links.  Gradio's uploads and
copies go to the workspace (:meth:`~vab.app.workspace.Workspace.hold_temporary_files`, before
Gradio is first imported), which Gradio ages out after the keep time and the server removes
when it stops.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading
from typing import Callable

from vab.app.backend import Backend
from vab.errors import VabError

GRADIO_MISSING = 'vab app needs Gradio, an optional extra: pip install "vab[app]" (or pip install -e ".[app]")'


def require_gradio() -> None:
    """One clear line instead of an ImportError when the extra is not installed.  Gradio is
    looked up, not imported: importing it fixes its temporary folder, which the workspace
    must set first."""
    try:
        found = importlib.util.find_spec("gradio") is not None
    except (ImportError, ValueError):  # ValueError: a module entry without a spec (blocked import)
        found = False
    if not found:
        raise VabError(GRADIO_MISSING)


def offline_environment(backend: Backend) -> None:
    """Gradio's settings that must hold before it is imported / the page is built."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    backend.workspace.hold_temporary_files()
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def serve(backend: Backend, host: str = "127.0.0.1", port: int = 7860,
          ready: Callable[[str], None] | None = None) -> None:
    """Serve the page at http://host:port until interrupted; `ready(url)` is called once it
    answers.  The workspace is removed on the way out."""
    offline_environment(backend)
    require_gradio()
    # the page imports Gradio, which reads its settings (offline_environment) when it is imported
    from vab.app.page import build_page

    page = build_page(backend)
    backend.workspace.start_sweeping()
    _exit_on_sigterm()
    try:
        try:
            _, url, _ = page.launch(
                server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True,
                max_file_size=f"{backend.limits.max_upload_mb}mb", show_error=False, quiet=True, ssr_mode=False,
                pwa=False, mcp_server=False, run_history=False, enable_monitoring=False, footer_links=[],
                css=_css(),
            )
        except OSError as exc:  # the port is taken, or the address is not this machine's
            raise VabError(f"cannot serve on {host}:{port} ({exc.strerror or exc})") from None
        if ready is not None:
            ready(url)
        page.block_thread()
    finally:
        page.close()
        backend.workspace.close()


def _exit_on_sigterm() -> None:
    """`kill` (SIGTERM) ends the server like Ctrl-C does: through the `finally` that removes
    the workspace, not around it."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


def _css() -> str:
    from vab.app.widgets import CSS  # imported by serve already (Gradio, after its settings)

    return CSS
