"""`vab app` end to end in a real browser (Debian's headless chromium, driven by Playwright),
and the pieces behind it.

The server runs as a user starts it, in its own process, with a tiny random model laid out
like a `vab demo` folder (model, index of the held-out clips, an audio-visual classifier),
started with the very command `vab demo` prints.  The browser uploads test-made media,
presses the buttons and reads the page; what the page returns is checked against the CLI
(`vab generate`, `vab search`) and the library.  These tests never skip: without chromium
they fail and say how to install it.  Screenshots go to $VAB_TEST_ARTIFACTS (default: a
temporary folder); `VAB_TEST_ARTIFACTS=docs python -m pytest tests/test_app.py` remakes
the README's.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from tests.browser import AppServer, chromium, chromium_missing, fetch, open_page, set_number, upload, wait_text
from tests.conftest import free_port
from tests.mediagen import make_video, tone
from vab.checkpoint import load_model
from vab import media
from vab.cli import main

SEED = 7
STEPS = 2  # decoding steps: the page's results are compared with the CLI's, not judged
MAX_SECONDS = 120  # the server's --max-seconds; the too-long upload is longer
MAX_UPLOAD_MB = 1  # the server's --max-upload-mb; the test media are smaller, the too-big upload is not
CLIP_SECONDS = 5.0  # the world's clips: two 4-s windows each


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """A folder laid out like `vab demo`'s: world/, model/, index/ (held-out clips), classify-audio-visual/."""
    import torch

    from tests.test_generate import make_model_dir
    from vab.data.synthetic import iter_split, read_truth, synthesize
    from vab.finetuning.classifier import Classifier, save_classifier
    from vab.checkpoint import load_codec
    from vab.model import VAB

    root = tmp_path_factory.mktemp("app") / "demo"
    root.mkdir()
    (root / "demo.json").write_text("{}")
    synthesize(root / "world", classes=4, train=4, valid=0, test=4, seconds=CLIP_SECONDS, fps=8.0, seed=0)
    model_dir = make_model_dir(root / "model")
    assert main(["embed", str(root / "world" / "manifest.csv"), "--checkpoint", str(model_dir), "--out",
                 str(root / "index"), "--split", "test"]) == 0
    labels = sorted({r.label for r in iter_split(read_truth(root / "world"), "test")})
    backbone = load_model(model_dir, kind=VAB)
    torch.manual_seed(0)
    save_classifier(Classifier(backbone, len(labels), "audio-visual", labels), load_codec(backbone, model_dir),
                    root / "classify-audio-visual", "ce")
    return root


