"""The events world (`vab synth --world events`): a symbol is shown and three sound events follow
in an order that names the class, each sounding differently in every clip."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from vab.cli import main
from vab.data import events
from vab.data.synthetic import plan_clips, read_truth, world_classes
from vab.demo import quality
from vab.errors import VabError
from tests.sound_checks import assert_sounds_while_visible


def test_each_sequence_has_its_reverse_so_only_the_order_names_the_class():
    classes = world_classes(8, "events")
    assert len({c.shape for c in classes}) == len({c.sound for c in classes}) == 8
    sequences = [tuple(c.sound.split("-")) for c in classes]
    assert all(len(s) == 3 and set(s) <= set(events.KINDS) for s in sequences)
    assert all(b == a[::-1] for a, b in zip(sequences[0::2], sequences[1::2]))
    assert len({frozenset(s) for s in sequences}) == 4  # the sounds name a pair, the order the class
    with pytest.raises(VabError, match="between 2 and 8"):
        world_classes(9, "events")


def test_new_sounds_every_clip_and_spans_long_enough_for_a_sequence():
    specs = plan_clips(8, {"train": 32}, 4.0, 8.0, 48, 48, 0, "events")
    for key in ("event", "thump_hz", "whistle_hz", "hiss_hz", "buzz_hz", "colour"):
        assert len({json.dumps(s.extra[key]) for s in specs}) == len(specs), key
    assert all(s.background == "noisy" for s in specs)
    assert all(b - a >= events.SHORTEST_SPAN - 1e-9 for s in specs for a, b in s.intervals)
    slow = dict(specs[0].extra, event=events.EVENT_SECONDS[1])
    assert len(events.sequence_sound(events.SEQUENCES[0], slow, np.random.default_rng(0))) / 16000 <= events.SHORTEST_SPAN
    with pytest.raises(VabError, match="unknown sound event 'bang'"):
        events.event_sound("bang", slow, np.random.default_rng(0))


def test_the_judge_hears_a_sequence_from_its_reverse():
    """Same clip, same sounds: the long-term spectra agree, yet the judge tells the order."""
    classes = world_classes(2, "events")
    specs = plan_clips(2, {"train": 48}, 3.0, 8.0, 48, 48, 1, "events")
    wavs = [events.render_audio(s, classes[s.label], 3.0) for s in specs]
    labels = [s.label for s in specs]
    same = replace(specs[0], intervals=[(0.0, 3.0)])
    spectra = [quality.log_mel(events.render_audio(same, c, 3.0), 16000).mean(axis=0) for c in classes]
    assert np.corrcoef(*spectra)[0, 1] > 0.95
    judge = quality.SoundClassifier(16000).fit(wavs[:32], labels[:32])
    assert quality.agreement(judge.predict(wavs[32:]), labels[32:]) >= 0.9


@pytest.mark.parametrize("world", ["events", "tunes"])
def test_vab_synth_sequence_world_plays_while_the_symbol_is_visible(tmp_path, world):
    out = tmp_path / world
    args = ["synth", str(out), "--world", world, "--classes", "2", "--train", "3", "--valid", "0",
            "--test", "0", "--seconds", "3", "--size", "32"]
    assert main(args) == 0
    assert json.loads((out / "world.json").read_text())["params"]["world"] == world
    for row in read_truth(out).values():
        assert_sounds_while_visible(row, 3.0, loud_share=0.5)
