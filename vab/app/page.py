"""The page: five tabs over :class:`~vab.app.backend.Backend`, laid out with Gradio.

Every handler here is glue: it reads the widgets, calls the backend, and shows either the
result or one line saying what was wrong (:func:`~vab.app.uploads.one_line`), never a
traceback.  Model-bound work (generate, edit, continue, search, classify) goes through one
:class:`~vab.app.jobs.JobQueue` of ``limits.concurrency`` slots; its handlers stream the
job's place in the queue, its windows and the time left into the tab's status line, and
end with the result or a final line ("stopped after window 3 of 7 ...").  While a tab's job
waits or runs, its Generate button is off and its Stop button on; Stop sets that job's own
flag, so the job ends at its next window and frees its slot only then.

Layout: a short header, then the tabs (wrapping onto a second row on a narrow screen, never
hidden in a menu).  The decoding settings sit in the tabs they serve (Generate, Edit,
Continue), below the tab's button, each with the one-line hint declared with its option
(:mod:`vab.app.widgets`); they are folded on a narrow screen.
"""

from __future__ import annotations

import html
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import gradio as gr  # at module level: Gradio resolves the gr.Request / gr.SelectData hints here
from PIL import Image

from vab import media
from vab.app.backend import Backend, EditPicture, Soundtrack, SoundtrackPlan
from vab.app.jobs import Job, JobQueue, Stopped
from vab.app.uploads import one_line
from vab.app.widgets import (
    PLAYER, Settings, busy, button_states, describe_upload, result_video, run_buttons, settings_panel, status,
    stopped, tells_upload, video_field,
)
from vab.errors import VabError

#: search result slots on the page (the "matches" slider goes up to this)
MAX_MATCHES = 10
#: picture widgets: downloadable, full screen, no "share" button (it posts to a hub)
PICTURE = dict(interactive=False, buttons=["download", "fullscreen"])
#: below this width (CSS pixels) the settings start folded
NARROW = 700

_LOG_LOCK = threading.Lock()


def _log(line: str) -> None:
    """The server's log (stderr): one line per job started and ended (jobs end in their own
    threads, so each line is written whole under a lock)."""
    with _LOG_LOCK:
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} vab app: {line}\n")
        sys.stderr.flush()


