"""The page: five tabs over :class:`~vab.app.backend.Backend`, laid out with Gradio.

Every handler here is glue: it reads the widgets, calls the backend, and shows either the
result or one line saying what was wrong (:func:`~vab.app.uploads.one_line`), never a
traceback.  The model-bound handlers (generate, edit, continue, search, classify) share one
queue slot group, ``models``, of ``limits.concurrency`` slots; waiting jobs see their place
in the queue where their result will appear.  Stop ends a running job at its next window
(a per-session flag the backend polls) and takes a waiting one off the queue.
"""

from __future__ import annotations

import html
import shutil
import threading
from pathlib import Path

import gradio as gr  # at module level: Gradio resolves the gr.Request / gr.SelectData hints here

from vab.app.backend import AUDIO_FORMATS, Backend, Soundtrack
from vab.app.uploads import check_upload, one_line
from vab.errors import VabError
from vab.generation.sampling import SamplingConfig

#: search result slots on the page (the "matches" slider goes up to this)
MAX_MATCHES = 10
#: the queue slot group every model-bound handler shares
MODELS = "models"
#: output widgets: downloadable, and no "share" button (it posts to a hub)
PLAYER = dict(interactive=False, buttons=["download"])
PICTURE = dict(interactive=False, buttons=["download", "fullscreen"])

CSS = """
.vab-status p { margin: 0.2em 0; }
.vab-error { color: #b91c1c; font-weight: 600; }
.vab-ok { color: #166534; }
"""


def status(text: str, failed: str | None = None) -> str:
    """The one-line status under a tab's buttons (HTML, the text escaped); `failed` names
    what failed ("upload", "generate" ...) and shows the line as an error."""
    if failed is None:
        return f'<p class="vab-ok">{html.escape(text)}</p>'
    return f'<p class="vab-error">{html.escape(f"{failed} failed: {text}")}</p>'


class StopFlags:
    """One stop flag per browser session and tab: Stop sets it, that tab's running job polls it."""

    def __init__(self) -> None:
        self._flags: dict[tuple[str, str], threading.Event] = {}
        self._lock = threading.Lock()

    def _flag(self, key: tuple[str, str]) -> threading.Event:
        with self._lock:
            return self._flags.setdefault(key, threading.Event())

    def start(self, session: str, tab: str) -> threading.Event:
        """A job starts: its flag is cleared and returned for polling."""
        flag = self._flag((session, tab))
        flag.clear()
        return flag

    def stop(self, session: str, tab: str) -> None:
        self._flag((session, tab)).set()

    def finish(self, session: str, tab: str) -> None:
        with self._lock:
            self._flags.pop((session, tab), None)


