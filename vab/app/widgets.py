"""The parts the page is built of: status lines, a tab's settings panel (generated from
:class:`~vab.generation.sampling.SamplingConfig`, each field with its one-line hint), upload
fields that say at once what was uploaded, result fields and the run / Stop buttons.
"""

from __future__ import annotations

import html
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr  # an optional extra: the page's modules are imported only once serve() found it

from vab.app.backend import AUDIO_FORMATS
from vab.app.jobs import Update
from vab.app.uploads import check_upload, one_line
from vab.errors import VabError
from vab.generation.sampling import SamplingConfig, sampling_options

#: output widgets: downloadable, and no "share" button (it posts to a hub)
PLAYER = dict(interactive=False, buttons=["download"])
#: the largest seed "new seed" draws (small enough to read and type back)
SEED_RANGE = 1_000_000
#: the largest seed the page takes (a seed is part of the result's file name)
SEED_MAX = 2**63 - 1
#: height of an upload field for a video (px): the button below it stays on a phone's first screen
VIDEO_HEIGHT = 200
#: height of a result video (px)
RESULT_HEIGHT = 320
#: the slider's range for steps (the CLI takes any number >= 1)
STEPS_RANGE = (1, 64)

CSS = """
.vab-status p { margin: 0.2em 0; }
.vab-status progress { width: 100%; height: 0.5em; }
.vab-error { color: #b91c1c; font-weight: 600; }
.vab-ok { color: #166534; }
.vab-busy { color: #1e40af; }
.vab-stopped { color: #92400e; font-weight: 600; }
.vab-header p { margin: 0.1em 0; font-size: 0.9em; }
.vab-header h1 { margin: 0 0 0.2em 0; }
@media (max-width: 699px) {
  .vab-header h1 { font-size: 1.4em; }
  .vab-header p { font-size: 0.8em; }
}
"""


# ---------------------------------------------------------------------- status lines
def status(text: str, failed: str | None = None) -> str:
    """The one-line status under a tab's buttons (HTML, the text escaped); `failed` names
    what failed ("upload", "generate" ...) and shows the line as an error."""
    if failed is None:
        return f'<p class="vab-ok">{html.escape(text)}</p>'
    return f'<p class="vab-error">{html.escape(f"{failed} failed: {text}")}</p>'


def busy(update: Update) -> str:
    """A waiting or running job's line, with a bar of the windows done."""
    bar = "" if update.fraction is None else f'<progress value="{update.fraction:.3f}" max="1"></progress>'
    return f'<p class="vab-busy">{html.escape(update.line)}</p>{bar}'


def stopped(text: str) -> str:
    return f'<p class="vab-stopped">{html.escape(text)}</p>'


# ---------------------------------------------------------------------- settings
@dataclass
class Settings:
    """A tab's decoding settings: one widget per SamplingConfig field (in its order), then
    seconds from the start and the download format; `box` folds them."""

    box: gr.Accordion
    widgets: list[gr.components.Component]

    def read(self, values: list[Any]) -> tuple[SamplingConfig, float | None, str]:
        """(sampling, duration or None for all, audio format) from the widgets' values."""
        options = sampling_options()
        sampling, (duration, audio_format) = values[: len(options)], values[len(options):]
        try:
            fields = {o.name: _integer(v) if o.kind is int else o.kind(v) for o, v in zip(options, sampling)}
            duration = float(duration) if duration not in (None, "") else 0.0
        except (TypeError, ValueError, OverflowError):
            raise VabError("settings: every field needs a number") from None
        if duration != duration or duration < 0:
            raise VabError(f"seconds from the start must be >= 0 (0: all of it), got {duration:g}")
        return SamplingConfig(**fields), duration or None, str(audio_format)


def _integer(value: Any) -> int:
    number = float(value)
    if number != int(number):
        raise ValueError(value)
    return int(number)


