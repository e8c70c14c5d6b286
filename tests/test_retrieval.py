"""Contrastive fine-tuning (loss, temperature, written model) and retrieval evaluation end to end."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.synthdata import make_synthetic_dataset, tiny_overrides
from vab.checkpoint import load_model
from vab.finetuning.contrastive import (
    TEMPERATURE_MAX,
    TEMPERATURE_MIN,
    ContrastiveObjective,
    ContrastiveVAB,
    evaluate_retrieval,
    info_nce,
    load_temperature,
)

REPO = Path(__file__).resolve().parents[1]
CLASSES = 20  # one test clip per class: chance R@1 = 1/20, so 10x chance = 0.5
SMALL = ["model.width=48", "model.layers=2", "model.expert_layers=1", "model.heads=2", "model.ffn=96",
         "data.duration=1.0"]
TRAIN = ["train.tracker=none", "train.warmup_steps=3", "train.checkpoint_every=0", "train.batch_size=16"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_synthetic_dataset(
        tmp_path_factory.mktemp("data") / "synth", classes=CLASSES, per_class={"train": 8, "valid": 1, "test": 1}
    )


@pytest.fixture(scope="module")
def pretrained(data, tmp_path_factory) -> Path:
    from vab.config import load_config
    from vab.training.run import pretrain

    run = tmp_path_factory.mktemp("pre")
    cfg = load_config("tiny", tiny_overrides(data) + SMALL + TRAIN + [
        "train.max_steps=10", "train.lr=2e-3", "train.valid_every=1000", f"train.output_dir={run}",
    ])
    return pretrain(cfg)


@pytest.fixture(scope="module")
def finetuned(data, pretrained, tmp_path_factory) -> Path:
    from vab.config import load_config
    from vab.finetuning.contrastive import finetune_retrieval

    run = tmp_path_factory.mktemp("ft")
    cfg = load_config(pretrained, [f"data.path=[{data}]", *TRAIN, "train.max_steps=20", "train.lr=1e-3",
                                   "train.valid_every=20", f"train.output_dir={run}"])
    return finetune_retrieval(cfg, pretrained)


# ------------------------------------------------------------------ loss and temperature
def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def test_info_nce_is_symmetric_and_matches_hand_value():
    g = torch.Generator().manual_seed(0)
    a, v = unit(torch.randn(6, 8, generator=g)), unit(torch.randn(6, 8, generator=g))
    assert info_nce(a, v, 0.07).item() == pytest.approx(info_nce(v, a, 0.07).item(), rel=1e-6)
    # two clips, orthogonal pairs: logits [[1, 0], [0, 1]] / t -> loss = log(1 + exp(-1/t))
    e = torch.eye(2)
    assert info_nce(e, e, 0.5).item() == pytest.approx(math.log(1 + math.exp(-2.0)), rel=1e-6)
    # a permutation of the batch does not change the loss
    p = torch.randperm(6, generator=g)
    assert info_nce(a[p], v[p], 0.07).item() == pytest.approx(info_nce(a, v, 0.07).item(), rel=1e-6)


def small_vab():
    from vab.config import load_config
    from vab.model import VAB

    cfg = load_config("tiny", ["codec.codebook_size=32", *SMALL])
    torch.manual_seed(0)
    return VAB.from_config(cfg, [torch.randn(32, 16) for _ in range(4)], 192, 50.0)


def synthetic_batch(n: int = 8, classes: int = 4) -> dict:
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(n) % classes
    tokens = (labels[:, None, None] * 7 + torch.randint(0, 3, (n, 4, 50), generator=g)) % 32
    features = torch.randn(classes, 192, generator=g)[labels][:, None, :] + 0.3 * torch.randn(n, 2, 192, generator=g)
    return {"tokens": tokens, "features": features, "labels": torch.nn.functional.one_hot(labels, classes).float()}


def test_objective_symmetric_under_swapping_embeddings():
    model = ContrastiveVAB(small_vab()).eval()
    batch = synthetic_batch()
    a, v, t = model(batch["tokens"], batch["features"])
    assert a.shape == v.shape == (8, 48)
    assert torch.allclose(a.norm(dim=-1), torch.ones(8)) and torch.allclose(v.norm(dim=-1), torch.ones(8))
    assert info_nce(a, v, t).item() == pytest.approx(info_nce(v, a, t).item(), rel=1e-6)
    loss, logs = ContrastiveObjective(load_cfg()).__call__(model, batch)
    assert loss.item() == pytest.approx(info_nce(a, v, t).item(), rel=1e-5)
    assert logs["temperature"] == pytest.approx(0.07)


def load_cfg():
    from vab.config import load_config

    return load_config("tiny")


def test_temperature_gets_gradient_learns_and_stays_clamped():
    model = ContrastiveVAB(small_vab())
    assert model.temperature.item() == pytest.approx(0.07)
    objective = ContrastiveObjective(load_cfg(), augment=False)
    batch = synthetic_batch()
    loss, _ = objective(model, batch)
    loss.backward()
    assert model.log_temperature.grad is not None and model.log_temperature.grad.abs().item() > 0

    # only the temperature moves here: a large lr drives it to a bound and it must stay inside
    model.vab.requires_grad_(False)
    opt = torch.optim.Adam([model.log_temperature], lr=0.5)
    seen = []
    for _ in range(15):
        opt.zero_grad()
        loss, logs = objective(model, batch)
        loss.backward()
        opt.step()
        seen.append(logs["temperature"])
    assert max(abs(s - 0.07) for s in seen) > 0.02  # it learned
    assert all(TEMPERATURE_MIN - 1e-7 <= s <= TEMPERATURE_MAX + 1e-7 for s in seen)
    model(batch["tokens"], batch["features"])  # a training forward clamps the stored parameter too
    assert math.log(TEMPERATURE_MIN) - 1e-6 <= model.log_temperature.item() <= math.log(TEMPERATURE_MAX) + 1e-6
    with pytest.raises(ValueError):
        ContrastiveVAB(small_vab(), temperature=5.0)


def test_trainable_selects_embeddings_first_layers_and_temperature():
    model = ContrastiveVAB(small_vab())
    chosen = {n for n, p in model.named_parameters() if model.trainable(n, p)}
    assert "log_temperature" in chosen and "vab.visual_proj.weight" in chosen
    assert any(n.startswith("vab.layers.0.") for n in chosen)
    assert not any(n.startswith(("vab.layers.1.", "vab.heads.", "vab.final_norm.")) for n in chosen)
    assert set(model.state_dict()) == {"log_temperature"} | {f"vab.{k}" for k in model.vab.state_dict()}


# ------------------------------------------------------------------ end to end
def test_finetuned_retrieval_beats_chance_tenfold(data, pretrained, finetuned):
    before = evaluate_retrieval(pretrained, [str(data)], "test", device="cpu")
    results = evaluate_retrieval(finetuned, [str(data)], "test", device="cpu")
    print("retrieval before fine-tuning:", json.dumps(before))
    r1 = [(before[d]["R@1"], results[d]["R@1"]) for d in ("video->audio", "audio->video")]
    assert sum(after for _, after in r1) > sum(b for b, _ in r1)  # fine-tuning, not pretraining, did it
    assert results["clips"] == CLASSES and results["chance"] == pytest.approx(1 / CLASSES)
    for direction in ("video->audio", "audio->video"):
        assert results[direction]["R@1"] >= 10 * results["chance"], results
    print("retrieval after fine-tuning:", json.dumps(results))


def test_written_model_loads_and_keeps_upper_layers(pretrained, finetuned):
    from vab.model import VAB

    before, after = load_model(pretrained, kind=VAB), load_model(finetuned, kind=VAB)
    b, a = before.state_dict(), after.state_dict()
    assert set(a) == set(b)
    for key in b:
        upper = key.startswith(("heads.", "final_norm.", "codebooks")) or (
            key.startswith("layers.") and int(key.split(".")[1]) >= before.expert_layers
        )
        if upper:
            assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["visual_proj.weight"], b["visual_proj.weight"])  # the lower part was trained
    assert any(not torch.equal(a[k], b[k]) for k in b if k.startswith("layers.0."))
    t = load_temperature(finetuned)
    assert t is not None and TEMPERATURE_MIN <= t <= TEMPERATURE_MAX
    assert set(load_file(str(finetuned / "retrieval.safetensors"))) == {"log_temperature"}
    assert load_temperature(pretrained) is None


def script(name: str):
    """A recipe script (not a package module) loaded so its main(argv) runs in-process."""
    spec = importlib.util.spec_from_file_location(name.replace("/", "_"), REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eval_script_per_class_json_and_bad_paths(data, finetuned, tmp_path, capsys):
    main = script("eval/retrieval").main
    out = tmp_path / "r.json"
    args = ["--checkpoint", str(finetuned), f"data.path=[{data}]", "--device", "cpu"]
    assert main([*args, "--split", "test", "--per-class", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "video->audio" in printed and "MedR" in printed
    saved = json.loads(out.read_text())
    assert saved["clips"] == CLASSES and set(saved["audio->video"]) == {"R@1", "R@5", "R@10", "MedR", "MeanR"}

    missing = tmp_path / "missing"
    assert main(["--checkpoint", str(missing), f"data.path=[{data}]"]) == 2
    assert "missing" in capsys.readouterr().err
    assert main([*args, "--split", "nosuch", "--json", str(tmp_path / "no.json")]) == 2
    assert "nosuch" in capsys.readouterr().err and not (tmp_path / "no.json").exists()
    assert main([*args, "--per-class", "0"]) == 2


def test_finetune_script_writes_a_model(tmp_path, data, pretrained, capsys):
    from vab.model import VAB

    main = script("finetune/retrieval").main
    out = tmp_path / "model"
    args = ["--init", str(pretrained), f"data.path=[{data}]", *TRAIN, "train.max_steps=2", "train.valid_every=2",
            f"train.output_dir={tmp_path / 'run'}", "--model-out", str(out)]
    assert main(args) == 0
    assert "v2a/R@1" in capsys.readouterr().out  # validation on the valid split ran
    assert load_model(out, kind=VAB).expert_layers == 1 and load_temperature(out) is not None
    assert main(args) == 2  # a second fresh run into the same RUN is refused, not silently mixed
    assert "checkpoint" in capsys.readouterr().err.lower()
    assert main(["--init", str(tmp_path / "none"), f"data.path=[{data}]"]) == 2
    assert main(["--init", str(tmp_path / "none"), f"data.path=[{data}]"]) == 2
    assert "none" in capsys.readouterr().err


def test_eval_classification_script_reports_map_accuracy_and_csv(data, finetuned, tmp_path, capsys):
    """eval/classification.py on a classifier built on the retrieval-fine-tuned backbone."""
    import csv

    import numpy as np

    from vab.finetuning.classifier import Classifier, save_classifier
    from vab.model import VAB
    from vab.training.run import load_codec_for

    backbone = load_model(finetuned, kind=VAB)
    clf = Classifier(backbone, CLASSES, "visual", [f"class{c}" for c in range(CLASSES)])
    out = save_classifier(clf, load_codec_for(backbone.config, finetuned), tmp_path / "clf", "ce")
    main = script("eval/classification").main
    args = ["--checkpoint", str(out), f"data.path=[{data}]", "--split", "test"]
    assert main([*args, "--csv", str(tmp_path / "pc.csv"), "--json", str(tmp_path / "m.json")]) == 0
    assert "mAP" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "m.json").read_text())
    rows = list(csv.DictReader(open(tmp_path / "pc.csv")))
    assert len(rows) == CLASSES and metrics["clips"] == CLASSES
    ap = np.array([float(r["ap"]) for r in rows])
    assert metrics["mAP"] == pytest.approx(ap.mean())
    # one positive per class in the test split: AP = 1 / (rank of the positive) in (0, 1]
    for r in rows:
        assert int(r["positives"]) == 1 and 0 < float(r["ap"]) <= 1
    assert 0 <= metrics["accuracy"] <= 1
    assert main(["--checkpoint", str(finetuned), f"data.path=[{data}]"]) == 2  # not a classifier directory
    assert "classifier" in capsys.readouterr().err


def test_pooled_reads_only_the_inputs_of_its_mode():
    from vab.errors import VabError
    from vab.finetuning.pooling import pooled

    model = small_vab().eval()
    batch = synthetic_batch()
    with torch.inference_mode():
        visual_only = pooled(model, {"features": batch["features"]}, "visual")
        assert torch.equal(visual_only, pooled(model, batch, "visual"))
        assert pooled(model, {"tokens": batch["tokens"]}, "audio").shape == (8, 48)
        with pytest.raises(VabError, match="audio-visual embedding needs tokens"):
            pooled(model, {"features": batch["features"]}, "audio-visual")
        with pytest.raises(VabError, match="audio embedding needs tokens"):
            pooled(model, {"features": batch["features"]}, "audio")


def test_synthetic_data_set_carries_a_fitted_codec_that_decodes_its_tokens(data):
    from vab.codecs.spectral import SpectralCodec
    from vab.data.dataset import VABDataset

    codec = SpectralCodec(n_fft=1024, codebook_size=32).load_state_file(data / "codec.safetensors")
    tokens = torch.as_tensor(VABDataset([data], "test", train=False, fps=2.0, duration=1.0, levels=4)[0]["tokens"])
    wav = codec.decode(tokens.long()[None])
    assert wav.shape == (1, 1, 16000) and torch.isfinite(wav).all() and wav.abs().max() > 0


# ------------------------------------------------------------------ several processes
TWO_PROCESS_SCRIPT = r"""
import json, sys
import torch
from vab.config import load_config
from vab.finetuning import contrastive
from vab.finetuning.contrastive import finetune_retrieval

