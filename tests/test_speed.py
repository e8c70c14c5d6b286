"""eval/speed.py: the report arithmetic and argument checks (timing itself is a benchmark,
never asserted in tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _speed():
    spec = importlib.util.spec_from_file_location("speed_eval", REPO / "eval" / "speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(preset: str, batch: int, seconds: float, extrapolated: bool = False, precision: str = "fp32") -> dict:
    return {"pair": "tiny" if "tiny" in preset else "paper", "preset": preset, "model": preset, "params_m": 1.5,
            "batch": batch, "precision": precision, "seconds_per_clip": seconds, "extrapolated": extrapolated, "forwards_real": 8,
            "forwards": 753, "windows": 1, "peak_rss_mb": 700.0, "cores_used": 1.9, "threads": 2}


def test_speedups_pair_models_at_the_same_batch_and_the_table_says_what_was_extrapolated():
    speed = _speed()
    rows = [_row("tiny", 1, 2.0), _row("tiny", 8, 1.0), _row("foleygen-tiny", 1, 6.0), _row("foleygen-tiny", 8, 0.5),
            _row("vab-encodec", 1, 100.0, True), _row("foleygen-encodec", 1, 50.0, True)]
    gains = speed.speedups(rows)
    assert gains == {("tiny", 1, "fp32"): 3.0, ("tiny", 8, "fp32"): 0.5, ("paper", 1, "fp32"): 0.5}
    header = {"command": "python eval/speed.py", "machine": "x", "load_start": 1.0, "load_end": 2.0, "seconds": 10.0,
              "notes": "notes"}
    text = speed.markdown(rows, header, gains)
    assert "| 3.00x |" in text and "| 0.50x |" in text
    assert text.count("extrapolated from 8 of 753 forwards") == 2 and text.count("measured, all steps") == 4


def test_bad_arguments_are_one_line_errors(capsys):
    speed = _speed()
    assert speed.main(["--ar-measure-steps", "1", "--pairs", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--ar-measure-steps" in err and "\n" not in err and "Traceback" not in err


def test_each_format_is_compared_with_fp32_and_both_models_in_the_same_format():
    speed = _speed()
    rows = [_row("vab-encodec", 1, 100.0, True), _row("foleygen-encodec", 1, 200.0, True),
            _row("vab-encodec", 1, 25.0, True, "bf16"), _row("foleygen-encodec", 1, 100.0, True, "bf16")]
    gains = speed.speedups(rows)
    assert gains == {("paper", 1, "fp32"): 2.0, ("paper", 1, "bf16"): 4.0}
    assert speed.format_gains(rows)[("vab-encodec", 1, "bf16")] == 4.0
    assert speed.format_gains(rows)[("foleygen-encodec", 1, "bf16")] == 2.0
    header = {"command": "c", "machine": "x", "load_start": 1.0, "load_end": 2.0, "seconds": 10.0, "notes": "n"}
    text = speed.markdown(rows, header, gains)
    assert "| bf16 (" in text and "| 4.00x | 4.00x |" in text


def test_unknown_format_is_a_one_line_error(capsys):
    assert _speed().main(["--precisions", "fp32", "int4", "--pairs", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert "int4" in err and "\n" not in err


def test_cpu_clock_compares_cpu_seconds():
    speed = _speed()
    rows = [dict(_row("vab-encodec", 1, 100.0, True), cpu_seconds_per_clip=10.0),
            dict(_row("vab-encodec", 1, 100.0, True, "bf16"), cpu_seconds_per_clip=4.0)]
    assert speed.format_gains(rows, "cpu")[("vab-encodec", 1, "bf16")] == 2.5
    assert speed.format_gains(rows)[("vab-encodec", 1, "bf16")] == 1.0


def test_lead_is_taken_over_the_baselines_fastest_format():
    speed = _speed()
    rows = [_row("vab-encodec", 1, 10.0, precision="bf16"), _row("vab-encodec", 1, 40.0),
            _row("foleygen-encodec", 1, 60.0, precision="bf16"), _row("foleygen-encodec", 1, 90.0),
            _row("foleygen-encodec", 1, 45.0, precision="int8")]
    assert speed.lead_over_fastest(rows, "bf16") == {("paper", 1): (4.5, "int8")}
    header = {"command": "c", "machine": "x", "load_start": 1.0, "load_end": 2.0, "seconds": 10.0, "notes": "n",
              "default_format": "bf16"}
    assert "**4.50x** ahead of FoleyGen's fastest format here (int8)" in speed.markdown(rows, header, {})


def test_benchmark_videos_are_distinct_clips_of_the_asked_length(tmp_path):
    from vab.generation.features import video_seconds

    speed = _speed()
    paths = speed.make_videos(tmp_path / "videos", 2, 0.4)
    assert [p.name for p in paths] == ["clip00-0.4s.mp4", "clip01-0.4s.mp4"]
    assert all(abs(video_seconds(p) - 0.4) < 0.05 for p in paths)
    assert paths[0].read_bytes() != paths[1].read_bytes()
    before = paths[0].stat().st_mtime_ns
    assert speed.make_videos(tmp_path / "videos", 1, 0.4) == paths[:1] and paths[0].stat().st_mtime_ns == before