def settings_panel(tab: str) -> Settings:
    """The settings panel of `tab`, generated from SamplingConfig with each field's hint;
    the seed comes first, with a button that draws a new one."""
    options = {o.name: o for o in sampling_options()}
    widgets: dict[str, gr.components.Component] = {}
    with gr.Accordion("Settings", open=False, elem_id=f"{tab}-settings") as box:
        seed = options["seed"]
        with gr.Row(equal_height=False):
            widgets["seed"] = gr.Number(seed.default, precision=0, minimum=0, maximum=SEED_MAX, label=seed.label,
                                        info=seed.hint, scale=4, min_width=160, elem_id=f"{tab}-seed")
            renew = gr.Button("new seed", size="sm", scale=1, min_width=90, elem_id=f"{tab}-new-seed")
        renew.click(lambda: random.randrange(SEED_RANGE), None, [widgets["seed"]], queue=False,
                    api_visibility="private")
        for option in options.values():
            common = dict(label=option.label, info=option.hint, elem_id=f"{tab}-{option.name}")
            if option.name == "steps":
                widgets[option.name] = gr.Slider(*STEPS_RANGE, value=option.default, step=1, **common)
            elif option.choices:
                widgets[option.name] = gr.Dropdown(list(option.choices), value=option.default, **common)
            elif option.name != "seed":
                widgets[option.name] = gr.Number(option.default, precision=0 if option.kind is int else None, **common)
        duration = gr.Number(0, label="seconds from the start", elem_id=f"{tab}-duration",
                             info="make the soundtrack of the video's first seconds only: more take longer "
                                  "(0: all of it)")
        audio_format = gr.Radio(list(AUDIO_FORMATS), value="wav", label="download format", elem_id=f"{tab}-format",
                                info="the soundtrack's file: wav, or flac (lossless, about half the size)")
    return Settings(box, [widgets[name] for name in options] + [duration, audio_format])


# ---------------------------------------------------------------------- fields and buttons
def describe_upload(path: str | None, need: str, max_seconds: float) -> str:
    """The status line for an upload: its length, size and frame rate, or why it cannot be used."""
    if not path:
        return ""
    try:
        info = check_upload(path, need, max_seconds)
    except Exception as exc:  # noqa: BLE001 - shown as one line, never raised to the page
        return status(one_line(exc, [path]), "upload")
    parts = [f"{Path(path).name}: {info.duration:.1f} s"]
    if info.has_video:
        parts.append(f"{info.width} x {info.height}" + (f" at {info.fps:.3g} fps" if info.fps else ""))
    parts.append("with sound" if info.has_audio else "no sound")
    return status(", ".join(parts))


def tells_upload(field: gr.components.Component, state: gr.HTML, need: str, max_seconds: float) -> None:
    """An upload into `field` is described (or refused) at once in the status line `state`."""
    field.upload(lambda path: describe_upload(path, need, max_seconds), [field], [state], api_visibility="private")


def video_field(tab: str, label: str = "video") -> gr.Video:
    return gr.Video(label=label, sources=["upload"], height=VIDEO_HEIGHT, elem_id=f"{tab}-video")


def result_video(tab: str, label: str) -> gr.Video:
    return gr.Video(label=label, **PLAYER, height=RESULT_HEIGHT, elem_id=f"{tab}-result")


def button_states(running: bool, stopping: bool = False) -> tuple[Any, Any]:
    """(run button, Stop button) updates: one of them on at a time."""
    return gr.Button(interactive=not running), gr.Button(interactive=running and not stopping)


def run_buttons(tab: str, label: str) -> tuple[gr.Button, gr.Button, gr.HTML]:
    with gr.Row():
        run = gr.Button(label, variant="primary", elem_id=f"{tab}-button")
        stop = gr.Button("Stop", variant="stop", interactive=False, elem_id=f"{tab}-stop")
    return run, stop, gr.HTML(elem_id=f"{tab}-status", elem_classes="vab-status")


