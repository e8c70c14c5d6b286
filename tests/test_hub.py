"""Models people can share: Hugging Face Hub ids in every entry point (offline, from a
hand-built cache), `vab push` up to the point where it would contact the Hub, model cards.

The cache is laid out as huggingface_hub leaves it (``models--org--name/refs/<revision>``
holding a commit hash, ``snapshots/<hash>/<files>``).  huggingface_hub computes
``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` once, when it is imported
(``huggingface_hub.constants``), so the tests set the variables *and* patch those computed
values; one test starts a fresh interpreter to show that the variables alone are honoured.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import vab
from tests.mediagen import make_video
from tests.synthdata import make_synthetic_dataset, tiny_overrides
from vab.checkpoint import save_model as save_model_files
from vab.cli import main
from vab.errors import VabError
from vab.checkpoint.directory import MODEL_FILES
from vab.filenames import CARD_FILE
from vab.visual import visual_dim

REPO = Path(__file__).resolve().parents[1]
MAIN, V1, OTHER = "a" * 40, "b" * 40, "c" * 40  # commit hashes of the hand-built snapshots
SMALL = ["model.width=32", "model.layers=2", "model.expert_layers=1", "model.heads=2", "model.ffn=64"]
RUN = ["train.tracker=none", "train.batch_size=4", "train.checkpoint_every=0", "train.warmup_steps=0",
       "train.max_steps=1", "train.valid_every=1"]


# ---------------------------------------------------------------------- models and the cache
def save_model(out: Path, data: Path, *extra: str, seed: int = 0, levels: int | None = None) -> Path:
    """An untrained model of the tiny preset that matches `data` (its fitted codec beside it)."""
    from vab.config import load_config
    from vab.checkpoint import save_model_dir
    from vab.training.run import build_model, load_codec_for

    cfg = load_config("tiny", tiny_overrides(data) + SMALL + [f"train.seed={seed}", *extra])
    codec = load_codec_for(cfg, data)
    return save_model_dir(build_model(cfg, codec, visual_dim(cfg.visual)), codec, out)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> SimpleNamespace:
    """A synthetic data set, models that fit it (two weights of one VAB, a coarse / fine pair)
    and a short video."""
    root = tmp_path_factory.mktemp("hub-models")
    data = make_synthetic_dataset(root / "data", classes=2, per_class={"train": 4, "valid": 2, "test": 2})
    return SimpleNamespace(
        data=data,
        model=save_model(root / "model", data),
        other=save_model(root / "other", data, seed=1),
        coarse=save_model(root / "coarse", data, "model.levels=2"),
        fine=save_model(root / "fine", data, "model.type=coarse2fine", "model.expert_layers=0", "model.levels=4",
                        "model.given_levels=2"),
        video=make_video(root / "clip.mp4", seconds=1.5, fps=2.0, width=32, height=24),
    )


def publish(cache: Path, repo_id: str, source: Path, commit: str, refs: tuple[str, ...] = ("main",),
            only: set[str] | None = None) -> Path:
    """Put `source`'s files (or those in `only`) into the cache as snapshot `commit` of
    `repo_id`, with each ref in `refs` naming that commit."""
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in source.iterdir():
        if only is None or f.name in only:
            shutil.copy2(f, snapshot / f.name)
    for ref in refs:
        (storage / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (storage / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def hub(tmp_path, monkeypatch, made) -> SimpleNamespace:
    """An offline Hugging Face cache holding org/vab (main, and tag v1 = other weights),
    org/coarse, org/fine and org/no-weights (a repository without model.safetensors)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # what the import computed from the variables
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return SimpleNamespace(
        cache=cache,
        vab=publish(cache, "org/vab", made.model, MAIN),
        v1=publish(cache, "org/vab", made.other, V1, refs=("v1",)),
        coarse=publish(cache, "org/coarse", made.coarse, MAIN),
        fine=publish(cache, "org/fine", made.fine, MAIN),
        broken=publish(cache, "org/no-weights", made.model, MAIN, only={"config.yaml", CARD_FILE}),
    )