out, init, data, run, batch = sys.argv[1:6]
losses = []
call = contrastive.ContrastiveObjective.__call__

def recording(self, model, batch_, generator=None):
    loss, logs = call(self, model, batch_, generator)
    if model.training:
        losses.append(loss.item())
    return loss, logs

contrastive.ContrastiveObjective.__call__ = recording
grad_norms = []
step = torch.optim.AdamW.step

def recording_step(self, *args, **kwargs):  # the gradients the optimizer applies, after DDP averaging
    grads = [p.grad.double().flatten() for g in self.param_groups for p in g["params"] if p.grad is not None]
    grad_norms.append(torch.cat(grads).norm().item())
    return step(self, *args, **kwargs)

torch.optim.AdamW.step = recording_step
cfg = load_config(init, [f"data.path=[{data}]", "train.tracker=none", "train.checkpoint_every=0", "train.valid_every=0",
                         "train.warmup_steps=0", "train.max_steps=3", "train.lr=1e-3", "train.mixup_prob=0",
                         "train.roll_prob=0", f"train.batch_size={batch}", f"train.output_dir={run}"])
model = finetune_retrieval(cfg, init, model_out=f"{run}/model")
import torch.distributed as dist
rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
from safetensors.torch import load_file
weights = load_file(f"{run}/model/model.safetensors") if rank == 0 else {}
json.dump({"losses": losses, "grad_norms": grad_norms, "weights": {k: v.tolist() for k, v in weights.items() if k.startswith(("layers.0.", "modality"))}},
          open(f"{out}.{rank}.json", "w"))
