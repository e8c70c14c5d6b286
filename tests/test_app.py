"""`vab app` end to end in a real browser (Debian's headless chromium, driven by Playwright),
and the pieces behind it.

The server runs as a user starts it, in its own process, with a tiny random model laid out
like a `vab demo` folder (model, index of the held-out clips, an audio-visual classifier,
plus an audio classifier), started with the command `vab demo` prints and a system
temporary folder of its own.  The browser uploads test-made media, presses the buttons and
reads the page, at a desktop and at a phone viewport; what the page returns is checked
against the CLI (`vab generate`, `vab search`) and the library.  These tests never skip:
without chromium they fail and say how to install it.  Screenshots go to
$VAB_TEST_ARTIFACTS (default: a temporary folder); `VAB_TEST_ARTIFACTS=docs python -m
pytest tests/test_app.py` remakes the README's.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from tests.browser import (
    VIEWPORTS, AppServer, chromium, chromium_missing, fetch, open_page, set_number, upload, wait_text,
)
from tests.conftest import free_port
from tests.mediagen import make_video, tone
from vab import media
from vab.checkpoint import load_model
from vab.cli import main

SEED = 7
STEPS = 2  # decoding steps: the page's results are compared with the CLI's, not judged
MAX_SECONDS = 120  # the server's --max-seconds; the too-long upload is longer
MAX_UPLOAD_MB = 1  # the server's --max-upload-mb; the test media are smaller, the too-big upload is not
CLIP_SECONDS = 5.0  # the world's clips: two 4-s windows each
TABS = ("Generate", "Edit", "Continue", "Search", "Classify")


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """A folder laid out like `vab demo`'s: world/, model/, index/ (held-out clips),
    classify-audio-visual/, and an audio classifier classify-audio/."""
    import torch

    from tests.test_generate import make_model_dir
    from vab.data.synthetic import iter_split, read_truth, synthesize
    from vab.checkpoint import load_codec
    from vab.finetuning.classifier import Classifier, save_classifier
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
    for mode in ("audio-visual", "audio"):
        torch.manual_seed(0)
        save_classifier(Classifier(backbone, len(labels), mode, labels), load_codec(backbone, model_dir),
                        root / f"classify-{mode}", "ce")
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
    """`vab app` as `vab demo` prints it (plus the audio classifier), on a free port, in its
    own process, with a system temporary folder of its own: every test of the page checks
    that nothing lands there outside the workspace, and a clean stop leaves it empty."""
    from vab.demo.pipeline import app_command

    words = app_command(demo_dir).split()
    assert words[:2] == ["vab", "app"] and "--index" in words and "--classifier" in words
    tmp = tmp_path_factory.mktemp("system-tmp")
    app = AppServer(words[2:] + ["--classifier", str(demo_dir / "classify-audio"), "--port", str(free_port()),
                                 "--max-seconds", str(MAX_SECONDS), "--max-upload-mb", str(MAX_UPLOAD_MB)],
                    log=tmp_path_factory.mktemp("log") / "app.log", tmp=tmp)
    assert app.folder.parent == tmp
    yield app
    assert not outside_the_workspace(app), "the server wrote outside its workspace"
    assert app.stop() == 0
    assert not app.folder.exists(), "stopping the server leaves its temporary folder behind"
    assert not list(tmp.iterdir()), "a clean stop leaves files in the system's temporary folder"
    log = app.log.read_text()
    # Gradio reports input it refuses (the API fuzz sends plenty) with a traceback of its own; none passes through vab
    assert not [block for block in log.split("Traceback")[1:] if "/vab/" in block.split("\n\n")[0]], log[-3000:]
    assert at_most_running(log, 1)  # --concurrency 1, whatever the tests did


def outside_the_workspace(app) -> list[Path]:
    """What the server made in its system temporary folder outside its workspace."""
    return [p for p in app.folder.parent.rglob("*") if p != app.folder and app.folder not in p.parents]


def at_most_running(log: str, concurrency: int) -> bool:
    """Whether the server's log (one line per job started / ended) never shows more than
    `concurrency` jobs running at once."""
    running = peak = 0
    for line in log.splitlines():
        if re.search(r"vab app: job \d+ .*\) started", line):
            running += 1
        elif re.search(r"vab app: job \d+ .*\) (done|ended)", line):
            running -= 1
        peak = max(peak, running)
    return peak <= concurrency


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
    for word in words:  # the line may still be the previous one
        text = wait_text(page, selector, word)
    assert "\n" not in text and text.startswith(f"{failed} failed:") and all(w in text for w in words), text
    assert "Traceback" not in page.inner_text("body")
    return text


def refuses_a_text_file(page, server, tab: str, bad: Path) -> None:
    """On `tab` (Search or Classify), a text file named like a video gets one line."""
    kind = {"Search": ("search", "search-query"), "Classify": ("classify", "classify-file")}[tab]
    bad.write_text("not a video")
    open_page(None, server.url, tab, page=page)
    upload(page, kind[1], bad)
    one_line_error(page, f"#{kind[0]}-status p", "upload", bad.name, "not a media file")  # told on upload, and
    page.click(f"#{kind[0]}-button")
    one_line_error(page, f"#{kind[0]}-status p", kind[0], bad.name, "not a media file")


def read_wav(path: Path) -> np.ndarray:
    return media.read_audio(path, 16000)


def cli_outputs(tmp_path: Path, video: Path, model: Path, *extra: str) -> Path:
    """The folder `vab generate --plot` wrote for `video` with the page's seed and steps."""
    out = tmp_path / "cli"
    assert main(["generate", str(video), "--checkpoint", str(model), "--out", str(out), "--seed", str(SEED),
                 "--steps", str(STEPS), "--plot", *extra]) == 0
    return out


