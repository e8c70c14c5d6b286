"""Shared test fixtures: tests make all their media themselves with PyAV."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# CI runs hypothesis derandomized (examples follow from each test alone), so a failure there is
# the same failure on a rerun and on a developer's machine with CI=1; `.ci/run` sets CI=1.
# Locally the examples stay random (and the failing ones are kept in .hypothesis/).  Recent
# hypothesis releases load such a profile by themselves when CI is set; older ones do not.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

from tests.mediagen import make_video  # noqa: E402,F401


@pytest.fixture
def video_factory(tmp_path):
    """`video_factory(name, **kwargs)` writes a test video under tmp_path (see make_video)."""

    def _make(name: str = "clip.mp4", **kwargs):
        return make_video(tmp_path / name, **kwargs)

    return _make


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """Every file of the real-media corpus (tests/corpus.py), written once per test session:
    ``{name: Item}``; short files in one folder, the 30-minute one in another."""
    from tests.corpus import build_corpus

    return build_corpus(tmp_path_factory.mktemp("corpus"))


def free_port() -> int:
    """A free TCP port on localhost, so concurrent `accelerate launch` runs do not collide on 29500."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