@pytest.fixture(scope="module")
def clips(demo_dir) -> list[Path]:
    from vab.demo.pipeline import held_out_clips

    found = held_out_clips(demo_dir / "model")
    assert len(found) == 4  # one per class
    return found


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("VAB_TEST_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def server(demo_dir, tmp_path_factory):
    """`vab app` as `vab demo` prints it, on a free port, in its own process, with a system
    temporary folder of its own: every test of the page checks that nothing lands there
    outside the workspace, and a clean stop leaves it empty."""
    from vab.demo.pipeline import app_command

    words = app_command(demo_dir).split()
    assert words[:2] == ["vab", "app"] and "--index" in words and "--classifier" in words
    tmp = tmp_path_factory.mktemp("system-tmp")
    app = AppServer(words[2:] + ["--port", str(free_port()), "--max-seconds", str(MAX_SECONDS),
                                 "--max-upload-mb", str(MAX_UPLOAD_MB)],
                    log=tmp_path_factory.mktemp("log") / "app.log", tmp=tmp)
    assert app.folder.parent == tmp
    yield app
    assert not outside_the_workspace(app), "the server wrote outside its workspace"
    assert app.stop() == 0
    assert not app.folder.exists(), "stopping the server leaves its temporary folder behind"
    assert not list(tmp.iterdir()), "a clean stop leaves files in the system's temporary folder"


def outside_the_workspace(app) -> list[Path]:
    """What the server made in its system temporary folder outside its workspace."""
    return [p for p in app.folder.parent.rglob("*") if p != app.folder and app.folder not in p.parents]


@pytest.fixture(scope="module")
def browser():
    problem = chromium_missing()
    if problem:
        pytest.fail(problem)
    with chromium() as context:
        yield context


def one_line_error(page, selector: str, failed: str, *words: str) -> str:
    """The status under `selector` is one line saying what failed, with `words` in it, and the
    page holds no traceback."""
    text = wait_text(page, selector, f"{failed} failed:")
    assert "\n" not in text and all(w in text for w in words), text
    assert "Traceback" not in page.inner_text("body")
    return text


def refuses_a_text_file(page, server, tab: str, bad: Path) -> None:
    """On `tab` (Search or Classify), a text file named like a video gets one line, then the page closes."""
    kind = {"Search": ("search", "search-query"), "Classify": ("classify", "classify-file")}[tab]
    bad.write_text("not a video")
    open_page(None, server.url, tab, page=page)
    upload(page, kind[1], bad)
    page.click(f"#{kind[0]}-button")
    one_line_error(page, f"#{kind[0]}-status p", kind[0], bad.name, "not a media file")
    page.close()


def read_wav(path: Path) -> np.ndarray:
    return media.read_audio(path, 16000)


def cli_wav(tmp_path: Path, video: Path, model: Path, *extra: str) -> np.ndarray:
    out = tmp_path / "cli"
    assert main(["generate", str(video), "--checkpoint", str(model), "--out", str(out), "--seed", str(SEED),
                 "--steps", str(STEPS), *extra]) == 0
    return read_wav(out / f"{video.stem}.wav")


# ---------------------------------------------------------------------- the page, in chromium
def test_the_page_renders_offline_on_this_machine_only(server, browser):
    requested: list[str] = []
    browser.on("request", lambda r: requested.append(r.url))
    page = open_page(browser, server.url)
    body = page.inner_text("body")
    assert f"Uploads up to {MAX_UPLOAD_MB} MB and {MAX_SECONDS / 60:g} min" in body
    assert "held-out clips of the demo" in body  # the demo's held-out clips are the examples
    origin = server.url.rstrip("/")
    outside = [u for u in requested if not u.startswith((origin, "data:", "blob:"))]
    assert requested and not outside, outside  # scripts, styles and fonts all come from the server
    port = int(origin.rsplit(":", 1)[1])
    listening = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    bound = {row[1] for row in listening if row[3] == "0A" and int(row[1].split(":")[1], 16) == port}
    assert bound == {f"0100007F:{port:04X}"}  # 127.0.0.1 only
    page.close()


def test_generate_in_the_page_gives_the_cli_soundtrack(server, browser, demo_dir, clips, artifacts, tmp_path):
    page = open_page(browser, server.url)
    video = clips[0]
    upload(page, "generate-video", video)
    wait_text(page, "#generate-status p", f"{video.name}: {CLIP_SECONDS:.1f} s")
    set_number(page, "seed", SEED)
    set_number(page, "steps", STEPS)
    page.click("#generate-button")
    wait_text(page, "#generate-status p", "generated:")
    page.wait_for_selector("#generate-result video", timeout=60_000)
    # the browser itself decodes the returned video
    page.wait_for_function("document.querySelector('#generate-result video').readyState >= 1", timeout=30_000)
    shown = page.evaluate("document.querySelector('#generate-result video').duration")
    assert shown == pytest.approx(CLIP_SECONDS, abs=0.2)
    mp4 = fetch(page.get_attribute("#generate-result video", "src"), tmp_path / "page.mp4")
    info = media.probe(mp4)
    assert info.has_video and info.has_audio and info.duration == pytest.approx(CLIP_SECONDS, abs=0.1)
    assert len(media.read_audio(mp4, 16000)) / 16000 == pytest.approx(CLIP_SECONDS, abs=0.1)
    wav = fetch(page.get_attribute("#generate-download a[download]", "href"), tmp_path / "page.wav")
    page.wait_for_selector("#generate-plot img", timeout=30_000)
    page.screenshot(path=str(artifacts / "app-generate.png"), full_page=True)
    assert np.array_equal(read_wav(wav), cli_wav(tmp_path, video, demo_dir / "model"))
    page.close()


def test_bad_uploads_are_one_line_in_the_page(server, browser, tmp_path):
    page = open_page(browser, server.url)
    text_file = tmp_path / "notes.mp4"
    text_file.write_text("these are my notes, not a video\n")
    upload(page, "generate-video", text_file)
    one_line_error(page, "#generate-status p", "upload", "notes.mp4", "not a media file")
    page.click("#generate-button")
    one_line_error(page, "#generate-status p", "generate", "notes.mp4", "not a media file")
    assert str(server.folder) not in page.inner_text("body")  # the file's name, not its cache path
    # no video stream, and longer than the server takes
    sound = make_video(tmp_path / "sound.mp4", seconds=2.0, video=False)  # an mp4 with only an audio stream
    long = make_video(tmp_path / "long.mp4", seconds=MAX_SECONDS + 10, fps=1.0, width=16, height=16)
    for path, words in ((sound, ["sound.mp4", "no video stream"]), (long, ["long.mp4", "too long"])):
        open_page(browser, server.url, page=page)
        upload(page, "generate-video", path)
        one_line_error(page, "#generate-status p", "upload", *words)
    # larger than --max-upload-mb: refused before it is stored, with the limit named
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(2 * MAX_UPLOAD_MB * 2**20))
    stored = set(server.folder.joinpath("uploads").rglob("*"))
    open_page(browser, server.url, page=page)
    upload(page, "generate-video", big)
    toast = wait_text(page, "body", "exceed the maximum allowed size")
    assert f"{MAX_UPLOAD_MB:.1f} Mb" in toast and "big.mp4" in toast
    assert not [p for p in set(server.folder.joinpath("uploads").rglob("*")) - stored if p.name == "big.mp4"]
    page.close()


