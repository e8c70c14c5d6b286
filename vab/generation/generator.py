"""Video(s) -> soundtrack(s): windows, stitching and the Python API (docs/ARCHITECTURE.md, "Algorithms").

A video of L seconds needs ``T = round(L * frame_rate)`` audio tokens.  The model was
trained on windows of ``model.duration`` seconds, so tokens are sampled window by
window (:func:`vab.generation.windows.plan_windows`): each window is full length, carries
the last `overlap` seconds of the previous one as given tokens (never resampled), and the
last window ends exactly at the video's end.  A video shorter than one window is sampled
as one window whose features repeat the last frame (as training padded short clips) and
is trimmed to T.  Frames are read and encoded one window at a time and the codec decodes
in chunks (:mod:`vab.generation.codec_chunks`), so memory holds a window's frames, a
chunk's decoder activations and the output waveform (4 bytes per sample), whatever the
video's length.

Batching: up to `batch_size` videos are generated together; every sampler call holds the
next window of each of them (a window only depends on the previous window of its own
video).  When a video finishes, the next one takes its place.

Randomness: each window draws its noise from a seed mixed from the run's seed, the
video's noise key, the pass (coarse / fine) and the window's index.  The key defaults to
a SHA-256 of the source's content (the file's bytes, or the feature array's), so two
different videos never share their draws, and a video's soundtrack depends neither on its
name or folder, nor on the batch size, nor on the other videos of the run (the sampler is
batch-invariant); the same file gives the same soundtrack from the CLI, the API or any
shard of a multi-process run.

With a DAC model that makes the 4 coarse levels and a coarse-to-fine model, the fine
levels are sampled in a second pass over windows of the coarse-to-fine model's trained
length (same overlap rule, :data:`~vab.generation.sampling.C2F_STEPS` steps), every coarse token given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from vab.checkpoint import load, load_model
from vab.checkpoint.loading import check_c2f, check_codec, load_codec, load_visual
from vab.codecs import AudioCodec
from vab.errors import VabError, describe
from vab.generation.codec_chunks import decode_chunked
from vab.generation.conditions import Spans, kept_mask, parse_spans, prompt_tokens, soundtrack_tokens
from vab.generation.features import ArrayFeatures, FeatureSource, VideoFeatures, video_seconds
from vab.generation.sampling import C2F_STEPS, SamplingConfig, model_device, sample_tokens
from vab.generation.windows import frame_alignment, plan_windows, seconds_to_tokens
from vab.model import TokenModel
from vab.model.quantize import prepare_for_inference
from vab.precision import GENERATION_PRECISIONS, autocast_dtype, resolve_generation_precision
from vab.utils import pick_device
from vab.visual import VisualEncoder

#: default overlap between windows, as a fraction of the window (2.5 s of a 10-s window)
OVERLAP_FRACTION = 0.25
PRECISIONS = GENERATION_PRECISIONS

Source = str | os.PathLike | torch.Tensor | np.ndarray
#: progress(request, windows done, windows in total)
WindowProgress = Callable[["Request", int, int], None]


@dataclass
class GenerationResult:
    """One generated soundtrack.

    waveform: float32 ``[N]`` at `sample_rate` Hz, ``N = T * hop`` (as long as the video
    within half an audio token); tokens: long ``[K, T]`` (K levels decoded, CPU);
    given_mask: bool ``[K, T]``, True where a token was given (edit / prompt) and kept
    bit-identical; windows: sampler windows used; timings: wall seconds per stage
    (features, sampling, decode, total).
    """

    waveform: np.ndarray
    sample_rate: int
    tokens: torch.Tensor
    given_mask: torch.Tensor
    windows: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """Audio length in seconds."""
        return len(self.waveform) / self.sample_rate

    @property
    def real_time_factor(self) -> float:
        """Wall seconds spent per second of audio (below 1: faster than real time)."""
        return self.timings.get("total", 0.0) / max(self.seconds, 1e-9)


@dataclass
class Request:
    """One soundtrack to make.  `source`: a video file, or features ``[F, D]`` at the
    model's fps; `duration`: seconds from the start (default: all of it); `edit`: spans
    to regenerate in `source_audio` (default: the video's own soundtrack); `prompt`:
    tokens ``[levels, P]`` given at the start (see :meth:`Generator.tokenize_prompt`);
    `key`: anything the caller wants back with the outcome; `noise_key`: what the video's
    random draws derive from, with the seed (default: a SHA-256 of the source's content)."""

    source: Source
    duration: float | None = None
    edit: str | Spans | None = None
    source_audio: str | os.PathLike | np.ndarray | None = None
    prompt: torch.Tensor | None = None
    key: Any = None
    noise_key: str | None = None


@dataclass
class Outcome:
    """A request and either its result or the user-facing error that stopped it."""

    request: Request
    result: GenerationResult | None = None
    error: VabError | None = None


@dataclass(frozen=True)
class _Phase:
    """One sampling pass over a video: the coarse model, or the coarse-to-fine model."""

    name: str
    model: TokenModel
    steps: int | None  # None: the user's steps


class _Job:
    """The state of one request while its windows are sampled."""

    def __init__(
        self, request: Request, total: int, tokens: torch.Tensor, given: torch.Tensor, passes: list, started: float,
        noise_key: str,
    ):
        self.request = request
        self.noise_key = noise_key
        self.total = total  # tokens for the video
        self.tokens = tokens  # [K, max(total, window)] long, mask_id where not yet sampled
        self.given = given  # [K, same] bool: given by edit / prompt
        self.queue = [(phase, source, w) for phase, source, plan in passes for w in plan]
        self.num_windows = len(self.queue)
        self.done = 0
        self.started = started
        self.timings = {"features": 0.0, "sampling": 0.0, "decode": 0.0}


class Generator:
    """Generates soundtracks with a VAB model (and optionally a coarse-to-fine model).

    `overlap`: seconds each window carries from the previous one (default a quarter of
    the window); `batch_size`: videos sampled together; `precision`: auto (bf16 on a GPU and
    on a CPU with native bf16, else fp32), fp32, bf16, fp16 or int8 (CPU: the Transformer's
    linear layers dynamically quantized, on a copy of `model`; :mod:`vab.precision`,
    :mod:`vab.model.quantize`).  :meth:`from_pretrained` also stores those layers' weights in
    bf16 / fp16 once for those formats (the models it loads are its own).  The
    model's device is used throughout; `self.precision` is the format in use.
    `c2f` must fit `model` (levels, codec, frame rate, feature size); `c2f_directory` names it in
    the error when it does not.
    """

    def __init__(
        self,
        model: TokenModel,
        *,
        codec: AudioCodec | None = None,
        visual: VisualEncoder | None = None,
        c2f: TokenModel | None = None,
        directory: str | Path | None = None,
        c2f_directory: str | Path | None = None,
        precision: str = "auto",
        overlap: float | None = None,
        batch_size: int = 1,
    ):
        if int(model.given_levels) != 0:
            raise VabError(
                f"{directory or 'model'}: this is a coarse-to-fine model; give the coarse model as the checkpoint "
                "and this one as the coarse-to-fine checkpoint"
            )
        if batch_size < 1:
            raise VabError(f"--batch-size must be >= 1, got {batch_size}")
        self.device = model_device(model)
        self.precision = resolve_generation_precision(precision, self.device)
        self.dtype = autocast_dtype(self.precision)
        if self.precision == "int8":  # int8 layers on copies of the caller's models; bf16 / fp16 run
            # them under autocast as they are (from_pretrained stores their weights in bf16 / fp16 once)
            model = prepare_for_inference(model, "int8")
            c2f = prepare_for_inference(c2f, "int8") if c2f is not None else None
        self.model = model.eval()
        self.codec = codec if codec is not None else load_codec(model, directory)
        if codec is not None:
            check_codec(model, codec)
        self.codec.to(self.device)
        self.visual = visual if visual is not None else load_visual(model, directory)
        self.c2f = c2f.eval() if c2f is not None else None
        if self.c2f is not None:
            check_c2f(model, self.c2f, self.codec, c2f_directory)
            self.c2f.to(self.device)
        self.batch_size = int(batch_size)
        window = float(model.duration)
        self.overlap = window * OVERLAP_FRACTION if overlap is None else float(overlap)
        if not 0 <= self.overlap < window:
            raise VabError(f"--overlap must be in [0, {window:g}) seconds (the window), got {overlap}")
        #: DAC coarse levels decoded without the fine ones (no coarse-to-fine model given)
        self.coarse_only = self.codec.name == "dac" and self.c2f is None and model.levels < self.codec.num_codebooks
        if self.coarse_only:
            warnings.warn(
                f"decoding only the {model.levels} coarse DAC levels (no coarse-to-fine model): "
                "expect muffled audio; pass a coarse-to-fine checkpoint for full quality",
                stacklevel=2,
            )

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | Path,
        c2f_checkpoint: str | Path | None = None,
        *,
        device: str = "auto",
        **kwargs: Any,
    ) -> "Generator":
        """Load model directories (config.yaml + model.safetensors, YAML and safetensors only),
        each given as a folder or a Hugging Face Hub id ``org/name[@revision]``."""
        device = pick_device(device)
        precision = resolve_generation_precision(kwargs.get("precision", "auto"), device)  # before loading
        loaded = load(checkpoint, device)  # the codec is read from the same folder
        model, directory = loaded.model, loaded.directory
        c2f = load_model(c2f_checkpoint, device) if c2f_checkpoint else None
        if c2f is not None and int(c2f.given_levels) < 1:
            raise VabError(f"{c2f_checkpoint}: not a coarse-to-fine model (model.type is {c2f.config.model.type})")
        # these models are ours alone: convert them in place, without a float copy
        model = prepare_for_inference(model, precision, inplace=True)
        c2f = prepare_for_inference(c2f, precision, inplace=True) if c2f is not None else None
        return cls(model, c2f=c2f, directory=directory, c2f_directory=c2f_checkpoint, **kwargs)

    # ------------------------------------------------------------------ facts
    @property
    def sample_rate(self) -> int:
        return int(self.codec.sample_rate)

    @property
    def frame_rate(self) -> float:
        return float(self.model.frame_rate)

    @property
    def levels(self) -> int:
        """Codec levels the output tokens hold (12 with coarse-to-fine DAC)."""
        return int(self.c2f.levels if self.c2f is not None else self.model.levels)

    # ------------------------------------------------------------------ public API
    def tokenize_prompt(self, prompt: str | os.PathLike | np.ndarray, seconds: float | None = None) -> torch.Tensor:
        """Tokens ``[levels, P]`` of an audio prompt (a file, or float32 ``[N]`` at the codec's rate)."""
        return prompt_tokens(self.codec, prompt, self.levels, seconds)

    def generate(
        self,
        source: Source,
        *,
        duration: float | None = None,
        sampling: SamplingConfig | None = None,
        edit: str | Spans | None = None,
        source_audio: str | os.PathLike | np.ndarray | None = None,
        prompt: str | os.PathLike | np.ndarray | None = None,
        prompt_seconds: float | None = None,
        noise_key: str | None = None,
    ) -> GenerationResult:
        """A soundtrack for one video file or features ``[F, D]`` (model fps); see :class:`Request`."""
        tokens = self.tokenize_prompt(prompt, prompt_seconds) if prompt is not None else None
        request = Request(
            source, duration=duration, edit=edit, source_audio=source_audio, prompt=tokens, noise_key=noise_key
        )
        outcome = next(self.run([request], sampling))
        if outcome.error is not None:
            raise outcome.error
        return outcome.result

    def run(
        self,
        requests: Iterable[Request],
        sampling: SamplingConfig | None = None,
        progress: WindowProgress | None = None,
    ) -> Iterator[Outcome]:
        """Generate every request, `batch_size` at a time; yields outcomes as videos finish
        (not necessarily in request order).  A bad request yields an Outcome with its error
        and the others go on."""
        sampling = sampling or SamplingConfig()
        sampling.validate()
        pending = iter(requests)
        active: list[_Job] = []
        while True:
            while len(active) < self.batch_size:
                request = next(pending, None)
                if request is None:
                    break
                try:
                    active.append(self._start(request))
                except Exception as exc:
                    yield Outcome(request, error=_user_error(request, exc))
            if not active:
                return
            failed = self._step(active, sampling, progress)
            for job, exc in failed:
                active.remove(job)
                yield Outcome(job.request, error=exc)
            for job in [j for j in active if not j.queue]:
                active.remove(job)
                yield self._finish(job)

    # ------------------------------------------------------------------ internals
    def _start(self, request: Request) -> _Job:
        started = time.perf_counter()
        source = request.source
        is_path = isinstance(source, (str, os.PathLike))
        if request.duration is not None and not request.duration > 0:
            raise VabError(f"duration must be > 0 seconds, got {request.duration}")
        if request.edit is not None and request.prompt is not None:
            raise VabError("use either an edit or a prompt, not both")
        model = self.model
        seconds = video_seconds(source) if is_path else None
        coarse = self._features(source, model, seconds)
        length = coarse.seconds if request.duration is None else min(float(request.duration), coarse.seconds)
        total = seconds_to_tokens(length, self.frame_rate)
        where = str(source) if is_path else "features"
        if total < 1:
            raise VabError(f"{where}: too short ({length:.3f} s) for one audio token")
        passes = [(_Phase("coarse", model, None), coarse, self._plan(total, model, is_path))]
        if self.c2f is not None:
            fine = self._features(source, self.c2f, seconds)
            passes.append((_Phase("fine", self.c2f, C2F_STEPS), fine, self._plan(total, self.c2f, is_path)))
        padded = max(total, *(w.stop for _, _, plan in passes for w in plan))
        tokens = torch.full((self.levels, padded), model.mask_id, dtype=torch.long)
        given = torch.zeros(self.levels, padded, dtype=torch.bool)
        if request.edit is not None:
            audio = request.source_audio if request.source_audio is not None else (source if is_path else None)
            if audio is None:
                raise VabError("editing needs the soundtrack to edit: pass source_audio (a file or a waveform)")
            keep = kept_mask(parse_spans(request.edit), total, self.frame_rate, self.levels, where)
            given[:, :total] = keep
            tokens[:, :total] = torch.where(keep, soundtrack_tokens(self.codec, audio, total, self.levels), tokens[:, :total])
        elif request.prompt is not None:
            prompt = request.prompt
            if prompt.dim() != 2 or prompt.shape[0] < self.levels:
                raise VabError(f"prompt tokens must be [{self.levels} levels, time], got {tuple(prompt.shape)}")
            count = min(prompt.shape[1], total)
            tokens[:, :count] = prompt[: self.levels, :count]
            given[:, :count] = True
        noise_key = request.noise_key if request.noise_key is not None else content_key(source)
        return _Job(request, total, tokens, given, passes, started, noise_key)

    def windows_for(self, seconds: float) -> int:
        """The sampler windows a video of `seconds` takes, in both passes when there is a
        coarse-to-fine model: the total :meth:`run`'s progress counts to."""
        total = seconds_to_tokens(seconds, self.frame_rate)
        return sum(len(self._plan(total, model, True)) for model in (self.model, self.c2f) if model is not None)

    def _plan(self, total: int, model: TokenModel, is_path: bool) -> list:
        """The windows of one pass.  Frames of a video file are read at each window's own
        times; stored features exist only on whole frames, so their windows start on frame
        boundaries (else the frames would be off the time-ALiBi positions by up to half a frame).
        The overlap is the generator's, within the pass model's window."""
        overlap = min(seconds_to_tokens(self.overlap, self.frame_rate), model.num_audio_frames - 1)
        align = 1 if is_path else frame_alignment(self.frame_rate, model.fps)
        return plan_windows(total, model.num_audio_frames, overlap, align)

    def _features(self, source: Source, model: TokenModel, seconds: float | None) -> FeatureSource:
        if isinstance(source, (str, os.PathLike)):
            max_side = model.config.extract.max_short_side
            return VideoFeatures(source, self.visual, model.fps, model.num_frames, max_side, seconds=seconds)
        return ArrayFeatures(source, model.fps, model.num_frames, model.visual_dim)

    def _step(self, jobs: list[_Job], sampling: SamplingConfig, progress: WindowProgress | None) -> list:
        """Sample the next window of every job (grouped by phase).  Returns [(job, error)]."""
        groups: dict[_Phase, list] = {}
        failed = []
        for job in jobs:
            try:
                item = self._next_window(job, progress)
            except Exception as exc:
                failed.append((job, _user_error(job.request, exc)))
                continue
            if item is not None:
                groups.setdefault(item[1], []).append(item)
        for phase, items in groups.items():
            cfg = sampling if phase.steps is None else dataclasses.replace(sampling, steps=phase.steps)
            t0 = time.perf_counter()
            try:
                out = self._sample(phase, items, cfg, sampling.seed)
            except Exception:  # one video's window broke the sampler: find it, the others go on
                out, ok = [], []
                for item in items:
                    try:
                        out.append(self._sample(phase, [item], cfg, sampling.seed)[0])
                        ok.append(item)
                    except Exception as exc:
                        failed.append((item[0], _user_error(item[0].request, exc)))
                items = ok
            share = (time.perf_counter() - t0) / max(len(items), 1)
            for (job, _, window, given, _, mask), tokens in zip(items, out):
                levels = phase.model.levels
                job.tokens[:levels, window.start : window.stop] = torch.where(mask, given, tokens)
                job.timings["sampling"] += share
                job.done += 1
                if progress is not None:
                    progress(job.request, job.done, job.num_windows)
        return failed

    def _sample(self, phase: _Phase, items: list, cfg: SamplingConfig, seed: int) -> torch.Tensor:
        """Tokens ``[B, levels, T]`` (CPU) of one window of each item."""
        with self._autocast():
            return _sampler(phase.model)(
                phase.model,
                torch.stack([it[4] for it in items]).to(self.device),
                given=torch.stack([it[3] for it in items]).to(self.device),
                given_mask=torch.stack([it[5] for it in items]).to(self.device),
                cfg=cfg,
                seeds=[window_seed(seed, it[0].noise_key, phase.name, it[2].index) for it in items],
            ).cpu()

    def _next_window(self, job: _Job, progress: WindowProgress | None):
        """(job, phase, window, given tokens, features, given mask) of the job's next window
        with anything to sample, or None when none is left.  Fully given windows are skipped."""
        while job.queue:
            phase, source, window = job.queue.pop(0)
            levels = phase.model.levels
            span = slice(window.start, window.stop)
            mask = job.given[:levels, span].clone()
            mask[:, : window.carried] = True  # the overlap the previous window generated
            mask[: phase.model.given_levels] = True  # coarse levels, for the fine pass
            if not bool(mask.all()):
                t0 = time.perf_counter()
                features = source.window(window.start / self.frame_rate)
                job.timings["features"] += time.perf_counter() - t0
                given = torch.where(mask, job.tokens[:levels, span], phase.model.mask_id)
                return job, phase, window, given, features, mask
            job.done += 1
            if progress is not None:
                progress(job.request, job.done, job.num_windows)
        return None

    def _finish(self, job: _Job) -> Outcome:
        tokens = job.tokens[:, : job.total]
        t0 = time.perf_counter()
        try:
            waveform = decode_chunked(self.codec, tokens)
        except Exception as exc:
            return Outcome(job.request, error=_user_error(job.request, exc))
        job.timings["decode"] = time.perf_counter() - t0
        job.timings["total"] = time.perf_counter() - job.started
        result = GenerationResult(
            waveform=waveform,
            sample_rate=self.sample_rate,
            tokens=tokens.clone(),
            given_mask=job.given[:, : job.total].clone(),
            windows=job.num_windows,
            timings=job.timings,
        )
        return Outcome(job.request, result=result)

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)