def build_page(backend: Backend):
    """The gr.Blocks of the app (not launched yet)."""
    limits = backend.limits
    flags = StopFlags()
    defaults = SamplingConfig()
    keep = limits.keep_seconds

    def describe(path: str | None, need: str) -> str:
        if not path:
            return ""
        try:
            info = check_upload(path, need, limits.max_seconds)
        except Exception as exc:  # noqa: BLE001 - shown as one line, never raised to the page
            return status(one_line(exc, [path]), "upload")
        parts = [f"{Path(path).name}: {info.duration:.1f} s"]
        if info.has_video:
            parts.append(f"{info.width} x {info.height}" + (f" at {info.fps:.3g} fps" if info.fps else ""))
        parts.append("with sound" if info.has_audio else "no sound")
        return status(", ".join(parts))

    def sampling_of(steps, guidance, mask_temperature, temperature, seed) -> SamplingConfig:
        try:
            return SamplingConfig(steps=int(steps), guidance=float(guidance), mask_temperature=float(mask_temperature),
                                  temperature=float(temperature), seed=int(seed))
        except (TypeError, ValueError):
            raise VabError("decoding settings: every field needs a number") from None

    def run_soundtrack(tab: str, request: gr.Request, progress, video, settings, **kwargs) -> Soundtrack:
        """backend.soundtrack with the page's settings, its progress bar and its tab's Stop button."""
        flag = flags.start(request.session_hash, tab)
        steps, guidance, mask_temperature, temperature, seed, duration, audio_format = settings
        try:
            return backend.soundtrack(
                video, sampling_of(steps, guidance, mask_temperature, temperature, seed),
                duration=float(duration) if duration else None, audio_format=audio_format,
                progress=lambda done, total: progress((done, total), desc="windows", unit="windows"),
                should_stop=flag.is_set, **kwargs,
            )
        finally:
            flags.finish(request.session_hash, tab)

    def done_line(track: Soundtrack, what: str) -> str:
        return status(f"{what}: {track.seconds:.1f} s of audio in {track.windows} window(s), {track.wall:.1f} s; "
                      f"kept for {keep / 60:g} min")

    # ------------------------------------------------------------------ handlers
    def on_generate(video, steps, guidance, mask_temperature, temperature, seed, duration, audio_format,
                    request: gr.Request, progress=gr.Progress()):
        settings = (steps, guidance, mask_temperature, temperature, seed, duration, audio_format)
        try:
            track = run_soundtrack("generate", request, progress, video, settings)
        except Exception as exc:  # noqa: BLE001
            return status(one_line(exc, [video]), "generate"), None, None, None, None
        return done_line(track, "generated"), str(track.video), str(track.audio), str(track.audio), str(track.plot)

    def on_edit(video, spans, steps, guidance, mask_temperature, temperature, seed, duration, audio_format,
                request: gr.Request, progress=gr.Progress()):
        settings = (steps, guidance, mask_temperature, temperature, seed, duration, audio_format)
        try:
            if not (spans or "").strip():
                raise VabError("no spans: type them (2.5-4.0,7-8) or click start and end on the spectrogram")
            track = run_soundtrack("edit", request, progress, video, settings, edit=spans)
        except Exception as exc:  # noqa: BLE001
            return status(one_line(exc, [video]), "edit"), None, None, None, None
        return (done_line(track, "edited"), str(track.original), str(track.audio), str(track.video),
                str(track.plot))

    def on_continue(video, prompt, prompt_seconds, steps, guidance, mask_temperature, temperature, seed, duration,
                    audio_format, request: gr.Request, progress=gr.Progress()):
        settings = (steps, guidance, mask_temperature, temperature, seed, duration, audio_format)
        try:
            if not prompt:
                raise VabError("no prompt: upload or record the audio to continue")
            track = run_soundtrack("continue", request, progress, video, settings, prompt=prompt,
                                   prompt_seconds=float(prompt_seconds) if prompt_seconds else None)
        except Exception as exc:  # noqa: BLE001
            return status(one_line(exc, [video, prompt]), "continue"), None, None, None
        return done_line(track, "continued"), str(track.video), str(track.audio), str(track.plot)

    def stopper(tab: str):
        def on_stop(request: gr.Request):
            flags.stop(request.session_hash, tab)
            return status("stopping: the job ends after its current window")

        return on_stop

    def on_edit_upload(video):
        line = describe(video, "video")
        if not video or "vab-error" in line:
            return line, None, None
        try:
            picture, seconds = backend.spectrogram(video)
        except Exception as exc:  # noqa: BLE001
            return status(one_line(exc, [video]), "upload"), None, None
        return line, picture, {"seconds": seconds, "width": picture.shape[1], "start": None}

    def on_spectrogram_click(spans, picked, evt: gr.SelectData):
        if not picked or not isinstance(evt.index, (list, tuple)):
            return spans, picked, status("upload a video first", "span")
        t = max(0.0, min(1.0, evt.index[0] / picked["width"])) * picked["seconds"]
        if picked["start"] is None:
            return spans, {**picked, "start": t}, status(f"span starts at {t:.2f} s: now click its end")
        a, b = sorted((picked["start"], t))
        text = ",".join(filter(None, [(spans or "").strip(), f"{a:.2f}-{b:.2f}"]))
        return text, {**picked, "start": None}, status(f"added {a:.2f}-{b:.2f} s")

    def on_search(query, by, top):
        hidden = [gr.update(value=None, visible=False)] * (2 * MAX_MATCHES)
        try:
            matches = backend.search(query, by, int(top))
        except Exception as exc:  # noqa: BLE001
            return [status(one_line(exc, [query]), "search"), None, *hidden]
        rows = [[m.rank, m.id, ", ".join(m.labels), round(m.score, 4), m.note or m.modality] for m in matches]
        slots = []
        for k in range(MAX_MATCHES):
            m = matches[k] if k < len(matches) else None
            title = f"#{m.rank} {m.id} (cosine {m.score:.3f})" if m else None
            show = m is not None and m.preview is not None
            slots.append(gr.update(value=str(m.preview) if show and m.modality == "audio" else None, label=title,
                                   visible=show and m.modality == "audio"))
            slots.append(gr.update(value=str(m.preview) if show and m.modality == "video" else None, label=title,
                                   visible=show and m.modality == "video"))
        within = matches[0].modality if matches else "?"
        return [status(f"{len(matches)} closest {within} clip(s) of {len(backend.index)}"), rows, *slots]

    def on_classify(path, name):
        try:
            scores = backend.classify(path, name)
        except Exception as exc:  # noqa: BLE001
            return status(one_line(exc, [path]), "classify"), None
        best = next(iter(scores))
        return status(f"{Path(path).name}: {best} ({scores[best]:.0%})"), scores

    # ------------------------------------------------------------------ layout
    examples = _serveable(backend.examples, backend.workspace.root / "examples")
    with gr.Blocks(title="vab", analytics_enabled=False, delete_cache=(max(60, int(keep // 4)), int(keep))) as page:
        gr.Markdown(
            f"# vab: sound for silent video\n{html.escape(backend.describe())}.  "
            f"Uploads up to {limits.max_upload_mb} MB and {limits.max_seconds / 60:g} min; "
            f"{limits.concurrency} job(s) run at a time and up to {limits.queue_size} wait "
            "(a waiting job shows its place in the queue where its result will appear); "
            f"results are deleted after {keep / 60:g} min."
        )
        with gr.Accordion("Decoding settings (Generate, Edit, Continue)", open=True):
            with gr.Row():
                steps = gr.Slider(1, 64, value=defaults.steps, step=1, label="steps per window", elem_id="steps")
                guidance = gr.Number(defaults.guidance, label="guidance (cfg)", elem_id="guidance")
                mask_temperature = gr.Number(defaults.mask_temperature, label="mask temperature")
                temperature = gr.Number(defaults.temperature, label="temperature (0 = argmax)")
            with gr.Row():
                seed = gr.Number(defaults.seed, precision=0, label="seed", elem_id="seed")
                duration = gr.Number(0, label="seconds from the start (0: all)", elem_id="duration")
                audio_format = gr.Radio(list(AUDIO_FORMATS), value="wav", label="download format")
        settings = [steps, guidance, mask_temperature, temperature, seed, duration, audio_format]

        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                with gr.Row():
                    with gr.Column():
                        gen_video = gr.Video(label="video", sources=["upload"], elem_id="generate-video")
                        if examples:
                            gr.Examples([[str(p)] for p in examples], inputs=[gen_video],
                                        label="held-out clips of the demo")
                        with gr.Row():
                            gen_button = gr.Button("Generate", variant="primary", elem_id="generate-button")
                            gen_stop = gr.Button("Stop", variant="stop", elem_id="generate-stop")
                        gen_status = gr.HTML(elem_id="generate-status", elem_classes="vab-status")
                    with gr.Column():
                        gen_result = gr.Video(label="video with its new soundtrack", **PLAYER,
                                              elem_id="generate-result")
                        gen_audio = gr.Audio(label="soundtrack", **PLAYER, elem_id="generate-audio")
                        gen_file = gr.File(label="download", interactive=False, elem_id="generate-download")
                gen_plot = gr.Image(label="frames over the spectrogram", **PICTURE, elem_id="generate-plot")

            with gr.Tab("Edit", id="edit"):
                with gr.Row():
                    with gr.Column():
                        edit_video = gr.Video(label="video (its own soundtrack is edited)", sources=["upload"],
                                              elem_id="edit-video")
                        edit_picture = gr.Image(label="its soundtrack: click a span's start, then its end",
                                                **PICTURE, elem_id="edit-spectrogram")
                        edit_spans = gr.Textbox(label="spans to regenerate (seconds)", placeholder="2.5-4.0,7-8",
                                                elem_id="edit-spans")
                        with gr.Row():
                            edit_button = gr.Button("Edit", variant="primary", elem_id="edit-button")
                            edit_stop = gr.Button("Stop", variant="stop")
                        edit_status = gr.HTML(elem_id="edit-status", elem_classes="vab-status")
                    with gr.Column():
                        with gr.Row():
                            edit_original = gr.Audio(label="original", **PLAYER, elem_id="edit-original")
                            edit_audio = gr.Audio(label="edited", **PLAYER, elem_id="edit-audio")
                        edit_result = gr.Video(label="video with the edited soundtrack", **PLAYER,
                                               elem_id="edit-result")
                        edit_plot = gr.Image(label="frames over the spectrogram", **PICTURE, elem_id="edit-plot")
                edit_picked = gr.State(None)

            with gr.Tab("Continue", id="continue"):
                with gr.Row():
                    with gr.Column():
                        cont_video = gr.Video(label="video", sources=["upload"], elem_id="continue-video")
                        cont_prompt = gr.Audio(label="prompt audio to continue", sources=["upload", "microphone"],
                                               type="filepath", elem_id="continue-prompt")
                        cont_seconds = gr.Number(0, label="use the prompt's first seconds (0: all)")
                        with gr.Row():
                            cont_button = gr.Button("Continue", variant="primary", elem_id="continue-button")
                            cont_stop = gr.Button("Stop", variant="stop")
                        cont_status = gr.HTML(elem_id="continue-status", elem_classes="vab-status")
                    with gr.Column():
                        cont_result = gr.Video(label="video with the continued soundtrack", **PLAYER,
                                               elem_id="continue-result")
                        cont_audio = gr.Audio(label="soundtrack", **PLAYER, elem_id="continue-audio")
                        cont_plot = gr.Image(label="frames over the spectrogram", **PICTURE, elem_id="continue-plot")

            with gr.Tab("Search", id="search"):
                if backend.index is None:
                    gr.Markdown("Start `vab app` with `--index DIR` (an index made by `vab embed`) to search it.")
                else:
                    gr.Markdown(f"{len(backend.index)} clips in the index; a video query finds the clips that "
                                "sound like it looks, an audio query the videos that fit the sound.")
                with gr.Row():
                    with gr.Column():
                        search_query = gr.File(label="query: a video or an audio file", elem_id="search-query")
                        search_by = gr.Radio(["auto", "video", "audio"], value="auto", label="query by")
                        search_top = gr.Slider(1, MAX_MATCHES, value=5, step=1, label="matches")
                        search_button = gr.Button("Search", variant="primary", elem_id="search-button",
                                                  interactive=backend.index is not None)
                        search_status = gr.HTML(elem_id="search-status", elem_classes="vab-status")
                    with gr.Column():
                        search_table = gr.Dataframe(headers=["rank", "id", "labels", "cosine", "plays"],
                                                    interactive=False, elem_id="search-table")
                        slots = []
                        for k in range(MAX_MATCHES):
                            slots.append(gr.Audio(visible=False, **PLAYER, elem_id=f"match-audio-{k}"))
                            slots.append(gr.Video(visible=False, **PLAYER, elem_id=f"match-video-{k}"))

            with gr.Tab("Classify", id="classify"):
                names = list(backend.classifiers)
                if not names:
                    gr.Markdown("Start `vab app` with `--classifier DIR` (from `finetune/classification.py`) "
                                "to classify clips.")
                with gr.Row():
                    with gr.Column():
                        cls_file = gr.File(label="a video or an audio file", elem_id="classify-file")
                        cls_name = gr.Radio(
                            [(f"{n} ({backend.classifiers[n].mode})", n) for n in names],
                            value=names[0] if names else None, label="classifier (reads sound, picture or both)",
                        )
                        cls_button = gr.Button("Classify", variant="primary", elem_id="classify-button",
                                               interactive=bool(names))
                        cls_status = gr.HTML(elem_id="classify-status", elem_classes="vab-status")
                    with gr.Column():
                        cls_labels = gr.Label(num_top_classes=5, label="top 5", elem_id="classify-labels")

        # ------------------------------------------------------------------ events
        model_bound = dict(concurrency_id=MODELS, concurrency_limit=limits.concurrency)
        gen_video.upload(lambda v: describe(v, "video"), [gen_video], [gen_status])
        gen_event = gen_button.click(on_generate, [gen_video, *settings],
                                     [gen_status, gen_result, gen_audio, gen_file, gen_plot],
                                     api_name="generate", show_progress_on=[gen_result], **model_bound)
        edit_video.upload(on_edit_upload, [edit_video], [edit_status, edit_picture, edit_picked])
        edit_picture.select(on_spectrogram_click, [edit_spans, edit_picked], [edit_spans, edit_picked, edit_status])
        edit_event = edit_button.click(on_edit, [edit_video, edit_spans, *settings],
                                       [edit_status, edit_original, edit_audio, edit_result, edit_plot],
                                       api_name="edit", show_progress_on=[edit_result], **model_bound)
        cont_video.upload(lambda v: describe(v, "video"), [cont_video], [cont_status])
        cont_prompt.upload(lambda a: describe(a, "audio"), [cont_prompt], [cont_status])
        cont_event = cont_button.click(on_continue, [cont_video, cont_prompt, cont_seconds, *settings],
                                       [cont_status, cont_result, cont_audio, cont_plot],
                                       api_name="continue", show_progress_on=[cont_result], **model_bound)
        for tab, button, event, out in (("generate", gen_stop, gen_event, gen_status),
                                        ("edit", edit_stop, edit_event, edit_status),
                                        ("continue", cont_stop, cont_event, cont_status)):
            button.click(stopper(tab), None, [out], cancels=[event], queue=False)
        search_query.upload(lambda f: describe(f, "media"), [search_query], [search_status])
        search_button.click(on_search, [search_query, search_by, search_top], [search_status, search_table, *slots],
                            api_name="search", show_progress_on=[search_table], **model_bound)
        cls_file.upload(lambda f: describe(f, "media"), [cls_file], [cls_status])
        cls_button.click(on_classify, [cls_file, cls_name], [cls_status, cls_labels], api_name="classify",
                         show_progress_on=[cls_labels], **model_bound)
    page.queue(max_size=limits.queue_size)
    return page


def _serveable(clips: list[Path], folder: Path) -> list[Path]:
    """Copies of the example clips in `folder` (the page serves only the workspace)."""
    copies = []
    for clip in clips:
        folder.mkdir(parents=True, exist_ok=True)
        copy = folder / clip.name
        try:
            shutil.copyfile(clip, copy)
        except OSError:
            continue  # an example that cannot be read is simply not offered
        copies.append(copy)
    return copies
