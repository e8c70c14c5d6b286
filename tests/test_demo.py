"""`vab demo --quick` end to end, with bounds a broken pipeline would fail; then
`vab generate` on an unrelated video with the demo's model; resumption and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vab.config import load_config
from vab.cli import main
from vab.demo.pipeline import FULL, QUICK, STAGES, Demo
from vab.errors import VabError


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    return out


def _results(out, stage):
    return json.loads((out / "stages" / f"{stage}.json").read_text())["results"]


@pytest.mark.slow
def test_quick_demo_numbers_are_far_above_chance(quick_demo):
    g = _results(quick_demo, "generate")
    # the generated sound names the object shown, and sounds while it is visible (a model that
    # ignores the video scores chance, 1/8, on class and about 0.5 on timing)
    assert g["class_agreement"] >= 2 * g["class_chance"]
    assert g["timing_agreement"] >= g["timing_chance"] + 0.1
    # the weights-free sync score sees the same without the ground truth: real audio far above
    # another clip's frames, the generated soundtracks above chance
    assert g["sync_real"] >= g["sync_chance"] + 0.5 and g["sync_score"] >= g["sync_chance"] + 0.2
    assert g["sync_offset"] < g["sync_offset_chance"]
    # the judge itself is sound (it labels the real held-out audio)
    assert g["judge_on_real_test"] >= 0.95 and g["judge_on_codec_test"] >= 0.9
    r = _results(quick_demo, "retrieval")
    for direction in ("video->audio", "audio->video"):
        assert r[direction]["R@1"] >= 4 * r["chance"]
        assert r[direction]["R@5"] >= 0.5
    c = _results(quick_demo, "classify")
    for mode in ("audio", "visual", "audio-visual"):
        assert c[mode]["accuracy"] >= 0.6, mode


@pytest.mark.slow
def test_quick_demo_writes_media_models_and_report(quick_demo):
    from vab import media

    g = _results(quick_demo, "generate")
    wavs = sorted((quick_demo / "generated").glob("*.wav"))
    mp4s = sorted((quick_demo / "generated").glob("*.mp4"))
    assert len(wavs) == len(mp4s) == g["clips"] == QUICK.test
    assert len(list((quick_demo / "generated").glob("*.png"))) == QUICK.plots
    info = media.probe(mp4s[0])
    assert info.has_video and info.has_audio and info.duration == pytest.approx(QUICK.seconds, abs=0.1)
    for name in ("model", "retrieval", "classify-audio", "classify-visual", "classify-audio-visual"):
        assert (quick_demo / name / "model.safetensors").is_file(), name
        card = (quick_demo / name / "README.md").read_text()  # the model card carries the demo's numbers
        assert card.count("## vab demo results") == 1 and "| class agreement |" in card, name
    from vab.search import Index

    index = Index.load(quick_demo / "index")  # the held-out clips, for vab search and vab app
    assert len(index) == QUICK.test and all(Path(p).is_file() for p in index.paths)
    report = (quick_demo / "report.md").read_text()
    for text in ("class agreement", "timing agreement", "sync score (weights-free)", "R@1",
                 "classification accuracy (audio-visual)",
                 "chance", str(quick_demo / "model"), str(mp4s[0]), f"vab app --checkpoint {quick_demo / 'model'}"):
        assert text in report


@pytest.mark.slow
def test_generate_with_the_demo_model_on_any_video(quick_demo, tmp_path, video_factory):
    # another size, frame rate and length than the synthetic world, and stereo 44.1-kHz audio
    video = video_factory("other.mp4", seconds=5.3, fps=25, width=96, height=54, sample_rate=44100, channels=2)
    out = tmp_path / "out"
    assert main(["generate", str(video), "--checkpoint", str(quick_demo / "model"), "--out", str(out), "--plot"]) == 0
    from vab import media

    wav = media.read_audio(out / "other.wav", 16000)
    assert len(wav) / 16000 == pytest.approx(5.3, abs=0.05)
    assert media.probe(out / "other.mp4").duration == pytest.approx(5.3, abs=0.1)
    assert (out / "other.png").is_file()


@pytest.mark.slow
def test_rerun_skips_finished_stages_and_other_settings_are_refused(quick_demo, capsys):
    stamps = {s: (quick_demo / "stages" / f"{s}.json").stat().st_mtime_ns for s in STAGES}
    assert main(["demo", "--quick", "--out", str(quick_demo)]) == 0
    assert {s: (quick_demo / "stages" / f"{s}.json").stat().st_mtime_ns for s in STAGES} == stamps
    out = capsys.readouterr().out
    assert "skipped" in out
    # it ends with the web page's command for its models, on one line to copy
    assert out.rstrip().splitlines()[-1].strip() == (
        f"vab app --checkpoint {quick_demo / 'model'} --index {quick_demo / 'index'} "
        f"--classifier {quick_demo / 'classify-audio-visual'}")
    # the full demo in the quick demo's folder: refused before anything is done
    assert main(["demo", "--out", str(quick_demo)]) == 2
    assert "other settings" in capsys.readouterr().err


def test_a_folder_that_is_not_a_demo_is_refused(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(VabError, match="not a demo folder"):
        Demo(tmp_path, QUICK, log=lambda _: None).run()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]


def test_settings_describe_a_smaller_quick_run():
    assert QUICK.test < FULL.test and QUICK.pretrain_steps < FULL.pretrain_steps
    assert FULL.test == 64  # the retrieval target is on 64 held-out clips
    overrides = FULL.config_overrides(FULL_DATA := __import__("pathlib").Path("d"))
    assert f"data.path=[{FULL_DATA}]" in overrides and "data.fps=8.0" in overrides


# ---------------------------------------------------------------- the harder world (issue 15)
def test_vab_demo_world_shapes_picks_the_harder_world_with_the_offline_encoder_that_sees_shape():
    from vab.demo.pipeline import SHAPES, SHAPES_QUICK, demo_settings

    assert demo_settings() is FULL and demo_settings("demo", quick=True) is QUICK
    assert demo_settings("shapes") is SHAPES and demo_settings("shapes", quick=True) is SHAPES_QUICK
    for s in (SHAPES, SHAPES_QUICK):
        assert s.world == "shapes" and not [o for o in s.overrides if o.startswith("visual.")]
    # the preset's frame encoder is the one that tells shapes apart (a colour grid cannot)
    assert load_config("tiny").visual.name == "hog-colour"
    with pytest.raises(VabError, match="unknown world"):
        demo_settings("cubes")


@pytest.mark.slow
def test_shapes_demo_reports_both_ceilings_against_its_own_targets(tmp_path):
    from dataclasses import replace

    from vab.demo.pipeline import SHAPES
    from vab.demo.report import summary_rows, write_report

    tiny = replace(SHAPES, name="shapes-test", classes=3, train=12, valid=3, test=6, seconds=2.0, pretrain_steps=4,
                   batch_size=6, plots=1)
    result = Demo(tmp_path / "run", tiny, log=lambda _: None).run(("synth", "extract", "pretrain", "generate"))
    g = result.stages["generate"].results
    assert 0.0 <= g["visual_ceiling"] <= 1.0 and g["judge_on_codec_test"] >= 0.5
    rows = {r.measure: r for r in summary_rows(result)}
    assert rows["class agreement"].target == 0.6 and rows["timing agreement"].target == 0.9
    assert rows["class agreement / visual ceiling"].target == 0.8
    assert rows["class agreement: visual ceiling"].value == g["visual_ceiling"]
    assert rows["class agreement: codec ceiling"].value == g["judge_on_codec_test"]
    assert rows["sync score (weights-free)"].value == g["sync_score"] and -1 <= g["sync_score"] <= 1
    assert rows["sync score (weights-free)"].chance == g["sync_chance"] and g["sync_real"] > g["sync_chance"] + 0.3
    report = write_report(result).read_text()
    assert "`shapes` world" in report and "visual ceiling" in report and "sync score (weights-free)" in report
    assert json.loads((tmp_path / "run" / "world" / "world.json").read_text())["params"]["world"] == "shapes"
