"""Inference over several processes (issue 19): `accelerate launch -m vab generate`, `vab embed`
and `eval/generation.py` on 2 CPU processes (gloo) give what one process gives, and a
killed multi-process run re-run with the same command finishes with the same results.

`accelerate launch --cpu` starts one process in accelerate 1.x, so the multi-process
launcher is used; `vab.sharding.Shard` makes Accelerate use gloo when there is no GPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import free_port
from tests.mediagen import make_video
from tests.test_generate import FAST_ARGS, SMALL, make_model_dir
from vab.sharding import Shard

REPO = Path(__file__).resolve().parents[1]


def launcher(processes: int) -> list[str]:
    """The command prefix that runs `-m vab` / a script on `processes` CPU processes."""
    if processes == 1:
        return [sys.executable]
    return [sys.executable, "-m", "accelerate.commands.launch", "--main_process_port", str(free_port()),
            "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no"]


def run(processes: int, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    # wide enough that each summary row is one line
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "1000"}
    return subprocess.run([*launcher(processes), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def start(processes: int, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([*launcher(processes), *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (the launcher starts its workers in sessions of their own,
    so a process-group kill would miss them)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def kill_when(proc: subprocess.Popen, ready, poll: float = 0.05) -> None:
    """SIGKILL the run, workers first, then the launcher, as soon as `ready()` holds."""
    try:
        while proc.poll() is None and not ready():
            time.sleep(poll)
        for pid in [*descendants(proc.pid), proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        proc.wait()


def visible(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


# ---------------------------------------------------------------------- the split itself
@pytest.mark.parametrize("n", [0, 1, 5, 7, 16])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
@pytest.mark.parametrize("unit", [1, 3])
def test_shards_are_disjoint_contiguous_and_cover_the_inputs(n, world, unit):
    items = list(range(n))
    blocks = [Shard(rank, world).take(items, unit) for rank in range(world)]
    assert sum(blocks, []) == items  # in rank order: the input order again
    assert max(map(len, blocks)) - min(map(len, blocks)) <= unit
    for rank in range(world):  # blocks start on a batch boundary
        assert Shard(rank, world).bounds(n, unit)[0] % unit == 0
    assert Shard(world - 1, world).describe(n, "clips", unit).startswith(f"process {world - 1} of {world}: ")


def test_a_process_without_inputs_says_so():
    assert Shard(0, 3).describe(2, "videos") == "process 0 of 3: no videos of 2"
    assert Shard(1, 3).describe(2, "videos") == "process 1 of 3: videos 1-1 of 2"
    assert Shard(2, 3).describe(2, "videos") == "process 2 of 3: videos 2-2 of 2"


def test_one_process_is_the_whole_list_without_a_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    shard = Shard.current()
    assert (shard.rank, shard.world_size, shard.state) == (0, 1, None)
    assert shard.take("abc") == ["a", "b", "c"] and shard.device("auto") == "auto"
    shard.barrier()  # nothing to wait for


# ---------------------------------------------------------------------- generation
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    for i in range(5):
        make_video(folder / f"v{i}.mp4", seconds=3.0 + 0.5 * i, freq=220.0 + 55 * i, **SMALL)
    make_video(folder / "sub" / "v0.mp4", seconds=2.5, freq=600.0, **SMALL)  # a stem shared across folders
    return folder


def generate_args(clips: Path, model_dir: Path, out: Path) -> list[str]:
    return ["-m", "vab", "generate", str(clips), "--checkpoint", str(model_dir), "--out", str(out),
            "--device", "cpu", "--no-mux", *FAST_ARGS]


@pytest.mark.slow
def test_two_processes_write_the_wavs_one_process_writes(tmp_path, clips, model_dir):
    one = run(1, *generate_args(clips, model_dir, tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    two = run(2, *generate_args(clips, model_dir, tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    assert "process 0 of 2: videos 1-3 of 6" in two.stderr and "process 1 of 2: videos 4-6 of 6" in two.stderr
    assert sum(".wav" in line for line in two.stderr.splitlines()) == 6  # each video generated once
    a, b = visible(tmp_path / "one"), visible(tmp_path / "two")
    assert len(a) == 6 and "sub__v0.wav" in a
    assert a == b  # same names, same bytes


@pytest.mark.slow
def test_killed_two_process_generation_resumes_to_the_same_wavs(tmp_path, clips, model_dir):
    reference = run(1, *generate_args(clips, model_dir, tmp_path / "one"))
    assert reference.returncode == 0, reference.stderr[-3000:]
    out = tmp_path / "two"
    proc = start(2, *generate_args(clips, model_dir, out))
    kill_when(proc, lambda: out.is_dir() and any(p.suffix == ".wav" for p in out.iterdir()))
    done = {p.name for p in out.iterdir() if p.suffix == ".wav"}
    assert 0 < len(done) < 6, done  # killed mid-run
    again = run(2, *generate_args(clips, model_dir, out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert visible(out) == visible(tmp_path / "one")
    # no temporary files left (the hidden .<name>.vab.json source records are outputs)
    assert not [p for p in out.iterdir() if p.name.startswith(".") and not p.name.endswith(".vab.json")]


# ---------------------------------------------------------------------- embedding index
@pytest.fixture(scope="module")
def dataset_and_model(tmp_path_factory) -> tuple[Path, Path]:
    """A small extracted data set (12 test clips) and an untrained model that reads it."""
    from tests.synthdata import make_synthetic_dataset, tiny_overrides
    from vab.config import load_config
    from vab.data.dataset import load_infos
    from vab.checkpoint import save_model_dir
    from vab.training.run import build_model, load_codec_for

    root = tmp_path_factory.mktemp("embed")
    data = make_synthetic_dataset(root / "data", per_class={"train": 1, "test": 3}, classes=4, duration=2.0, frames=4)
    cfg = load_config("tiny", [*tiny_overrides(data), "data.duration=2.0", "model.width=32", "model.layers=2",
                               "model.expert_layers=1", "model.heads=2", "model.ffn=64"])
    codec = load_codec_for(cfg, data)
    model = build_model(cfg, codec, load_infos([str(data)]).visual_dim)
    return data, save_model_dir(model, codec, root / "model")


def index_files(folder: Path) -> dict[str, bytes]:
    assert not (folder / ".parts").exists()  # the blocks are removed once joined
    return visible(folder)


@pytest.mark.slow
def test_two_processes_embed_the_index_one_process_embeds(tmp_path, dataset_and_model, clips, model_dir):
    data, model = dataset_and_model
    for name, args in {"data": [str(data), "--checkpoint", str(model), "--split", "test", "--batch-size", "3"],
                       "media": [str(clips), "--checkpoint", str(model_dir)]}.items():
        one = run(1, "-m", "vab", "embed", *args, "--out", str(tmp_path / name / "one"))
        assert one.returncode == 0, one.stderr[-3000:]
        two = run(2, "-m", "vab", "embed", *args, "--out", str(tmp_path / name / "two"))
        assert two.returncode == 0, two.stderr[-3000:]
        assert "process 1 of 2: clips" in two.stderr
        a, b = index_files(tmp_path / name / "one"), index_files(tmp_path / name / "two")
        assert set(a) == {"embeddings.safetensors", "index.json"} and a == b


@pytest.mark.slow
def test_two_process_embed_reports_every_bad_file_once(tmp_path, clips, model_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    for video in sorted(clips.glob("*.mp4"))[:3]:
        (folder / video.name).write_bytes(video.read_bytes())
    (folder / "z_broken.mp4").write_bytes(b"garbage")  # the last block's
    out = tmp_path / "index"
    res = run(2, "-m", "vab", "embed", str(folder), "--checkpoint", str(model_dir), "--out", str(out))
    assert res.returncode == 1  # the main process reports the failure of the other's block
    assert res.stderr.count("z_broken.mp4: ") == 1 and "1 input(s) failed" in res.stderr
    from vab.search import Index

    assert Index.load(out).ids == ["v0", "v1", "v2"]


# ---------------------------------------------------------------------- generation evaluation
def eval_args(data: Path, model: Path, out: Path, *extra: str) -> list[str]:
    from tests.synthdata import tiny_overrides

    return [str(REPO / "eval/generation.py"), "--checkpoint", str(model), *tiny_overrides(data), "data.duration=2.0",
            "codec.griffin_lim_iters=2", "--split", "test", "--steps", "2", "--out", str(out), *extra]


def scores(out: Path) -> dict:
    """What must not depend on the number of processes (timings may)."""
    report = json.loads((out / "generation.json").read_text())
    keep = ("name", "clips", "failed", "fad", "kl", "audio_seconds", "embeddings")
    return {"clips": report["clips"], "real": report["real_audio_counts"], "failures": report["failures"],
            "models": [{k: m[k] for k in keep} for m in report["models"]]}


@pytest.mark.slow
def test_two_process_evaluation_reports_what_one_process_reports(tmp_path, dataset_and_model):
    data, model = dataset_and_model
    # --device auto: this machine's CPU in one process, each process's own device under the launcher
    one = run(1, *eval_args(data, model, tmp_path / "one", "--save-audio", "--device", "auto"))
    assert one.returncode == 0, one.stderr[-3000:]
    two = run(2, *eval_args(data, model, tmp_path / "two", "--save-audio", "--device", "auto"))
    assert two.returncode == 0, two.stderr[-3000:]
    assert "process 1 of 2: clips 7-12 of 12" in two.stderr
    a, b = scores(tmp_path / "one"), scores(tmp_path / "two")
    assert a["clips"] == 12 and a["models"][0]["clips"] == 12 and a["models"][0]["fad"] > 0
    assert a == b  # FAD and KL exactly equal: every clip's embeddings, merged in clip order
    assert visible(tmp_path / "one" / "audio" / "model") == visible(tmp_path / "two" / "audio" / "model")


def records(out: Path, side: str) -> list[Path]:
    """Finished records (not the hidden temporaries a kill mid-write leaves, which pathlib's glob matches)."""
    return sorted(p for p in out.glob(f"records/{side}-*/*.npz") if not p.name.startswith("."))


@pytest.mark.slow
def test_killed_two_process_evaluation_resumes_to_the_same_scores(tmp_path, dataset_and_model):
    data, model = dataset_and_model
    reference = run(1, *eval_args(data, model, tmp_path / "one"))
    assert reference.returncode == 0, reference.stderr[-3000:]
    out = tmp_path / "two"
    proc = start(2, *eval_args(data, model, out))
    kill_when(proc, lambda: len(records(out, "model")) >= 2, poll=0.01)
    made = records(out, "model")
    assert 2 <= len(made) < 12 and len(records(out, "real")) == 12  # killed while generating
    stamps = {p: p.stat().st_mtime_ns for p in made}
    (made[0].parent / f".{made[0].stem}.k1ll3d00.tmp.npz").write_bytes(b"half")  # as a kill mid-write leaves
    again = run(2, *eval_args(data, model, out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert scores(out) == scores(tmp_path / "one")
    assert all(p.stat().st_mtime_ns == stamps[p] for p in made)  # recorded clips were not redone
    assert len(records(out, "model")) == 12 and not list(out.glob("records/*/.*"))  # no temporaries left
    # other settings never reuse these records
    other = run(1, *eval_args(data, model, out, "--seed", "1"))
    assert other.returncode == 0, other.stderr[-3000:]
    assert len(list(out.glob("records/model-*"))) == 2 and scores(out) != scores(tmp_path / "one")


def test_an_evaluation_process_scores_only_its_block(tmp_path, dataset_and_model):
    from vab.evaluation import soundtracks as ge
    from vab.evaluation.scorers import build_classifier, build_scorer
    from vab.generation.sampling import SamplingConfig

    data, model = dataset_and_model
    clips = ge.dataset_clips([data], "test")
    report = ge.evaluate([str(model)], clips, SamplingConfig(steps=2), build_scorer("logmel", "cpu"),
                         build_classifier("logmel", "cpu"), embedder_name="logmel", classifier_name="logmel",
                         real_codec={"griffin_lim_iters": 2}, records=tmp_path, shard=Shard(1, 2))
    assert report is None  # only the main process reports
    mine = {c.id for c in clips.clips[6:]}
    for side in ("real", "model"):
        ids = {json.loads(str(np.load(p)["header"]))["clip"]["id"] for p in records(tmp_path, side)}
        assert ids == mine, side


def test_a_record_serves_only_its_own_clip_and_settings(tmp_path):
    from vab.evaluation.records import RecordStore

    clip = {"id": "a/b c", "video": "v.mp4", "start": 0.0, "duration": 10.0, "row": 3}
    store = RecordStore(tmp_path, "model", {"seed": 0})
    store.write(clip, np.ones((2, 4)), np.array([0.25, 0.75]), wall=1.5)
    record = store.read(clip)
    assert record["embeddings"].shape == (2, 4) and record["distribution"].tolist() == [0.25, 0.75]
    assert record["wall"] == 1.5
    assert store.read({**clip, "start": 2.0}) is None  # another span of that id (issue 14: clip starts)
    assert RecordStore(tmp_path, "model", {"seed": 1}).read(clip) is None  # other settings
    store.path(clip["id"]).write_bytes(b"damaged")
    assert store.read(clip) is None  # made again, not trusted
    assert store.path("a/b c") != store.path("a_b c")  # ids that differ only in unsafe characters