def test_search_in_the_page_ranks_as_vab_search(server, browser, demo_dir, clips, artifacts, capsys):
    import json

    page = open_page(browser, server.url, "Search")
    upload(page, "search-query", clips[1])
    page.click("#search-button")
    wait_text(page, "#search-status p", "4 closest audio clip(s) of 4")  # top 5 of a 4-clip index: all 4
    page.wait_for_selector("#match-audio-3 a[download]", state="attached", timeout=30_000)
    cells = page.locator("#search-table [role=row][data-index]").evaluate_all(
        "rows => rows.map(r => [...r.querySelectorAll('[role=gridcell]')].map(c => c.innerText.trim()))")
    capsys.readouterr()
    assert main(["search", str(demo_dir / "index"), "--query", str(clips[1]), "--by", "video", "--in", "audio",
                 "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)["results"]
    assert len(cells) == len(expected) == 4
    for row, hit in zip(cells, expected):
        rank, clip_id, labels, cosine = row[:4]
        assert (int(rank), clip_id, labels) == (hit["rank"], hit["id"], ", ".join(hit["labels"]))
        assert float(cosine) == pytest.approx(hit["cosine"], abs=1e-4)
    # each match plays: a wav of its first window
    href = page.get_attribute("#match-audio-0 a[download]", "href")
    assert fetch(href, demo_dir.parent / "match.wav").stat().st_size > 1000
    page.screenshot(path=str(artifacts / "app-search.png"), full_page=True)
    refuses_a_text_file(page, server, "Search", demo_dir.parent / "query.mp4")


def test_classify_in_the_page_shows_the_classifiers_top_five(server, browser, demo_dir, clips, artifacts):
    import torch

    from vab.finetuning.classification_objective import scores_from_logits
    from vab.finetuning.classifier import load_classifier
    from vab.search import Embedder

    page = open_page(browser, server.url, "Classify")
    upload(page, "classify-file", clips[2])
    page.click("#classify-button")
    wait_text(page, "#classify-status p", f"{clips[2].name}: ")
    page.wait_for_selector("#classify-labels [data-testid$='-confidence-set']", timeout=30_000)
    shown = page.locator("#classify-labels meter").evaluate_all(
        "ms => ms.map(m => [m.getAttribute('aria-label'), Number(m.getAttribute('value'))])")
    clf, meta = load_classifier(demo_dir / "classify-audio-visual")
    batch = Embedder(demo_dir / "classify-audio-visual", model=clf.backbone).media_inputs(clips[2], ["audio", "video"])
    with torch.no_grad():
        probs = scores_from_logits(clf(batch), meta["loss"])[0]
    expected = sorted(zip(clf.label_names, probs.tolist()), key=lambda x: -x[1])
    assert [name for name, _ in shown] == [name for name, _ in expected][:len(shown)] and len(shown) == 4
    assert [p for _, p in shown] == pytest.approx([p for _, p in expected], abs=1e-5)
    page.screenshot(path=str(artifacts / "app-classify.png"), full_page=True)
    refuses_a_text_file(page, server, "Classify", demo_dir.parent / "clip.mp4")


def test_edit_and_continue_in_the_page_give_the_cli_soundtracks(server, browser, demo_dir, clips, tmp_path):
    page = open_page(browser, server.url, "Edit")
    set_number(page, "seed", SEED)
    set_number(page, "steps", STEPS)
    video = clips[3]
    upload(page, "edit-video", video)
    wait_text(page, "#edit-status p", "with sound")
    picture = page.wait_for_selector("#edit-spectrogram img", timeout=30_000)
    box = picture.bounding_box()
    # a span from 1.0 s to 2.5 s of the 5-s soundtrack, chosen on the picture
    for fraction, answer in ((0.2, "span starts at"), (0.5, "added")):
        picture.click(position={"x": fraction * box["width"], "y": box["height"] / 2})
        wait_text(page, "#edit-status p", answer)
    spans_box = page.locator("#edit-spans").locator("textarea, input").first
    a, b = (float(x) for x in spans_box.input_value().split("-"))
    assert a == pytest.approx(1.0, abs=0.1) and b == pytest.approx(2.5, abs=0.1)
    spans = "1.0-2.5"
    spans_box.fill(spans)
    page.click("#edit-button")
    wait_text(page, "#edit-status p", "edited:")
    edited = fetch(page.get_attribute("#edit-audio a[download]", "href"), tmp_path / "edited.wav")
    assert np.array_equal(read_wav(edited), cli_wav(tmp_path / "edit", video, demo_dir / "model", "--edit", spans))

    page.get_by_role("tab", name="Continue").click()
    prompt = media.write_audio(tmp_path / "door.wav", tone(1.5, 16000, freq=300.0), 16000)
    upload(page, "continue-video", video)
    upload(page, "continue-prompt", prompt)
    wait_text(page, "#continue-status p", "door.wav: 1.5 s")
    page.click("#continue-button")
    wait_text(page, "#continue-status p", "continued:")
    continued = fetch(page.get_attribute("#continue-audio a[download]", "href"), tmp_path / "continued.wav")
    expected = cli_wav(tmp_path / "continue", video, demo_dir / "model", "--prompt", str(prompt))
    assert np.array_equal(read_wav(continued), expected)
    page.close()


def test_a_waiting_job_sees_its_place_in_the_queue_and_stop_frees_the_slot(server, browser, clips, tmp_path):
    long = make_video(tmp_path / "long.mp4", seconds=MAX_SECONDS - 20, fps=2.0, width=32, height=24)
    first, second = open_page(browser, server.url), open_page(browser, server.url)
    upload(first, "generate-video", long)
    upload(second, "generate-video", clips[0])
    wait_text(first, "#generate-status p", "long.mp4")
    wait_text(second, "#generate-status p", clips[0].name)
    jobs_before = set(server.folder.joinpath("jobs").iterdir())
    first.click("#generate-button")
    wait_text(first, "#generate-result", "windows")  # a progress bar over the video's windows
    second.click("#generate-button")
    wait_text(second, "#generate-result", "queue: 1/1")  # one slot (--concurrency 1), and it is taken
    first.click("#generate-stop")
    wait_text(first, "#generate-status p", "stopping")
    wait_text(second, "#generate-status p", "generated:")
    jobs = set(server.folder.joinpath("jobs").iterdir()) - jobs_before
    assert len(jobs) == 1 and {p.suffix for p in next(iter(jobs)).iterdir()} == {".wav", ".mp4", ".png"}
    assert first.locator("#generate-result video").count() == 0  # the stopped job wrote nothing
    first.close()
    second.close()


# ---------------------------------------------------------------------- the pieces, without a browser
def test_options_are_checked_before_any_model_is_loaded(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    for args, words in ((["--port", "70000"], "--port"), (["--concurrency", "0"], "--concurrency"),
                        (["--keep-minutes", "0"], "--keep-minutes"), (["--device", "cuda:7"], "cuda:7")):
        assert main(["app", "--checkpoint", str(missing), *args]) == 2
        assert words in capsys.readouterr().err
    assert main(["app", "--checkpoint", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(missing) in err and "\n" not in err


def test_jobs_expire_and_the_folder_goes_with_the_server():
    import tempfile

    from vab.app.workspace import Workspace

    before = (tempfile.gettempdir(), os.environ.get("TMPDIR"), os.environ.get("GRADIO_TEMP_DIR"))
    with Workspace(keep=60) as space:
        space.hold_temporary_files()  # the process's temporary files go into the workspace ...
        assert Path(tempfile.mkdtemp()).parent == space.root and os.environ["GRADIO_TEMP_DIR"] == str(space.uploads)
        old, new = space.new_job(), space.new_job()
        (old / "a.wav").write_bytes(b"x")
        an_hour_ago = time.time() - 3600
        os.utime(old, (an_hour_ago, an_hour_ago))
        assert space.sweep() == [old]
        assert not old.exists() and new.is_dir()
        root = space.root
    assert not root.exists()
    # ... until it is closed
    assert (tempfile.gettempdir(), os.environ.get("TMPDIR"), os.environ.get("GRADIO_TEMP_DIR")) == before


def test_stop_ends_generation_at_the_next_window(demo_dir, tmp_path):
    from vab.app.backend import Backend, Stopped
    from vab.app.workspace import Workspace
    from vab.generation.sampling import SamplingConfig

    video = make_video(tmp_path / "twenty.mp4", seconds=20.0, fps=2.0, width=32, height=24)
    seen = []
    with Workspace() as space:
        backend = Backend.load(demo_dir / "model", workspace=space, device="cpu")
        # the flag is read as each window ends: raised once window 2 is reported, the job stops as window 3 ends
        with pytest.raises(Stopped, match="after window 3 of 7"):
            backend.soundtrack(video, SamplingConfig(steps=1), progress=lambda done, total: seen.append(done),
                               should_stop=lambda: len(seen) >= 2)
        assert seen == [1, 2] and not list(space.jobs.iterdir())


def test_one_line_names_the_upload_not_its_cache_path():
    from vab.app.uploads import one_line
    from vab.errors import MediaError

    cached = "/tmp/vab-app-x/uploads/0af3/my clip.mp4"
    assert one_line(MediaError(cached, "not a media file"), [cached]) == "my clip.mp4: not a media file"
    assert one_line(RuntimeError("boom\n  at line 3\nmore"), []) == "unexpected RuntimeError: boom"


def test_gradio_missing_is_one_line_before_any_model_is_loaded(monkeypatch, tmp_path, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    assert main(["app", "--checkpoint", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert 'pip install "vab[app]"' in err and "nowhere" not in err


def test_every_sampling_option_has_a_one_line_hint_the_page_and_cli_share():
    from dataclasses import fields

    from vab.generation.sampling import SamplingConfig, sampling_options

    options = sampling_options()
    assert [o.name for o in options] == [f.name for f in fields(SamplingConfig)]
    for option in options:
        assert option.flag.startswith("--") and option.label and option.default == getattr(SamplingConfig(), option.name)
        assert option.hint and "\n" not in option.hint and len(option.hint) <= 120, option