"""


def test_two_processes_with_batch_b_train_like_one_with_batch_2b(data, tmp_path):
    """Contrastive fine-tuning on 2 CPU processes (gloo), batch 4 each, uses both processes' clips
    as negatives: the same loss at every step as 1 process with batch 8, and the same weights after
    3 steps (so the gradients flowed back across processes too)."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import free_port
    from tests.test_hub import save_model

    init = save_model(tmp_path / "init", data, "model.dropout=0.0")
    script = tmp_path / "ft.py"
    script.write_text(TWO_PROCESS_SCRIPT)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    two = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
           "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           str(script), str(tmp_path / "two"), str(init), str(data), str(tmp_path / "run2"), "4"]
    done = subprocess.run(two, cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    one = [sys.executable, str(script), str(tmp_path / "one"), str(init), str(data), str(tmp_path / "run1"), "8"]
    done = subprocess.run(one, cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = (json.loads((tmp_path / f"two.{r}.json").read_text()) for r in (0, 1))
    single = json.loads((tmp_path / "one.0.json").read_text())
    assert len(single["losses"]) == len(a["losses"]) == 3
    assert a["losses"] == pytest.approx(single["losses"], abs=1e-5)
    assert b["losses"] == pytest.approx(a["losses"], abs=1e-6)  # every process computes the global loss
    # the gradient of the whole batch, not 1/2 of it (Adam would hide that scale in the weights)
    assert len(a["grad_norms"]) == 3 and a["grad_norms"] == pytest.approx(single["grad_norms"], rel=1e-4)
    assert single["weights"]
    for key, value in single["weights"].items():
        assert torch.allclose(torch.tensor(a["weights"][key]), torch.tensor(value), atol=1e-5), key