def settings(page, tab: str, **values) -> None:
    """Unfold `tab`'s settings if a phone has them folded, and type `values` into them."""
    if not page.locator(f"#{tab}-steps").is_visible():
        page.locator(f"#{tab}-settings").get_by_text("Settings").click()
        page.locator(f"#{tab}-format").wait_for(state="visible")
    for name, value in values.items():
        box = page.locator(f"#{tab}-{name} input[type=number]")
        for _ in range(3):  # a panel that has just unfolded may still be drawing its fields
            set_number(page, f"{tab}-{name}", value)
            page.wait_for_timeout(200)
            if box.input_value() == str(value):
                break
        assert box.input_value() == str(value), (name, box.input_value())


def pressable(page, element: str) -> bool:
    return page.locator(f"#{element}").is_enabled()


def downloads(page, element: str) -> dict[str, str]:
    """{file name offered: its address} of the download links in `element`."""
    links = page.locator(f"#{element} a[download]")
    return {links.nth(k).get_attribute("download"): links.nth(k).get_attribute("href") for k in range(links.count())}


def job_folders(server) -> set[Path]:
    return set(server.folder.joinpath("jobs").iterdir())


# ---------------------------------------------------------------------- the page, in chromium
def test_the_page_renders_offline_on_this_machine_only(server, browser):
    requested: list[str] = []
    browser.on("request", lambda r: requested.append(r.url))
    page = open_page(browser, server.url)
    body = page.inner_text("body")
    assert f"Uploads up to {MAX_UPLOAD_MB} MB and {MAX_SECONDS / 60:g} min" in body
    origin = server.url.rstrip("/")
    outside = [u for u in requested if not u.startswith((origin, "data:", "blob:"))]
    assert requested and not outside, outside  # scripts, styles and fonts all come from the server
    port = int(origin.rsplit(":", 1)[1])
    listening = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    bound = {row[1] for row in listening if row[3] == "0A" and int(row[1].split(":")[1], 16) == port}
    assert bound == {f"0100007F:{port:04X}"}  # 127.0.0.1 only
    page.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_generate_as_a_person_uses_it(viewport, server, browser, demo_dir, clips, artifacts, tmp_path):
    """Layout (every tab in sight, Generate before the settings, folded on a phone), a hint
    on every setting, a new seed, the examples with captions and real thumbnails, Stop /
    Generate states down to a final "stopped" line, then a result named for what it is."""
    from vab.generation.sampling import sampling_options

    page = open_page(browser, server.url, viewport=viewport)
    height = VIEWPORTS[viewport]["height"]
    # every tab is in sight (none folded into a menu); Generate is on the first screen, the settings below it
    assert all(page.get_by_role("tab", name=tab).is_visible() for tab in TABS)
    button = page.locator("#generate-button").bounding_box()
    assert button["y"] + button["height"] <= height
    assert page.locator("#generate-settings").bounding_box()["y"] > button["y"]
    assert page.locator("#generate-steps").is_visible() == (viewport == "desktop")  # folded on a phone
    settings(page, "generate")
    shown = page.inner_text("#generate-settings")
    for option in sampling_options():  # one line each: what raising it does
        assert option.label in shown and option.hint in shown, option.name
    # Stop is off until something runs; a new seed is drawn on request
    assert pressable(page, "generate-button") and not pressable(page, "generate-stop")
    seed_box = page.locator("#generate-seed input")
    page.click("#generate-new-seed")
    page.wait_for_function("el => el.value !== '0'", arg=seed_box.element_handle(), timeout=10_000)
    assert re.fullmatch(r"\d+", seed_box.input_value())
    # the examples: one per class, captioned with it, each thumbnail a frame with its object in view
    captions = page.locator("#generate-examples .caption-label").all_inner_texts()
    assert sorted(captions) == ["blue-triangle", "green-disc", "red-square", "yellow-cross"], captions
    for src in page.locator("#generate-examples img").evaluate_all("imgs => imgs.map(i => i.src)"):
        thumbnail = media_image(fetch(src, tmp_path / "thumb.jpg"))
        assert np.percentile(thumbnail.max(axis=2), 99) > 150, src  # not black: the object is in view

    # a long video: while it runs Generate is off and Stop on; Stop ends it with a final line, writing nothing
    long = make_video(tmp_path / "long.mp4", seconds=60.0, fps=2.0, width=32, height=24)
    before = job_folders(server)
    upload(page, "generate-video", long)  # with the default steps: long enough to be stopped
    wait_text(page, "#generate-status p", "long.mp4: 60.0 s")
    page.click("#generate-button")
    wait_text(page, "#generate-status", "window")  # windows and the time left
    assert not pressable(page, "generate-button") and pressable(page, "generate-stop")
    page.click("#generate-stop")
    final = wait_text(page, "#generate-status p", "stopped after window")
    assert final.endswith("; nothing was written") and "\n" not in final
    page.wait_for_function("!document.querySelector('#generate-button').disabled", timeout=10_000)
    assert not pressable(page, "generate-stop")
    assert job_folders(server) == before

    # an example, picked; its result is named for what it is and is the CLI's soundtrack
    page.locator("#generate-examples img").first.click()
    video = clips[0]
    wait_text(page, "#generate-status p", f"{video.name}: {CLIP_SECONDS:.1f} s")
    settings(page, "generate", seed=SEED, steps=STEPS)
    page.click("#generate-button")
    done = wait_text(page, "#generate-status p", f"{video.stem}-vab-seed{SEED}: ")
    assert f"{CLIP_SECONDS:.1f} s of audio in 2 window(s)" in done
    page.wait_for_selector("#generate-result video", timeout=60_000)
    page.wait_for_function("document.querySelector('#generate-result video').readyState >= 1", timeout=30_000)
    assert page.evaluate("document.querySelector('#generate-result video').duration") == pytest.approx(
        CLIP_SECONDS, abs=0.2)
    offered = downloads(page, "generate-download")
    assert set(offered) == {f"{video.stem}-vab-seed{SEED}.wav", f"{video.stem}-vab-seed{SEED}.mp4"}
    mp4 = fetch(offered[f"{video.stem}-vab-seed{SEED}.mp4"], tmp_path / "page.mp4")
    info = media.probe(mp4)
    assert info.has_video and info.has_audio and info.duration == pytest.approx(CLIP_SECONDS, abs=0.1)
    wav = fetch(offered[f"{video.stem}-vab-seed{SEED}.wav"], tmp_path / "page.wav")
    page.wait_for_selector("#generate-plot img", state="attached", timeout=30_000)
    page.locator("#generate-plot img").scroll_into_view_if_needed()  # a phone loads it once in sight
    if viewport == "phone":  # its first screen, as a person holds it
        page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts / f"app-generate{'-phone' if viewport == 'phone' else ''}.png"),
                    full_page=viewport == "desktop")
    cli = cli_outputs(tmp_path, video, demo_dir / "model")
    assert np.array_equal(read_wav(wav), read_wav(cli / f"{video.stem}.wav"))
    page.close()