def _user_error(request: Request, exc: Exception) -> VabError:
    """A per-video failure as a VabError: user errors as they are; anything else (an odd
    file tripping a decoder) named after the file, so a batch can go on past it."""
    if isinstance(exc, VabError):
        return exc
    where = str(request.source) if isinstance(request.source, (str, os.PathLike)) else "features"
    error = VabError(f"{where}: {describe(exc)}")
    error.__cause__ = exc
    return error


def _sampler(model: TokenModel) -> Callable[..., torch.Tensor]:
    """MaskGIT decoding, unless the model type brings its own (the autoregressive baseline
    decodes step by step)."""
    return getattr(model, "sampler", None) or sample_tokens


def content_key(source: Source) -> str:
    """SHA-256 (hex) of a source's content: a file's bytes, or an array's dtype, shape and values."""
    digest = hashlib.sha256()
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            raise VabError(f"{source}: cannot read ({exc.strerror or exc})") from None
    else:
        array = source.detach().cpu().numpy() if isinstance(source, torch.Tensor) else np.asarray(source)
        digest.update(f"{array.dtype}|{array.shape}|".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def window_seed(seed: int, noise_key: str, phase: str, index: int) -> int:
    """A well-mixed 64-bit seed for one window, from the run's seed, the video's noise key,
    the pass and the window's index.  64 bits (what ``torch.Generator.manual_seed`` takes):
    with 32, two windows of a 100,000-window evaluation share their draws with odds of 2 in 3
    (the birthday bound); with 64, two of a million windows do with odds near 3 in 10^8."""
    key = hashlib.sha256(noise_key.encode()).digest()[:16]
    words = [int.from_bytes(key[i : i + 4], "little") for i in range(0, 16, 4)]
    entropy = [int(seed) % 2**63, *words, 0 if phase == "coarse" else 1, index]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])


