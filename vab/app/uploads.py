"""Uploaded files: checked before any work, and every failure told in one line.

An upload arrives as a path in Gradio's cache (``.../uploads/<hash>/<name>``).  The user
knows it by its name only, so messages name the file, not the cache path, and never hold
a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

from vab import media
from vab.errors import MediaError, VabError, describe

NEEDS = ("video", "audio", "media")


def check_upload(
    path: str | os.PathLike | None, need: str, max_seconds: float, what: str = "a file"
) -> media.MediaInfo:
    """The :class:`vab.media.MediaInfo` of an uploaded file, or a MediaError saying why it
    cannot be used: nothing uploaded, not a media file, no stream of the kind `need`ed
    (video, audio, or either: media), or longer than `max_seconds`."""
    if need not in NEEDS:
        raise ValueError(f"need {need!r}: expected one of {NEEDS}")
    if path is None or str(path) == "":
        raise VabError(f"no file: upload {what} first")
    info = media.probe(path)  # MediaError: missing, empty, not a media file, no stream at all
    if need == "video" and not info.has_video:
        raise MediaError(path, "no video stream (upload a video)")
    if need == "audio" and not info.has_audio:
        raise MediaError(path, "no audio stream")
    if info.duration > max_seconds:
        raise MediaError(path, f"too long ({info.duration:.0f} s; this page takes up to {max_seconds:g} s)")
    return info


def one_line(exc: BaseException, uploads: list[str | os.PathLike | None] = ()) -> str:
    """What the page shows for a failed request: a user error's message, or the kind and
    first line of an unexpected one; each upload's cache path replaced by its file name."""
    text = describe(exc)
    for path in uploads:
        if path:
            text = text.replace(str(path), Path(path).name)
    return " ".join(text.split())  # one line, whatever the message held