# ---------------------------------------------------------------------- the page
def build_page(backend: Backend) -> gr.Blocks:
    """The gr.Blocks of the app (not launched yet)."""
    limits = backend.limits
    jobs = JobQueue(limits.concurrency, limits.queue_size, log=_log)
    keep = limits.keep_seconds
    with gr.Blocks(title="vab", analytics_enabled=False, delete_cache=(max(60, int(keep // 4)), int(keep))) as page:
        _header(backend)
        with gr.Tabs(overflow_behavior="wrap", elem_id="tabs"):
            panels = [_generate_tab(backend, jobs), _edit_tab(backend, jobs), _continue_tab(backend, jobs)]
            _search_tab(backend, jobs)
            _classify_tab(backend, jobs)
        _fold_on_narrow_screens(page, [p.box for p in panels])
    # model-bound events leave Gradio's queue at once (the JobQueue holds them); the others are quick
    page.queue(max_size=limits.queue_size + limits.concurrency)
    return page


def _header(backend: Backend) -> None:
    limits = backend.limits
    gr.HTML(
        "<h1>vab: sound for silent video</h1>"
        f"<p>{html.escape(backend.describe())}.</p>"
        f"<p>Uploads up to {limits.max_upload_mb} MB and {limits.max_seconds / 60:g} min; {limits.concurrency} "
        f"job(s) run at a time and up to {limits.queue_size} wait; results are deleted after "
        f"{limits.keep_seconds / 60:g} min.</p>",
        elem_classes="vab-header",
    )


def _fold_on_narrow_screens(page: gr.Blocks, boxes: list[gr.Accordion]) -> None:
    """Open the settings once the page has loaded on a wide screen; on a narrow one (a
    phone) they stay folded, so the upload and the button come first.  A hidden mark
    ("laid out") tells scripts and tests that this has happened."""
    width = gr.Number(visible=False)
    mark = gr.HTML(visible="hidden", elem_id="laid-out")
    page.load(lambda w: [gr.Accordion(open=bool(w) and w >= NARROW)] * len(boxes) + ["laid out"], [width],
              [*boxes, mark], js="() => [window.innerWidth]", queue=False, api_visibility="private")


# ---------------------------------------------------------------------- soundtrack jobs
def _done_line(track: Soundtrack, plan: SoundtrackPlan, job: Job, keep: float) -> str:
    waited = job.started - job.submitted if job.started is not None else 0.0
    queue = f" after {waited:.0f} s in the queue" if waited >= 1 else ""
    return status(f"{plan.name}: {track.seconds:.1f} s of audio in {track.windows} window(s), {track.wall:.1f} s"
                  f"{queue}; kept for {keep / 60:g} min")


def _soundtrack_handler(kind: str, backend: Backend, jobs: JobQueue, settings: Settings, extra: int,
                        plan_kwargs: Callable[..., dict], shown: Callable[[Soundtrack], list], results: int):
    """The async handler of a Generate / Edit / Continue button.  Its inputs: the video,
    `extra` more tab inputs (turned into plan_soundtrack keywords by `plan_kwargs`), then
    the settings; its outputs: status, run button, Stop button, then `results` widgets
    (filled by `shown`).  It streams the job's progress and ends with the result, the final
    "stopped" line or one line saying what failed."""
    skip = [gr.skip()] * results

    async def handler(request: gr.Request, video, *values):
        uploads = [video, *values[:extra]]
        try:
            sampling, duration, audio_format = settings.read(list(values[extra:]))
            plan = backend.plan_soundtrack(kind, video, sampling, duration=duration, audio_format=audio_format,
                                           **plan_kwargs(*values[:extra]))
            job = jobs.submit(kind, (request.session_hash, kind), plan.video.name,
                              lambda job: backend.soundtrack(plan, job.progress), plan.windows, plan.sampling.steps)
        except Exception as exc:  # noqa: BLE001 - one line, the buttons as they were
            yield status(one_line(exc, uploads), kind), *button_states(False), *skip
            return
        yield busy(jobs.update(job)), *button_states(True), *[None] * results  # the last result goes
        async for update in jobs.follow(job):
            yield busy(update), gr.skip(), button_states(True, job.stop.is_set())[1], *skip
        if isinstance(job.error, Stopped):
            yield stopped(f"{job.error}; nothing was written"), *button_states(False), *skip
        elif job.error is not None:
            yield status(one_line(job.error, uploads), kind), *button_states(False), *skip
        else:
            done = _done_line(job.result, plan, job, backend.limits.keep_seconds)
            yield done, *button_states(False), *shown(job.result)

    return handler


def _wire_soundtrack(kind: str, backend: Backend, jobs: JobQueue, inputs: list, settings: Settings,
                     plan_kwargs: Callable[..., dict], run: gr.Button, stop: gr.Button, state: gr.HTML,
                     outputs: list, shown: Callable[[Soundtrack], list]) -> None:
    """The run and Stop buttons of a soundtrack tab."""
    handler = _soundtrack_handler(kind, backend, jobs, settings, len(inputs) - 1, plan_kwargs, shown, len(outputs))
    run.click(handler, [*inputs, *settings.widgets], [state, run, stop, *outputs], api_name=kind,
              show_progress="hidden", concurrency_limit=None)

    def on_stop(request: gr.Request) -> None:
        jobs.stop((request.session_hash, kind))  # the job's own stream says "stopping", then "stopped"

    stop.click(on_stop, None, None, queue=False, api_name=f"stop_{kind}")


# ---------------------------------------------------------------------- tabs
def _generate_tab(backend: Backend, jobs: JobQueue) -> Settings:
    max_seconds = backend.limits.max_seconds
    with gr.Tab("Generate", id="generate"):
        with gr.Row():
            with gr.Column():
                video = video_field("generate")
                examples, copies = _examples(backend)
                run, stop, state = run_buttons("generate", "Generate")
                settings = settings_panel("generate")
            with gr.Column():
                result = result_video("generate", "video with its new soundtrack")
                audio = gr.Audio(label="soundtrack", **PLAYER, elem_id="generate-audio")
                download = gr.File(label="download", file_count="multiple", interactive=False,
                                   elem_id="generate-download")
                plot = gr.Image(label="frames over the spectrogram", **PICTURE, elem_id="generate-plot")
    tells_upload(video, state, "video", max_seconds)
    if examples is not None:
        examples.select(_pick_example(copies, max_seconds), None, [video, state], api_visibility="private")
    _wire_soundtrack("generate", backend, jobs, [video], settings, lambda: {}, run, stop, state,
                     [result, audio, download, plot],
                     lambda t: [str(t.video), str(t.audio), [str(t.audio), str(t.video)], str(t.plot)])
    return settings


def _examples(backend: Backend) -> tuple[gr.Gallery | None, list[Path]]:
    """The demo's held-out clips as thumbnails (a frame with the object in view) captioned
    with their class, and copies of the clips in the workspace (the page serves nothing
    from outside it): picking a thumbnail puts its copy in the upload field."""
    shown, copies = [], []
    folder = backend.workspace.root / "examples"
    for example in backend.examples:
        try:
            folder.mkdir(exist_ok=True)
            frames, _ = media.read_frames(example.path, 100.0, example.in_view, example.in_view + 0.01,
                                          max_short_side=160)
            thumbnail = _save_jpeg(frames[0], folder / f"{example.path.stem}.jpg")
            copy = Path(shutil.copyfile(example.path, folder / example.path.name))
        except (OSError, VabError, IndexError):
            continue  # an example that cannot be read is simply not offered
        shown.append((str(thumbnail), example.label))
        copies.append(copy)
    if not shown:
        return None, []
    return gr.Gallery(shown, label="or pick a held-out clip of the demo", columns=4, rows=1, height=150,
                      allow_preview=False, object_fit="contain", buttons=[], elem_id="generate-examples"), copies


def _save_jpeg(frame, path: Path) -> Path:
    Image.fromarray(frame).save(path, quality=90)
    return path


def _pick_example(copies: list[Path], max_seconds: float):
    def pick(evt: gr.SelectData):
        clip = str(copies[evt.index])
        return clip, describe_upload(clip, "video", max_seconds)

    return pick


def _edit_tab(backend: Backend, jobs: JobQueue) -> Settings:
    max_seconds = backend.limits.max_seconds
    with gr.Tab("Edit", id="edit"):
        with gr.Row():
            with gr.Column():
                video = video_field("edit", "video (its own soundtrack is edited)")
                picture = gr.Image(label="its soundtrack: click where a span starts, then where it ends",
                                   **PICTURE, elem_id="edit-spectrogram")
                spans = gr.Textbox(label="spans to regenerate (seconds)", placeholder="2.5-4.0,7-8",
                                   info="clicked on the picture, or typed (Enter draws them)", elem_id="edit-spans")
                note = gr.HTML(elem_id="edit-note", elem_classes="vab-status")  # what the picture and spans say
                run, stop, state = run_buttons("edit", "Edit")
                settings = settings_panel("edit")
            with gr.Column():
                with gr.Row():
                    original = gr.Audio(label="original", **PLAYER, elem_id="edit-original")
                    audio = gr.Audio(label="edited", **PLAYER, elem_id="edit-audio")
                result = result_video("edit", "video with the edited soundtrack")
                plot = gr.Image(label="frames over the spectrogram, the regenerated spans shaded", **PICTURE,
                                elem_id="edit-plot")
        picked = gr.State(None)  # the picture's facts, the spans it shows and a span's first click
    tells_upload(video, state, "video", max_seconds)
    gr.on([video.upload, video.clear], _edit_redraw(backend, always=True), [video, spans, picked],
          [note, picture, picked], api_visibility="private")
    # the spans typed last are the ones drawn, however fast they are typed; no click is dropped
    gr.on([spans.submit, spans.blur], _edit_redraw(backend, always=False), [video, spans, picked],
          [note, picture, picked], api_visibility="private", trigger_mode="always_last")
    picture.select(_edit_click(backend), [video, spans, picked], [spans, note, picture, picked],
                   api_visibility="private", trigger_mode="multiple")
    _wire_soundtrack("edit", backend, jobs, [video, spans], settings, lambda s: {"edit": s}, run, stop, state,
                     [original, audio, result, plot],
                     lambda t: [str(t.original), str(t.audio), str(t.video), str(t.plot)])
    return settings


def _picked(picture: EditPicture, spans: str, start: float | None = None) -> dict:
    return {"seconds": picture.seconds, "columns": list(picture.columns), "spans": spans, "start": start}


def _spans_line(picture: EditPicture, spans: str) -> str:
    told = f"to regenerate: {spans} (s)" if spans.strip() else "no spans yet: click a start and an end, or type them"
    return status(f"{picture.path.stem.removesuffix('-soundtrack')}: {picture.seconds:.2f} s; {told}")


def _edit_redraw(backend: Backend, always: bool):
    """The Edit picture of the upload with the typed spans drawn (a new upload: `always`;
    typed spans: when they changed); a bad span is one red line under them."""

    def redraw(video, spans, picked):
        spans = spans or ""
        if not video:
            return "", None, None
        if not always and picked and picked["spans"] == spans:
            return gr.skip(), gr.skip(), gr.skip()  # drawn already (Enter, then a click elsewhere)
        try:
            picture = backend.edit_picture(video, spans)
        except Exception as exc:  # noqa: BLE001
            return status(one_line(exc, [video]), "spans"), gr.skip(), gr.skip()
        return _spans_line(picture, spans), str(picture.path), _picked(picture, spans)

    return redraw


def _edit_click(backend: Backend):
    """A click on the Edit picture: the first marks a span's start, the second its end (the
    span is added and drawn)."""

    def click(video, spans, picked, evt: gr.SelectData):
        if not picked or not video or not isinstance(evt.index, (list, tuple)):
            return gr.skip(), status("upload a video first", "span"), gr.skip(), gr.skip()
        t = EditPicture(Path(), picked["seconds"], tuple(picked["columns"])).time_at(evt.index[0])
        if picked["start"] is None:
            return gr.skip(), status(f"span starts at {t:.2f} s: now click its end"), gr.skip(), {**picked, "start": t}
        a, b = sorted((picked["start"], t))
        text = ",".join(filter(None, [(spans or "").strip(), f"{a:.2f}-{b:.2f}"]))
        try:
            drawn = backend.edit_picture(video, text)
        except Exception as exc:  # noqa: BLE001
            return gr.skip(), status(one_line(exc, [video]), "span"), gr.skip(), {**picked, "start": None}
        return text, status(f"added {a:.2f}-{b:.2f} s"), str(drawn.path), _picked(drawn, text)

    return click


def _continue_tab(backend: Backend, jobs: JobQueue) -> Settings:
    max_seconds = backend.limits.max_seconds
    with gr.Tab("Continue", id="continue"):
        with gr.Row():
            with gr.Column():
                video = video_field("continue")
                prompt = gr.Audio(label="prompt audio to continue", sources=["upload", "microphone"],
                                  type="filepath", elem_id="continue-prompt")
                seconds = gr.Number(0, label="use the prompt's first seconds (0: all)", elem_id="continue-seconds")
                run, stop, state = run_buttons("continue", "Continue")
                settings = settings_panel("continue")
            with gr.Column():
                result = result_video("continue", "video with the continued soundtrack")
                audio = gr.Audio(label="soundtrack", **PLAYER, elem_id="continue-audio")
                plot = gr.Image(label="frames over the spectrogram, the continuation shaded", **PICTURE,
                                elem_id="continue-plot")
    tells_upload(video, state, "video", max_seconds)
    tells_upload(prompt, state, "audio", max_seconds)

    def plan_kwargs(audio, first):
        try:
            first = float(first) if first not in (None, "") else 0.0
        except (TypeError, ValueError):
            raise VabError("the prompt's first seconds: a number, please") from None
        return {"prompt": audio, "prompt_seconds": first or None}

    _wire_soundtrack("continue", backend, jobs, [video, prompt, seconds], settings, plan_kwargs, run, stop, state,
                     [result, audio, plot], lambda t: [str(t.video), str(t.audio), str(t.plot)])
    return settings


# ---------------------------------------------------------------------- search and classify
def _quick_handler(kind: str, jobs: JobQueue, work: Callable[..., Any], show: Callable[[Any, list], list],
                   results: int):
    """The async handler of Search / Classify: the work goes through the job queue (it uses
    the models), the button is off while it waits or runs; outputs: status, button, results."""
    skip = [gr.skip()] * results

    async def handler(request: gr.Request, upload, *values):
        try:
            job = jobs.submit(kind, (request.session_hash, kind), Path(upload).name if upload else "(nothing)",
                              lambda job: work(upload, *values))
        except Exception as exc:  # noqa: BLE001 - the queue is full
            yield status(one_line(exc, [upload]), kind), gr.skip(), *skip
            return
        yield busy(jobs.update(job)), gr.Button(interactive=False), *skip
        async for update in jobs.follow(job):
            yield busy(update), gr.skip(), *skip
        if job.error is not None:
            yield status(one_line(job.error, [upload]), kind), gr.Button(interactive=True), *skip
        else:
            line, *shown = show(job.result, [upload, *values])
            yield line, gr.Button(interactive=True), *shown

    return handler


def _search_tab(backend: Backend, jobs: JobQueue) -> None:
    index = backend.index
    with gr.Tab("Search", id="search"):
        gr.Markdown(
            f"**The index:** {html.escape(backend.index_summary())}.  "
            + ("Its model reads both sound and picture: a video finds the clips whose sound fits it, an audio "
               "file the clips whose picture fits the sound." if index is not None else
               "(`vab app --index DIR` loads one made by `vab embed`.)"),
            elem_id="search-about",
        )
        with gr.Row():
            with gr.Column():
                query = gr.File(label="query: a video or an audio file", elem_id="search-query")
                by = gr.Radio(["auto", "video", "audio"], value="auto", label="query by",
                              info="auto: by the picture when the file has one, else by its sound")
                top = gr.Slider(1, MAX_MATCHES, value=5, step=1, label="matches")
                button = gr.Button("Search", variant="primary", elem_id="search-button",
                                   interactive=index is not None)
                state = gr.HTML(elem_id="search-status", elem_classes="vab-status")
            with gr.Column():
                table = gr.Dataframe(headers=["rank", "id", "labels", "cosine", "plays"], interactive=False,
                                     elem_id="search-table")
                slots = []
                for k in range(MAX_MATCHES):
                    slots.append(gr.Audio(visible=False, **PLAYER, elem_id=f"match-audio-{k}"))
                    slots.append(gr.Video(visible=False, **PLAYER, elem_id=f"match-video-{k}"))
    max_seconds = backend.limits.max_seconds
    tells_upload(query, state, "media", max_seconds)
    work = lambda upload, how, count: backend.search(upload, how, int(count))  # noqa: E731
    button.click(_quick_handler("search", jobs, work, _shown_matches(len(index) if index else 0), 1 + len(slots)),
                 [query, by, top], [state, button, table, *slots], api_name="search", show_progress="hidden",
                 concurrency_limit=None)


def _shown_matches(size: int):
    def show(matches, _inputs) -> list:
        rows = [[m.rank, m.id, ", ".join(m.labels), round(m.score, 4), m.note or m.modality] for m in matches]
        slots = []
        for k in range(MAX_MATCHES):
            m = matches[k] if k < len(matches) else None
            title = f"#{m.rank} {m.id} (cosine {m.score:.3f})" if m else None
            play = m is not None and m.preview is not None
            slots.append(gr.update(value=str(m.preview) if play and m.modality == "audio" else None, label=title,
                                   visible=play and m.modality == "audio"))
            slots.append(gr.update(value=str(m.preview) if play and m.modality == "video" else None, label=title,
                                   visible=play and m.modality == "video"))
        within = matches[0].modality if matches else "?"
        return [status(f"{len(matches)} closest {within} clip(s) of {size}"), rows, *slots]

    return show


def _classify_tab(backend: Backend, jobs: JobQueue) -> None:
    names = list(backend.classifiers)
    with gr.Tab("Classify", id="classify"):
        if names:
            about = "  \n".join(html.escape(c.summary()) for c in backend.classifiers.values())
            gr.Markdown(f"**Loaded:**  \n{about}  \nA classifier answers only with its own labels, whatever the "
                        "clip shows.", elem_id="classify-about")
        else:
            gr.Markdown("No classifier is loaded (`vab app --classifier DIR` loads one made by "
                        "`finetune/classification.py`).", elem_id="classify-about")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="a video or an audio file", elem_id="classify-file")
                name = gr.Radio([(f"{n} ({backend.classifiers[n].mode})", n) for n in names],
                                value=names[0] if names else None, label="classifier",
                                info="a file without what it reads goes to a loaded classifier that reads it")
                button = gr.Button("Classify", variant="primary", elem_id="classify-button", interactive=bool(names))
                state = gr.HTML(elem_id="classify-status", elem_classes="vab-status")
            with gr.Column():
                labels = gr.Label(num_top_classes=5, label="top 5", elem_id="classify-labels")
    max_seconds = backend.limits.max_seconds
    tells_upload(upload, state, "media", max_seconds)

    def show(answer, inputs) -> list:
        best = next(iter(answer.scores))
        line = f"{Path(inputs[0]).name}: {best} ({answer.scores[best]:.0%}) by {answer.classifier.name}"
        return [status(line + (f"; {answer.note}" if answer.note else "")), answer.scores]

    button.click(_quick_handler("classify", jobs, backend.classify, show, 1), [upload, name],
                 [state, button, labels], api_name="classify", show_progress="hidden", concurrency_limit=None)