def media_image(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_edit_as_a_person_uses_it(viewport, server, browser, demo_dir, clips, artifacts, tmp_path):
    """The soundtrack over a time axis; spans chosen by two clicks, drawn on it and on the
    result; spans past the clip's end refused in words a page user reads (no CLI flags)."""
    from vab.generation.features import video_seconds
    from vab.generation.plot import spectrogram_picture

    page = open_page(browser, server.url, "Edit", viewport=viewport)
    video = clips[3]
    upload(page, "edit-video", video)
    wait_text(page, "#edit-status p", "with sound")
    seconds = video_seconds(video)
    wav = media.read_audio(video, 16000, 0.0, seconds)

    def shown_picture() -> Path:
        src = page.wait_for_selector("#edit-spectrogram img", timeout=30_000).get_attribute("src")
        return fetch(src, tmp_path / "shown.png")

    def library_picture(spans) -> tuple[bytes, tuple[float, float]]:
        path, columns = spectrogram_picture(tmp_path / "library.png", wav, 16000, spans)
        return path.read_bytes(), columns

    # the picture is the library's: the soundtrack over a time axis from 0 to the clip's end
    expected, (x0, x1) = library_picture([])
    assert shown_picture().read_bytes() == expected
    natural = media_image(tmp_path / "library.png").shape[1]
    picture = page.locator("#edit-spectrogram img")
    box = picture.bounding_box()
    scale = box["width"] / natural
    plain = picture.get_attribute("src")
    for t, answer in ((1.0, "span starts at"), (2.5, "added")):  # a span from 1.0 s to 2.5 s, by two clicks
        picture.click(position={"x": (x0 + t / seconds * (x1 - x0)) * scale, "y": box["height"] / 2})
        wait_text(page, "#edit-note p", answer)
    spans_box = page.locator("#edit-spans").locator("textarea, input").first
    a, b = (float(x) for x in spans_box.input_value().split("-"))
    assert a == pytest.approx(1.0, abs=0.05) and b == pytest.approx(2.5, abs=0.05)
    page.wait_for_function("src => document.querySelector('#edit-spectrogram img')?.src !== src", arg=plain,
                           timeout=30_000)
    assert shown_picture().read_bytes() == library_picture([(a, b)])[0]  # the chosen span, drawn

    # spans that do not fit the clip, or are not spans: one line, in the page's words
    for typed, words in (("3-9", ["edit span 3-9 s ends after the end (5.00 s)"]),
                         ("7-8", ["edit span 7-8 s starts after the end"]),
                         ("abc", ["'abc' is not a time span like 2.5-4.0"])):
        spans_box.fill(typed)
        spans_box.press("Enter")
        line = one_line_error(page, "#edit-note p", "spans", *words)
        assert "--" not in line, line
        page.click("#edit-button")
        assert "--" not in one_line_error(page, "#edit-status p", "edit", *words)

    settings(page, "edit", seed=SEED, steps=STEPS)
    spans = "1.0-2.5"
    spans_box.fill(spans)
    page.click("#edit-button")
    wait_text(page, "#edit-status p", f"{video.stem}-vab-edited-seed{SEED}: ")
    cli = cli_outputs(tmp_path / "edit", video, demo_dir / "model", "--edit", spans)
    edited = fetch(page.get_attribute("#edit-audio a[download]", "href"), tmp_path / "edited.wav")
    assert np.array_equal(read_wav(edited), read_wav(cli / f"{video.stem}.wav"))
    # the result's picture shades the regenerated span, as `vab generate --edit --plot` does
    plot = page.wait_for_selector("#edit-plot img", state="attached", timeout=30_000)
    plot.scroll_into_view_if_needed()
    plot = fetch(plot.get_attribute("src"), tmp_path / "r.png")
    assert plot.read_bytes() == (cli / f"{video.stem}.png").read_bytes()
    if viewport == "desktop":
        page.screenshot(path=str(artifacts / "app-edit.png"), full_page=True)

    page.get_by_role("tab", name="Continue").click()
    prompt = media.write_audio(tmp_path / "door.wav", tone(1.5, 16000, freq=300.0), 16000)
    settings(page, "continue", seed=SEED, steps=STEPS)
    upload(page, "continue-video", video)
    wait_text(page, "#continue-status p", f"{video.name}: {CLIP_SECONDS:.1f} s")
    upload(page, "continue-prompt", prompt)
    wait_text(page, "#continue-status p", "door.wav: 1.5 s")
    page.click("#continue-button")
    wait_text(page, "#continue-status p", f"{video.stem}-vab-continued-seed{SEED}: ")
    continued = fetch(page.get_attribute("#continue-audio a[download]", "href"), tmp_path / "continued.wav")
    cli = cli_outputs(tmp_path / "continue", video, demo_dir / "model", "--prompt", str(prompt))
    assert np.array_equal(read_wav(continued), read_wav(cli / f"{video.stem}.wav"))
    page.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_search_and_classify_say_what_they_take_and_know(viewport, server, browser, demo_dir, clips, artifacts,
                                                         tmp_path, capsys):
    import json

    import torch

    from vab.finetuning.classification_objective import scores_from_logits
    from vab.finetuning.classifier import load_classifier
    from vab.search import Embedder

    labels = ["blue-triangle", "green-disc", "red-square", "yellow-cross"]
    page = open_page(browser, server.url, "Search", viewport=viewport)
    about = page.inner_text("#search-about")
    assert f"4 clips from {demo_dir / 'world' / 'clips'} (test split), labelled {', '.join(labels)}" in about
    assert "reads both sound and picture" in about
    upload(page, "search-query", clips[1])
    wait_text(page, "#search-status p", f"{clips[1].name}: {CLIP_SECONDS:.1f} s")  # the upload told first
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
        rank, clip_id, shown_labels, cosine = row[:4]
        assert (int(rank), clip_id, shown_labels) == (hit["rank"], hit["id"], ", ".join(hit["labels"]))
        assert float(cosine) == pytest.approx(hit["cosine"], abs=1e-4)
    href = page.get_attribute("#match-audio-0 a[download]", "href")  # each match plays its first window
    assert fetch(href, tmp_path / "match.wav").stat().st_size > 1000
    if viewport == "desktop":
        page.screenshot(path=str(artifacts / "app-search.png"), full_page=True)

    # Classify says what each classifier reads and every label it knows
    page.get_by_role("tab", name="Classify").click()
    about = page.inner_text("#classify-about")
    for name, reads in (("classify-audio-visual", "sound and picture together"), ("classify-audio", "sound only")):
        assert f"{name} reads {reads} and knows 4 labels: {', '.join(labels)}" in about
    upload(page, "classify-file", clips[2])
    wait_text(page, "#classify-status p", f"{clips[2].name}: {CLIP_SECONDS:.1f} s")
    page.click("#classify-button")
    line = wait_text(page, "#classify-status p", " by classify-")
    assert line.startswith(f"{clips[2].name}: ") and line.endswith(" by classify-audio-visual"), line
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
    if viewport == "desktop":
        page.screenshot(path=str(artifacts / "app-classify.png"), full_page=True)
    # an audio file, with the audio-visual classifier chosen: the audio classifier answers, and the page says so
    sound = media.write_audio(tmp_path / "sound.wav", media.read_audio(clips[2], 16000), 16000)
    open_page(None, server.url, "Classify", page=page)
    upload(page, "classify-file", sound)
    wait_text(page, "#classify-status p", "sound.wav: 5.0 s")
    page.click("#classify-button")
    line = wait_text(page, "#classify-status p", " by classify-")
    assert "by classify-audio; it has sound only, so classify-audio (sound only) answered instead of " \
           "classify-audio-visual" in line, line
    refuses_a_text_file(page, server, "Classify", tmp_path / "clip.mp4")
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
    assert pressable(page, "generate-button") and not pressable(page, "generate-stop")  # nothing runs
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


def test_a_waiting_job_sees_its_place_and_when_it_starts(server, browser, clips, tmp_path):
    """Two pages, one slot: the second job says where it stands in the queue and when it
    should start and end (the first one's pace is known by now); Stop on the first frees
    the slot only once its window has ended."""
    long = make_video(tmp_path / "long.mp4", seconds=MAX_SECONDS - 20, fps=2.0, width=32, height=24)
    first, second = open_page(browser, server.url), open_page(browser, server.url)
    settings(first, "generate", steps=32)  # long enough to be waited for (the defaults' 4 steps may end first)
    settings(second, "generate", steps=STEPS)
    upload(first, "generate-video", long)
    upload(second, "generate-video", clips[0])
    wait_text(first, "#generate-status p", "long.mp4")
    wait_text(second, "#generate-status p", clips[0].name)
    before = job_folders(server)
    first.click("#generate-button")
    wait_text(first, "#generate-status", "left")  # its windows, and the time they should take
    second.click("#generate-button")
    waiting = wait_text(second, "#generate-status p", "waiting for a free slot: 1 of 1 in the queue")
    assert re.search(r"starts in (about \d+ (s|min)|a moment) and takes (about \d+ (s|min)|a moment)", waiting), waiting
    assert not pressable(second, "generate-button") and pressable(second, "generate-stop")
    first.click("#generate-stop")
    wait_text(first, "#generate-status p", "stopped after window")
    done = wait_text(second, "#generate-status p", f"{clips[0].stem}-vab-seed0: ")
    assert "in the queue" in done or "window(s)" in done
    made = job_folders(server) - before
    assert len(made) == 1 and {p.suffix for p in next(iter(made)).iterdir()} == {".wav", ".mp4", ".png"}
    assert at_most_running(server.log.read_text(), 1)
    first.close()
    second.close()


# ---------------------------------------------------------------------- the page's API (gradio_client)
def api_args(video, seed: int = 0, steps: int = STEPS) -> list:
    """/generate's inputs: the video, then the settings in SamplingConfig's order, seconds
    from the start and the download format."""
    from gradio_client import handle_file

    from vab.generation.sampling import SamplingConfig, sampling_options

    values = {o.name: getattr(SamplingConfig(), o.name) for o in sampling_options()}
    values.update(seed=seed, steps=steps)
    return [handle_file(str(video)), *values.values(), 0, "wav"]


@pytest.mark.parametrize("how", ["stop", "cancel"])
def test_stop_then_generate_at_once_never_runs_two_jobs(how, server, tmp_path, clips):
    """Stop (the Stop endpoint, or the request cancelled as Gradio's own cancel does), then
    a new job within a second: the stopped job ends at its next window with its final line
    and writes nothing, the new one starts only then, and the log never shows two running."""
    from gradio_client import Client

    long = make_video(tmp_path / "long.mp4", seconds=MAX_SECONDS - 20, fps=2.0, width=32, height=24)
    client = Client(server.url, download_files=str(tmp_path / "downloads"), verbose=False)
    before = job_folders(server)
    first = client.submit(*api_args(long, steps=16), api_name="/generate")  # long enough to be stopped
    deadline = time.monotonic() + 120
    while not any("left" in out[0] for out in first.outputs()):  # running, windows and time told
        assert time.monotonic() < deadline and not first.done(), first.outputs()[-1:]
        time.sleep(0.05)
    if how == "stop":
        client.predict(api_name="/stop_generate")
    else:
        first.cancel()
    second = client.submit(*api_args(clips[1]), api_name="/generate")
    assert f"{clips[1].stem}-vab-seed0: " in second.result(timeout=120)[0]
    if how == "stop":
        assert "stopped after window" in first.outputs()[-1][0]
    made = job_folders(server) - before
    assert len(made) == 1 and all(p.name.startswith(clips[1].stem) for p in next(iter(made)).iterdir())
    log = server.log.read_text()
    assert at_most_running(log, 1)
    started = [m.group(1) for m in re.finditer(r"job (\d+) \(generate (long|%s)" % clips[1].stem, log)]
    assert started, log


def test_random_values_of_every_field_of_the_api_give_a_result_or_one_line(server, clips, tmp_path_factory):
    """Hypothesis over the page's API (gradio_client, as any script can call it): every
    public endpoint, random values of every field (media of every kind and none, numbers out
    of range, NaN, huge, text where numbers go, any text for spans).  Each call ends in a
    result or one line, the server writes nothing outside its workspace, and no error
    escapes vab's own code (the server log may hold Gradio's own reports of input it
    refused, never a traceback through vab)."""
    from gradio_client import Client, handle_file
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    folder = tmp_path_factory.mktemp("fuzz")
    text = folder / "notes.mp4"
    text.write_text("not a video")
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    sound = media.write_audio(folder / "sound.wav", tone(1.0, 16000), 16000)
    silent = make_video(folder / "silent.mp4", seconds=2.0, fps=2.0, width=32, height=24, audio=False)
    files = [clips[0], clips[3], sound, silent, text, empty]
    client = Client(server.url, download_files=str(folder / "downloads"), verbose=False)
    endpoints = {name: [(p["component"], p.get("parameter_default")) for p in info["parameters"]]
                 for name, info in client.view_api(return_format="dict", print_info=False)["named_endpoints"].items()}
    assert {"/generate", "/edit", "/continue", "/search", "/classify", "/stop_generate"} <= set(endpoints)
    numbers = st.one_of(st.integers(-3, 70), st.integers(-2**70, 2**70), st.sampled_from([0.5, 1e300, -1e-9]),
                        st.floats(allow_nan=False, allow_infinity=False, width=32), st.none(),
                        st.sampled_from(["", "x", "12"]))
    values = {
        "Video": st.one_of(st.sampled_from(files).map(lambda f: handle_file(str(f))), st.none()),
        "Audio": st.one_of(st.sampled_from(files).map(lambda f: handle_file(str(f))), st.none()),
        "File": st.one_of(st.sampled_from(files).map(lambda f: handle_file(str(f))), st.none()),
        "Number": numbers, "Slider": numbers,
        "Radio": st.sampled_from(["wav", "flac", "auto", "video", "audio", "classify-audio", "mp3", "", None]),
        "Dropdown": st.one_of(st.sampled_from(["cosine", "arccos", "Cosine", "", None]), st.text(max_size=12)),
        "Textbox": st.one_of(st.sampled_from(["1-2", "0-5", "3-9", "7-8", "2-1", "0.5-1,1-1.5", ""]),
                             st.text(max_size=20)),
    }
    usual = {"Video": handle_file(str(clips[0])), "File": handle_file(str(clips[0])), "Audio": handle_file(str(sound)),
             "Textbox": "1-2"}  # a field left alone: a good clip, a prompt, a span
    calls = []

    @settings(max_examples=int(os.environ.get("VAB_FUZZ_EXAMPLES", "30")), deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def call(data):
        name = data.draw(st.sampled_from(sorted(endpoints)), label="endpoint")
        # about one field in four gets a random value, the others their defaults (a good clip for media),
        # so that calls reach the work as well as the checks
        args = [data.draw(values[kind], label=kind) if data.draw(st.integers(0, 3), label="random?") == 0
                else usual.get(kind, default) for kind, default in endpoints[name]]
        try:
            out = client.predict(*args, api_name=name)
        except Exception as exc:  # noqa: BLE001 - what a script calling the page sees
            said = str(exc)
            assert said and "\n" not in said.strip() and "Traceback" not in said, (name, said)
            calls.append((name, "refused"))
        else:
            first = out[0] if isinstance(out, (tuple, list)) and out else out  # the status line (Stop: nothing)
            line = re.sub(r"<[^>]+>", "", first if isinstance(first, str) else "")
            assert "\n" not in line.strip() and "Traceback" not in line, (name, line)
            calls.append((name, "failed" if "failed:" in line else "answered"))
        assert not outside_the_workspace(server)

    call()
    assert {outcome for _, outcome in calls} >= {"answered", "failed"}, calls  # both kinds were tried
    log = server.log.read_text()
    assert not [block for block in log.split("Traceback")[1:] if "/vab/" in block.split("\n\n")[0]], log[-3000:]
    assert at_most_running(log, 1)


# ---------------------------------------------------------------------- the pieces, without a browser
def test_the_job_queue_holds_a_slot_until_the_work_has_ended():
    """Cancelling the request that watches a job (as Gradio does on Stop) stops the job at
    its next window, and the next job starts only once that window has ended."""
    import asyncio
    import threading

    from vab.app.jobs import JobQueue, Stopped

    lines: list[str] = []
    queue = JobQueue(concurrency=1, queue_size=2, log=lines.append)
    window_ends, running, peak = threading.Event(), [], []

    def slow(job):
        running.append(job.id)
        peak.append(len(running))
        try:
            for k in range(1, 100):
                window_ends.wait(5)
                job.progress(k, 99)  # raises Stopped once the flag is set
        finally:
            running.remove(job.id)

    async def scenario():
        first = queue.submit("generate", ("s", "generate"), "a.mp4", slow, windows=99, steps=2)
        watcher = asyncio.ensure_future(_drain(queue.follow(first, every=0.01)))
        await asyncio.sleep(0.2)
        assert first.started is not None
        watcher.cancel()  # the request goes away: the job is told to stop ...
        second = queue.submit("generate", ("s", "generate"), "b.mp4", lambda job: "b", windows=1)
        await asyncio.sleep(0.2)
        assert second.started is None and first.ended is None  # ... and keeps its slot until its window ends
        assert queue.update(second).line.startswith("waiting for a free slot: 1 of 1")
        window_ends.set()
        await _drain(queue.follow(second, every=0.01))
        return first, second

    outcome: list = []  # in a thread of its own: the browser tests' Playwright holds this thread's event loop
    runner = threading.Thread(target=lambda: outcome.append(asyncio.run(scenario())))
    runner.start()
    runner.join(60)
    first, second = outcome[0]
    assert isinstance(first.error, Stopped) and str(first.error) == "stopped after window 1 of 99"
    assert second.result == "b" and second.started >= first.ended and max(peak) == 1
    assert [re.sub(r" after [\d.]+ s$", "", line.split(") ", 1)[1]) for line in lines] == [
        "started, 1 running", "ended: stopped after window 1 of 99", "started, 1 running", "done"]


async def _drain(updates) -> list:
    return [u async for u in updates]


def test_the_job_queue_refuses_past_its_size_and_stops_a_waiting_job_before_it_starts():
    import threading

    from vab.app.jobs import JobQueue, Stopped
    from vab.errors import VabError

    queue = JobQueue(concurrency=1, queue_size=1)
    hold = threading.Event()
    running = queue.submit("search", ("a", "search"), "q.mp4", lambda job: hold.wait(5))
    while running.started is None:
        time.sleep(0.01)
    waiting = queue.submit("search", ("b", "search"), "q.mp4", lambda job: "never")
    with pytest.raises(VabError, match="the queue is full"):
        queue.submit("search", ("c", "search"), "q.mp4", lambda job: None)
    assert queue.stop(("b", "search")) == [waiting]
    while waiting.ended is None:
        time.sleep(0.01)
    assert isinstance(waiting.error, Stopped) and str(waiting.error) == "stopped before it started"
    hold.set()


def test_estimates_count_the_queue_and_never_run_past_themselves():
    from vab.app.jobs import Job, JobQueue

    queue = JobQueue(concurrency=1, queue_size=4)
    done = Job(0, "generate", ("x", "generate"), "old.mp4", windows=4, steps=2, started=100.0, ended=108.0)
    queue.pace.record(done)  # 1 s per window-step
    running = Job(1, "generate", ("a", "generate"), "a.mp4", windows=10, steps=2, started=200.0)
    waiting = Job(2, "generate", ("b", "generate"), "b.mp4", windows=3, steps=2)
    queue._running.append(running)
    queue._waiting.append(waiting)
    assert queue.update(running, now=200.0).line == "window 1 of 10: about 20 s left"
    assert queue.update(waiting, now=200.0).line == (
        "waiting for a free slot: 1 of 1 in the queue, starts in about 20 s and takes about 6 s")
    running.done, running.last_window = 2, 210.0  # slower than the pace said: 5 s a window
    assert queue.update(running, now=212.0).line == "window 3 of 10: about 38 s left"
    assert queue.update(waiting, now=212.0).line.endswith("starts in about 38 s and takes about 6 s")
    # a window that runs long: the time left shrinks to "a moment", never below
    assert queue.update(running, now=300.0).line == "window 3 of 10: a moment left"


def test_options_are_checked_before_any_model_is_loaded(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    for args, words in ((["--port", "70000"], "--port"), (["--concurrency", "0"], "--concurrency"),
                        (["--keep-minutes", "0"], "--keep-minutes"), (["--device", "cuda:7"], "cuda:7")):
        try:  # --device is checked by its argparse type (argparse's exit 2), the rest by the command
            code = main(["app", "--checkpoint", str(missing), *args])
        except SystemExit as stop:
            code = stop.code
        assert code == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err
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


def test_the_backend_checks_a_request_before_any_work_and_stops_at_the_next_window(demo_dir, clips, tmp_path):
    from vab.app.backend import Backend
    from vab.app.jobs import Stopped
    from vab.app.workspace import Workspace
    from vab.errors import VabError
    from vab.generation.sampling import SamplingConfig

    video = make_video(tmp_path / "twenty.mp4", seconds=20.0, fps=2.0, width=32, height=24)
    seen = []
    with Workspace() as space:
        backend = Backend.load(demo_dir / "model", workspace=space, device="cpu",
                               classifiers=[demo_dir / "classify-audio-visual"])
        plan = backend.plan_soundtrack("generate", video, SamplingConfig(steps=1, seed=3))
        assert (plan.name, plan.windows, plan.seconds) == ("twenty-vab-seed3", 7, pytest.approx(20.0))

        def progress(done, total):
            seen.append(done)
            if done == 3:
                raise Stopped(f"stopped after window {done} of {total}")

        with pytest.raises(Stopped, match="after window 3 of 7"):
            backend.soundtrack(plan, progress)
        assert seen == [1, 2, 3] and not list(space.jobs.iterdir())
        # spans are checked against the clip's length before any work, in the page's words
        for spans, words in (("3-9", "ends after the end (5.00 s)"), ("6-7", "starts after the end"),
                             ("abc", "is not a time span"), ("", "no spans")):
            with pytest.raises(VabError, match=re.escape(words)) as caught:
                backend.plan_soundtrack("edit", clips[0], SamplingConfig(), edit=spans)
            assert "--" not in str(caught.value)
        # an audio file with only an audio-visual classifier loaded: one line saying why
        sound = media.write_audio(tmp_path / "sound.wav", tone(2.0, 16000), 16000)
        with pytest.raises(VabError) as caught:
            backend.classify(sound)
        assert str(caught.value) == (f"{sound}: has sound only, which no loaded classifier takes "
                                     "(classify-audio-visual reads sound and picture together)")


def test_generated_spans_are_shaded_in_the_plot(tmp_path):
    import torch

    from vab.generation.plot import generated_spans, save_plot, spectrogram_picture

    given = torch.ones(4, 100, dtype=torch.bool)
    given[:, 20:50] = False
    assert generated_spans(given, 10.0) == [pytest.approx((2.0, 5.0))]
    assert generated_spans(torch.zeros(4, 100, dtype=torch.bool), 10.0) == []  # all generated: nothing to tell
    wav = tone(10.0, 16000)[0]
    plain = media_image(save_plot(tmp_path / "plain.png", wav, 16000))
    shaded = media_image(save_plot(tmp_path / "shaded.png", wav, 16000, spans=[(2.0, 5.0)]))
    path, (x0, x1) = spectrogram_picture(tmp_path / "edit.png", wav, 16000, [(2.0, 5.0)])
    assert plain.shape == shaded.shape and not np.array_equal(plain, shaded)
    assert 0 < x0 < x1 < media_image(path).shape[1]  # room for the axis labels


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


def test_every_sampling_option_has_a_one_line_hint_the_page_and_cli_share(capsys):
    from dataclasses import fields

    from vab.generation.sampling import SamplingConfig, sampling_options

    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    cli_help = " ".join(capsys.readouterr().out.split())
    options = sampling_options()
    assert [o.name for o in options] == [f.name for f in fields(SamplingConfig)]
    for option in options:
        assert option.flag.startswith("--") and option.label
        assert option.default == getattr(SamplingConfig(), option.name)
        assert option.hint and "\n" not in option.hint and len(option.hint) <= 120, option
        assert f"{option.flag} {option.name.upper()} {option.hint}" in cli_help, option  # the page's line too