# ---------------------------------------------------------------------- vab.generate
_PARTS: "weakref.WeakKeyDictionary[Any, tuple[Any, Any]]" = weakref.WeakKeyDictionary()


def generate(
    model: TokenModel,
    source: Source,
    *,
    duration: float | None = None,
    sampling: SamplingConfig | None = None,
    edit: str | Spans | None = None,
    source_audio: str | os.PathLike | np.ndarray | None = None,
    prompt: str | os.PathLike | np.ndarray | None = None,
    prompt_seconds: float | None = None,
    c2f: TokenModel | None = None,
    codec: AudioCodec | None = None,
    directory: str | Path | None = None,
    precision: str = "auto",
    overlap: float | None = None,
    noise_key: str | None = None,
) -> GenerationResult:
    """A soundtrack for a video file or features ``[F, D]`` (``vab.generate``).  The codec and frame encoder are built once per model and
    reused; a spectral codec comes from `directory` or from the model's own codebooks."""
    if codec is None:
        parts = _PARTS.get(model)
        if parts is None:
            parts = _PARTS[model] = (load_codec(model, directory), load_visual(model))
        codec, visual = parts
    else:
        visual = _PARTS[model][1] if model in _PARTS else load_visual(model)
    generator = Generator(model, codec=codec, visual=visual, c2f=c2f, precision=precision, overlap=overlap)
    return generator.generate(
        source, duration=duration, sampling=sampling, edit=edit, source_audio=source_audio,
        prompt=prompt, prompt_seconds=prompt_seconds, noise_key=noise_key,
    )


__all__ = ["GenerationResult", "Generator", "Outcome", "Request", "SamplingConfig", "generate", "OVERLAP_FRACTION"]