def same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def http_error(cls: type, message: str, status: int) -> Exception:
    """A huggingface_hub HTTP error as the Hub's answer would raise it (no request was made)."""
    return cls(message, response=SimpleNamespace(status_code=status, headers={}, request=None))


def script(name: str):
    """A script of recipes/, finetune/ or eval/ loaded so its main(argv) runs in-process."""
    spec = importlib.util.spec_from_file_location(name.replace("/", "_"), REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------- resolving ids
def test_an_id_and_its_revisions_resolve_from_the_cache(hub, made):
    from vab.checkpoint.hub import parse_hub_id, resolve_model_dir

    assert resolve_model_dir("org/vab") == hub.vab
    assert resolve_model_dir("org/vab@v1") == hub.v1
    assert resolve_model_dir(f"org/vab@{V1}") == hub.v1  # a commit hash reads its snapshot directly
    assert same_weights(vab.load_pretrained("org/vab"), vab.load_pretrained(made.model))
    assert same_weights(vab.load_pretrained("org/vab@v1"), vab.load_pretrained(made.other))
    assert vab.load_pretrained("org/vab", local_files_only=True).num_parameters() > 0
    assert parse_hub_id("org/vab@refs/pr/1").revision == "refs/pr/1"
    for not_an_id in ("runs/tiny/model", "/abs/model", "./org/vab", "model", "org/vab@", "org/--x", "org/a..b"):
        assert parse_hub_id(not_an_id) is None, not_an_id


def test_a_local_path_always_wins_over_an_id_of_the_same_spelling(hub, made, tmp_path, monkeypatch):
    from vab.checkpoint.hub import resolve_model_dir

    monkeypatch.chdir(tmp_path)
    shutil.copytree(made.other, tmp_path / "org" / "vab")
    assert resolve_model_dir("org/vab") == Path("org/vab")
    assert same_weights(vab.load_pretrained("org/vab"), vab.load_pretrained(made.other))
    # a path that is no id never reaches the Hub: the loader names what is missing
    with pytest.raises(VabError, match="not a model directory"):
        vab.load_pretrained("runs/nothing/here")


def test_missing_id_revision_and_weights_are_one_line_naming_the_id(hub):
    cases = {
        "org/absent": "org/absent: no such local directory, and the model is not in the Hugging Face cache",
        "org/vab@v9": "org/vab@v9: revision 'v9' is not in the Hugging Face cache",
        f"org/vab@{OTHER}": f"org/vab@{OTHER}: revision '{OTHER}' is not in the Hugging Face cache",
        "org/no-weights": "org/no-weights: the repository has no model.safetensors",
    }
    for spec, expected in cases.items():
        with pytest.raises(VabError) as err:
            vab.load_pretrained(spec)
        text = str(err.value)
        assert text.startswith(expected) and "\n" not in text, text
    with pytest.raises(VabError, match=r"cached: main, v1; offline: HF_HUB_OFFLINE=1"):
        vab.load_pretrained("org/vab@v9")
    with pytest.raises(VabError, match=r"it holds: README.md, config.yaml"):
        vab.load_pretrained("org/no-weights")


def test_online_only_model_files_are_fetched_and_hub_errors_are_one_line(hub, made, monkeypatch):
    """With the network on, snapshot_download is asked for the model files only (recorded,
    not sent: there is no network here), and the Hub's refusals become one-line errors."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        if repo_id == "org/gone":
            raise http_error(RepositoryNotFoundError, "404 Repository Not Found", 404)
        if kwargs.get("revision") == "nope":
            raise http_error(RevisionNotFoundError, "404 Revision Not Found", 404)
        return str(hub.vab)

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert same_weights(vab.load_pretrained("org/vab@main"), vab.load_pretrained(made.model))
    repo_id, kwargs = calls[0]
    assert repo_id == "org/vab" and kwargs["revision"] == "main" and not kwargs["local_files_only"]
    assert sorted(kwargs["allow_patterns"]) == sorted(MODEL_FILES)
    assert not any(p.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt")) for p in kwargs["allow_patterns"])
    vab.load_pretrained("org/vab", local_files_only=True)
    assert calls[-1][1]["local_files_only"] is True
    with pytest.raises(VabError, match=r"^org/gone: no such local directory, and no model org/gone on the Hugging Face Hub"):
        vab.load_pretrained("org/gone")
    with pytest.raises(VabError, match=r"^org/vab@nope: the Hugging Face Hub repository org/vab has no revision 'nope'$"):
        vab.load_pretrained("org/vab@nope")


def test_the_variables_alone_are_honoured_by_a_fresh_process(hub, made, tmp_path):
    """HF_HOME (cache in HF_HOME/hub) and HF_HUB_OFFLINE set before Python starts, as a user does."""
    home = tmp_path / "hf-home"
    shutil.copytree(hub.cache, home / "hub")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    env.update(HF_HOME=str(home), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    code = ("import vab; m = vab.load_pretrained('org/vab@v1'); "
            "print(type(m).__name__, float(sum(p.detach().double().sum() for p in m.parameters())))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    other = vab.load_pretrained(made.other)
    name, total = done.stdout.split()
    assert name == "VAB" and float(total) == pytest.approx(float(sum(p.detach().double().sum() for p in other.parameters())))


# ---------------------------------------------------------------------- every entry point
def test_generate_takes_ids_for_both_checkpoints(hub, made, tmp_path, capsys):
    from vab.generation.generator import Generator

    out = tmp_path / "out"
    assert main(["generate", str(made.video), "--checkpoint", "org/vab@v1", "--out", str(out), "--steps", "2",
                 "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".vab.json")) == ["clip.mp4", "clip.wav"]
    generator = Generator.from_pretrained("org/coarse", "org/fine", device="cpu", precision="fp32")  # checked against each other
    assert generator.c2f is not None and generator.levels == 4
    assert same_weights(generator.c2f, vab.load_pretrained(made.fine))
    capsys.readouterr()
    assert main(["generate", str(made.video), "--checkpoint", "org/coarse", "--c2f-checkpoint", "org/nope",
                 "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "org/nope" in err and "not in the Hugging Face cache" in err


def test_embed_and_curate_take_an_id_and_the_index_records_it(hub, made, tmp_path):
    index = tmp_path / "index"
    assert main(["embed", str(made.data), "--checkpoint", "org/vab", "--out", str(index), "--split", "test"]) == 0
    assert json.loads((index / "index.json").read_text())["model_dir"] == "org/vab"
    kept = tmp_path / "kept.jsonl"
    assert main(["curate", str(made.data), "--checkpoint", "org/vab@v1", "--threshold", "-1", "--out", str(kept)]) == 0
    assert len(kept.read_text().splitlines()) == 16  # every clip of every split


def test_fine_tuning_and_evaluation_scripts_take_ids(hub, made, tmp_path, capsys):
    from huggingface_hub import ModelCard

    overrides = [f"data.path=[{made.data}]", *RUN]
    retrieval = tmp_path / "retrieval"
    assert script("finetune/retrieval").main(["--init", "org/vab", *overrides, f"train.output_dir={tmp_path / 'r'}",
                                              "--model-out", str(retrieval)]) == 0
    card = ModelCard.load(retrieval / CARD_FILE)
    # the card of a run: what it started from (an id: also the Hub's base_model), its data, steps and validation
    assert card.data.base_model == "org/vab" and card.data.pipeline_tag == "feature-extraction"
    assert f"`{made.data}`: 8 training clips" in card.text and "| steps | 1 |" in card.text
    assert "v2a/R@1" in card.text and "`org/vab`" in card.text
    publish(hub.cache, "org/retrieval", retrieval, MAIN)

    classifier = tmp_path / "classifier"
    assert script("finetune/classification").main([
        "--init", "org/retrieval", "--mode", "audio", *overrides, f"train.output_dir={tmp_path / 'c'}",
        "--model-out", str(classifier)]) == 0
    assert ModelCard.load(classifier / CARD_FILE).data.pipeline_tag == "audio-classification"
    publish(hub.cache, "org/classifier", classifier, MAIN)

    capsys.readouterr()
    data = f"data.path=[{made.data}]"
    assert script("eval/retrieval").main(["--checkpoint", "org/retrieval", data, "--device", "cpu"]) == 0
    assert script("eval/classification").main(["--checkpoint", "org/classifier", data]) == 0
    assert script("eval/generation").main(["--checkpoint", "org/vab", data, "--steps", "2", "--limit", "2",
                                           "--out", str(tmp_path / "gen")]) == 0
    report = json.loads((tmp_path / "gen" / "generation.json").read_text())
    assert report["models"][0]["checkpoint"] == "org/vab" and report["models"][0]["model_type"] == "vab"
    capsys.readouterr()
    assert script("finetune/classification").main(["--init", "org/absent", *overrides]) == 2
    assert script("eval/generation").main(["--checkpoint", "org/no-weights", data]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "org/absent: no such local directory" in err[0] and "org/no-weights: the repository has no" in err[1]


# ---------------------------------------------------------------------- vab push
class RecordingApi:
    """Stands in for huggingface_hub.HfApi: records each call and what the staged folder held."""

    calls: list = []

    def __init__(self, **kwargs):
        self.calls.append(("HfApi", kwargs))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        files = {p.name: p.read_bytes() for p in folder.iterdir()}
        self.calls.append(("upload_folder", kwargs, files))
        return SimpleNamespace(commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/{MAIN}")


@pytest.fixture
def pushable(made, tmp_path) -> Path:
    """A copy of the model directory with a file that is not part of a model."""
    folder = shutil.copytree(made.model, tmp_path / "to-push")
    (folder / "notes.txt").write_text("private notes")
    return folder


def test_push_plan_lists_the_model_files_and_contacts_nothing(pushable, monkeypatch, capsys):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("a dry run must not contact the Hub")

    monkeypatch.setattr(huggingface_hub, "HfApi", no_network)
    assert main(["push", str(pushable), "org/new-model", "--dry-run"]) == 0
    err = capsys.readouterr().err
    for name in ("config.yaml", "model.safetensors", "codec.safetensors", "README.md"):
        assert f"upload  {name}" in err
    assert "skip    notes.txt" in err and "nothing was sent" in err


def test_push_uploads_exactly_the_checked_files(pushable, monkeypatch, capsys):
    import huggingface_hub

    RecordingApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    before = {p.name: p.read_bytes() for p in pushable.iterdir()}
    assert main(["push", str(pushable), "org/new-model", "--private", "--revision", "v1"]) == 0
    names = [c[0] for c in RecordingApi.calls]
    assert names == ["HfApi", "create_repo", "create_branch", "upload_folder"]
    assert RecordingApi.calls[1][1:] == ("org/new-model", {"repo_type": "model", "private": True, "exist_ok": True})
    assert RecordingApi.calls[2][2]["branch"] == "v1"
    _, kwargs, files = RecordingApi.calls[3]
    assert kwargs["repo_id"] == "org/new-model" and kwargs["revision"] == "v1"
    assert sorted(files) == sorted(kwargs["allow_patterns"]) == ["README.md", "codec.safetensors", "config.yaml",
                                                                 "model.safetensors"]
    assert all(files[name] == before[name] for name in files)  # the bytes that were checked
    assert {p.name: p.read_bytes() for p in pushable.iterdir()} == before  # the directory is untouched
    assert not list(pushable.parent.glob(".vab-push-*"))  # the staging folder is gone
    assert "org/new-model/commit" in capsys.readouterr().err


def test_push_without_a_card_sends_one_made_from_the_model(pushable):
    from vab.commands.push import prepare
    from vab.checkpoint.hub import upload

    (pushable / CARD_FILE).unlink()
    plan = prepare(pushable, "org/new-model")
    assert plan.card is not None and "library_name: vab" in plan.card
    RecordingApi.calls = []
    upload(plan, api=RecordingApi())
    _, kwargs, files = RecordingApi.calls[-1]
    assert files[CARD_FILE].decode() == plan.card and CARD_FILE in kwargs["allow_patterns"]
    assert not (pushable / CARD_FILE).exists()  # made for the upload, not written into the directory


def test_push_refuses_what_does_not_load_before_contacting_the_hub(pushable, tmp_path, monkeypatch, capsys):
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError

    RecordingApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    weights = pushable / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:-10] + b"0123456789")
    assert main(["push", str(pushable), "org/new-model"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "model.safetensors" in err and "checksum" in err
    weights.write_bytes(good)
    (pushable / "codec.safetensors").write_bytes(b"not a codec")
    assert main(["push", str(pushable), "org/new-model"]) == 2
    assert "codec.safetensors" in capsys.readouterr().err
    assert main(["push", str(tmp_path / "missing"), "org/new-model"]) == 2
    assert main(["push", str(pushable), "not an id"]) == 2
    assert main(["push", str(pushable), "org/new-model@v1"]) == 2
    assert "--revision" in capsys.readouterr().err
    assert RecordingApi.calls == []

    class Refusing(RecordingApi):
        def create_repo(self, repo_id, **kwargs):
            raise http_error(HfHubHTTPError, "401 Unauthorized", 401)

    (pushable / "codec.safetensors").unlink()
    monkeypatch.setattr(huggingface_hub, "HfApi", Refusing)
    assert main(["push", str(pushable), "org/new-model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "org/new-model: the Hugging Face Hub refused the upload (401 Unauthorized" in err and "hf auth login" in err


# ---------------------------------------------------------------------- model cards
def test_save_pretrained_writes_a_hub_card_and_loading_never_needs_it(made, tmp_path):
    from huggingface_hub import ModelCard

    model = vab.load_pretrained(made.model)
    card = ModelCard.load(made.model / CARD_FILE)
    assert card.data.library_name == "vab" and card.data.license == "other"
    assert card.data.pipeline_tag == "any-to-any" and {"vab", "video-to-audio", "codec-spectral"} <= set(card.data.tags)
    total = model.num_parameters()
    for text in (f"{total:,}", "| preset |", "spectral", "hog-colour (gradient-orientation histograms on a 8 x 8 pyramid plus a colour grid, 813-d", "4 s: 8 frames at 2 fps",
                 "vab generate clip.mp4 --checkpoint MODEL"):
        assert text in card.text, text
    assert "| preset | `tiny` |" in save_model_files(vab.VAB.from_config(
        vab.load_config("tiny"), [torch.randn(256, 8)] * 4, 192, 50.0), tmp_path / "t").joinpath(
        CARD_FILE).read_text()
    bare = shutil.copytree(made.model, tmp_path / "bare")
    (bare / CARD_FILE).unlink()
    assert same_weights(vab.load_pretrained(bare), model)


def test_card_sections_are_replaced_not_repeated_and_writes_are_atomic(made, tmp_path, monkeypatch):
    from vab.checkpoint.card import set_card_section, write_card

    folder = shutil.copytree(made.model, tmp_path / "m")
    set_card_section(folder, "Results", "| a | 1 |")
    set_card_section(folder, "Results", "| a | 2 |")
    text = (folder / CARD_FILE).read_text()
    assert text.count("## Results") == 1 and "| a | 2 |" in text and "| a | 1 |" not in text
    assert text.index("## License") < text.index("## Results")

    def half_then_fail(self, data, *args, **kwargs):
        with open(self, "w") as fh:
            fh.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(VabError, match=r"README.md: cannot write \(No space left on device\)"):  # one line
        write_card(folder, "a new card " * 100)
    monkeypatch.undo()
    assert (folder / CARD_FILE).read_text() == text  # the old card, whole
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in made.model.iterdir())
    (folder / CARD_FILE).unlink()
    with pytest.raises(VabError, match="README.md: missing"):
        set_card_section(folder, "Results", "x")


def test_demo_models_carry_the_demo_report_table(made, tmp_path):
    from vab.demo.pipeline import QUICK, DemoResult, StageRecord
    from vab.demo.report import write_model_cards

    for name in ("model", "retrieval"):
        shutil.copytree(made.model, tmp_path / name)
    metrics = {"R@1": 0.5, "R@5": 1.0, "MedR": 1.0}
    stage = StageRecord("retrieval", 1.0, {"video->audio": metrics, "audio->video": metrics, "clips": 32})
    result = DemoResult(tmp_path, QUICK, {"retrieval": stage}, 1.0)
    assert len(write_model_cards(result)) == 2
    write_model_cards(result)  # a re-run of the demo replaces the section
    text = (tmp_path / "model" / CARD_FILE).read_text()
    assert text.count("## vab demo results") == 1
    assert "| retrieval video->audio R@1 | 0.500 | 0.031 | 0.500 |" in text and "Made by `vab demo` (quick)" in text


# ---------------------------------------------------------------------- names, never paths (issue 25)
def test_a_revision_is_a_name_never_a_path(hub, made, tmp_path, capsys):
    """Was: `org/vab@../../../x` was looked up as a path under the cache's refs/ and, through a
    file there naming a folder, loaded a model from outside the cache (exit 0, and the source
    record still named the Hub id)."""
    from vab.checkpoint import hub as hubs

    outside = Path(shutil.copytree(made.other, tmp_path / "outside" / "model"))
    storage = hub.cache / "models--org--vab"
    planted = tmp_path / "planted-ref"  # a file whose text is a path from snapshots/ to the outside folder
    planted.write_text(os.path.relpath(outside, storage / "snapshots"))
    sneaky = f"org/vab@{os.path.relpath(planted, storage / 'refs')}"
    assert ".." in sneaky
    with pytest.raises(VabError, match="is not a branch, tag or commit name"):
        vab.load_pretrained(sneaky)
    rc = main(["generate", str(made.video), "--checkpoint", sneaky, "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "never '..' or a path" in err, err
    assert not (tmp_path / "out").exists()
    for bad in ("..", "../x", "a/../b", "/abs", "-x", "x.lock", "a//b", "a\\b", "a b", "x:y", "~x", "main/", ".hidden"):
        with pytest.raises(VabError, match="is not a branch, tag or commit name"):
            hubs.parse_hub_id(f"org/vab@{bad}")
    for good in ("main", "v1.0", "refs/pr/1", "release_2", MAIN, "feature/new-codec"):
        assert hubs.parse_hub_id(f"org/vab@{good}").revision == good
    with pytest.raises(VabError, match="--revision: revision '../main'"):
        hubs.plan_upload(made.model, "org/new", revision="../main")


def test_a_snapshot_outside_the_cache_is_not_used(hub, made, tmp_path, monkeypatch):
    """The second guard: whatever huggingface_hub answers, a folder outside the repository's
    snapshots in the cache is refused."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(made.model))
    with pytest.raises(VabError, match="outside .*snapshots; not used"):
        vab.load_pretrained("org/vab")


def test_push_sends_only_regular_files_inside_the_folder(pushable, tmp_path, monkeypatch, capsys):
    """Was: a README.md linking to a private file was staged through the link and published."""
    import huggingface_hub

    private = tmp_path / "private.md"
    private.write_text("my private notes")
    (pushable / CARD_FILE).unlink()
    (pushable / CARD_FILE).symlink_to(private)
    RecordingApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    assert main(["push", str(pushable), "org/new-model"]) == 0
    err = capsys.readouterr().err
    assert f"skip    {CARD_FILE}  (a symbolic link: only regular files inside the folder are sent)" in err
    _, kwargs, files = RecordingApi.calls[-1]
    assert b"my private notes" not in b"".join(files.values())
    assert "library_name: vab" in files[CARD_FILE].decode()  # the card made from the model instead
    # a required file that is a link: refused before any contact
    (pushable / "config.yaml").rename(tmp_path / "config.yaml")
    (pushable / "config.yaml").symlink_to(tmp_path / "config.yaml")
    RecordingApi.calls = []
    assert main(["push", str(pushable), "org/new-model"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "config.yaml is a symbolic link; only regular files inside the folder" in err
    assert RecordingApi.calls == []
