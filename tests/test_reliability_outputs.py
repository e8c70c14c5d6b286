"""Trust in what commands write (issue 13, docs/RELIABILITY.md section 4): no input is ever
written over, outputs know their source, writes keep the umask and fail in one line."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.mediagen import make_video
from tests.test_generate import FAST_ARGS, SMALL, make_model_dir
from vab.cli import main as vab_main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny")


def generate(*args) -> int:
    return vab_main(["generate", *map(str, args), *FAST_ARGS, "--device", "cpu"])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def outputs(folder: Path) -> set[str]:
    """Names in `folder` except the hidden source records."""
    return {p.name for p in folder.iterdir() if not p.name.endswith(".vab.json")}


# ---------------------------------------------------------------------- 1. never overwrite an input
def test_generate_into_the_videos_own_folder_leaves_the_video_byte_identical(tmp_path, model_dir):
    clip = make_video(tmp_path / "clip.mp4", seconds=1.0, **SMALL)
    before = digest(clip)
    assert generate(clip, "--checkpoint", model_dir, "--out", clip.parent) == 0
    assert digest(clip) == before
    assert outputs(tmp_path) == {"clip.mp4", "clip-vab.wav", "clip-vab.mp4"}
    stamp = (tmp_path / "clip-vab.wav").stat().st_mtime_ns
    assert generate(clip, "--checkpoint", model_dir, "--out", clip.parent) == 0  # skipped: made from this clip
    assert (tmp_path / "clip-vab.wav").stat().st_mtime_ns == stamp
    assert generate(clip, "--checkpoint", model_dir, "--out", clip.parent, "--overwrite") == 0
    assert digest(clip) == before and outputs(tmp_path) == {"clip.mp4", "clip-vab.wav", "clip-vab.mp4"}


def test_links_to_an_input_are_never_written_through(tmp_path, model_dir):
    """An output name that is a hard link or a symlink to an input counts as that input."""
    clip = make_video(tmp_path / "in" / "clip.mp4", seconds=1.0, **SMALL)
    other = make_video(tmp_path / "in" / "other.mp4", seconds=1.0, freq=330.0, **SMALL)
    out = tmp_path / "out"
    out.mkdir()
    os.link(clip, out / "clip.mp4")  # the output name of clip.mp4 is clip.mp4 itself (hard link)
    (out / "other.wav").symlink_to(other)  # ... and other's audio name points at other.mp4
    before = {p: digest(p) for p in (clip, other)}
    assert generate(clip, other, "--checkpoint", model_dir, "--out", out) == 0
    assert {p: digest(p) for p in (clip, other)} == before
    assert outputs(out) == {"clip.mp4", "other.wav", "clip-vab.wav", "clip-vab.mp4", "other-vab.wav", "other-vab.mp4"}


def test_a_prompt_is_an_input_too(tmp_path, model_dir):
    from vab import media
    import numpy as np

    clip = make_video(tmp_path / "clip.mp4", seconds=1.0, **SMALL)
    out = tmp_path / "out"
    prompt = media.write_audio(out / "clip.wav", np.zeros(16000, np.float32), 16000)
    before = digest(prompt)
    assert generate(clip, "--checkpoint", model_dir, "--out", out, "--prompt", prompt) == 0
    assert digest(prompt) == before and (out / "clip-vab.wav").is_file()


# ---------------------------------------------------------------------- 2. outputs know their source
def test_two_videos_with_one_stem_in_two_runs_both_keep_their_soundtrack(tmp_path, model_dir, capsys):
    a = make_video(tmp_path / "a" / "clip.mp4", seconds=1.0, **SMALL)
    b = make_video(tmp_path / "b" / "clip.mp4", seconds=2.0, freq=330.0, **SMALL)
    out = tmp_path / "out"
    assert generate(a, "--checkpoint", model_dir, "--out", out) == 0
    first = digest(out / "clip.wav")
    assert generate(b, "--checkpoint", model_dir, "--out", out) == 0
    assert "exists, skipped" not in capsys.readouterr().err
    assert digest(out / "clip.wav") == first  # a's soundtrack is kept ...
    assert outputs(out) == {"clip.wav", "clip.mp4", "clip-vab.wav", "clip-vab.mp4"}  # ... and b has its own
    # each re-run finds its own outputs
    for video in (a, b):
        assert generate(video, "--checkpoint", model_dir, "--out", out) == 0
        assert "exists, skipped" in capsys.readouterr().err
    assert len(outputs(out)) == 4
    # a changed source (new content, same path) is generated again, in place
    make_video(a, seconds=1.5, freq=550.0, **SMALL)
    assert generate(a, "--checkpoint", model_dir, "--out", out) == 0
    assert "exists, skipped" not in capsys.readouterr().err and digest(out / "clip.wav") != first
    assert len(outputs(out)) == 4


def test_files_vab_did_not_make_are_never_overwritten(tmp_path, model_dir):
    clip = make_video(tmp_path / "clip.mp4", seconds=1.0, **SMALL)
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.wav").write_bytes(b"the user's own recording")
    assert generate(clip, "--checkpoint", model_dir, "--out", out, "--overwrite") == 0
    assert (out / "clip.wav").read_bytes() == b"the user's own recording"
    assert (out / "clip-vab.wav").is_file()
