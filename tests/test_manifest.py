"""Manifest readers: generic CSV / JSONL, VGGSound, AudioSet, folders, auto-detection, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vab.data.manifest import ManifestRow, detect_format, read_manifest
from vab.errors import VabError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def error(call, *parts: str) -> str:
    """Run `call`, expect a one-line VabError containing every part."""
    with pytest.raises(VabError) as exc:
        call()
    text = str(exc.value)
    assert "\n" not in text, text
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"
    return text


# ---------------------------------------------------------------- generic CSV


def test_csv_full(tmp_path):
    m = write(
        tmp_path / "lists" / "train.csv",
        "path,id,labels,split,start\n"
        "clips/a.mp4,clip-a,dog;cat,train,1.5\n"
        '/abs/b.mp4,,"bird, small|dog",test,\n'
        "\n"
        "../c.wav,c,,,\n",
    )
    man = read_manifest(m)
    assert man.source == str(m)
    assert [r.id for r in man.rows] == ["clip-a", "b", "c"]
    assert [r.index for r in man.rows] == [0, 1, 2]
    assert man.rows[0].path == os.path.abspath(tmp_path / "lists" / "clips" / "a.mp4")
    assert man.rows[1].path == "/abs/b.mp4"
    assert man.rows[2].path == os.path.abspath(tmp_path / "c.wav")
    assert man.rows[0].labels == ["dog", "cat"]
    assert man.rows[1].labels == ["bird, small", "dog"]  # a quoted comma stays in the label
    assert man.rows[2].labels == []
    assert [r.split for r in man.rows] == ["train", "test", None]
    assert [r.start for r in man.rows] == [1.5, 0.0, 0.0]
    assert man.label_names == ["bird, small", "cat", "dog"]
    assert man.multi_label
    assert man.label_ids(man.rows[0]) == [2, 1]
    assert man.label_ids(["bird, small"]) == [0]
    error(lambda: man.label_ids(["fish"]), str(m), "'fish'")
    assert [r.id for r in man.select("test")] == ["b"]
    assert man.select("test").label_names == man.label_names


def test_csv_single_label_root_and_default_split(tmp_path):
    m = write(tmp_path / "m.csv", "label,path\n10,x/one.mp4\n2,two.mkv\n2,three.webm\n")
    man = read_manifest(m, root=tmp_path / "media", split="valid")
    assert not man.multi_label
    assert man.label_names == ["2", "10"]  # numeric labels sort as numbers
    assert man.rows[0].path == os.path.abspath(tmp_path / "media" / "x" / "one.mp4")
    assert [r.id for r in man.rows] == ["one", "two", "three"]
    assert {r.split for r in man.rows} == {"valid"}
    assert man.rows[1] == ManifestRow(1, "two", os.path.abspath(tmp_path / "media" / "two.mkv"), ["2"], "valid", 0.0)


def test_csv_errors(tmp_path):
    m = write(tmp_path / "nopath.csv", "file,label\na.mp4,dog\n")
    error(lambda: read_manifest(m, fmt="csv"), f"{m}:1:", "no 'path' column")
    m = write(tmp_path / "dup.csv", "path,label\nx/a.mp4,dog\ny/b.mp4,cat\nz/a.mp4,dog\n")
    error(lambda: read_manifest(m), f"{m}:4:", "duplicate id 'a'", "line 2")
    m = write(tmp_path / "start.csv", "path,start\na.mp4,soon\n")
    error(lambda: read_manifest(m), f"{m}:2:", "start", "'soon'")
    m = write(tmp_path / "neg.csv", "path,start\na.mp4,-1\n")
    error(lambda: read_manifest(m), f"{m}:2:", "non-negative")
    m = write(tmp_path / "wide.csv", "path,label\na.mp4,dog\nb.mp4,big,dog\n")
    error(lambda: read_manifest(m), f"{m}:3:", "3 fields", "header has 2")
    m = write(tmp_path / "nopathvalue.csv", "path,label\n,dog\n")
    error(lambda: read_manifest(m), f"{m}:2:", "missing 'path'")
    m = write(tmp_path / "headeronly.csv", "path,label\n")
    error(lambda: read_manifest(m), str(m), "no files")
    m = write(tmp_path / "empty.csv", "\n\n")
    error(lambda: read_manifest(m, fmt="csv"), str(m), "empty")
    m = tmp_path / "latin1.csv"
    m.write_bytes("path,label\ncaf\xe9.mp4,x\n".encode("latin-1"))
    error(lambda: read_manifest(m, fmt="csv"), str(m), "UTF-8")


def test_csv_with_byte_order_mark(tmp_path):
    m = tmp_path / "excel.csv"
    m.write_bytes("\ufeffpath,label\na.mp4,dog\n".encode("utf-8"))
    assert read_manifest(m).rows[0].labels == ["dog"]


# ---------------------------------------------------------------- JSONL


def test_jsonl(tmp_path):
    m = write(
        tmp_path / "m.jsonl",
        json.dumps({"path": "a.mp4", "labels": ["x", "y"], "split": "train", "start": 2})
        + "\n\n"
        + json.dumps({"path": "sub/b.flac", "id": 7, "label": 3})
        + "\n"
        + json.dumps({"path": "c.mp4", "labels": "z|x", "extra": {"ignored": True}})
        + "\n",
    )
    man = read_manifest(m)
    assert [r.id for r in man.rows] == ["a", "7", "c"]
    assert man.rows[0].labels == ["x", "y"] and man.rows[0].start == 2.0 and man.rows[0].split == "train"
    assert man.rows[1].labels == ["3"] and man.rows[1].path == os.path.abspath(tmp_path / "sub" / "b.flac")
    assert man.rows[2].labels == ["z", "x"]
    assert man.label_names == ["3", "x", "y", "z"]
    assert man.multi_label


def test_jsonl_errors(tmp_path):
    m = write(tmp_path / "bad.jsonl", '{"path": "a.mp4"}\n{"path": "b.mp4",\n')
    error(lambda: read_manifest(m), f"{m}:2:", "not valid JSON")
    m = write(tmp_path / "list.jsonl", '["a.mp4"]\n')
    error(lambda: read_manifest(m), f"{m}:1:", "JSON object")
    m = write(tmp_path / "nopath.jsonl", '{"path": "a.mp4"}\n\n{"label": "dog"}\n')
    error(lambda: read_manifest(m), f"{m}:3:", "missing 'path'")
    m = write(tmp_path / "numpath.jsonl", '{"path": 5}\n')
    error(lambda: read_manifest(m), f"{m}:1:", "path must be text")
    m = write(tmp_path / "badlabels.jsonl", '{"path": "a.mp4", "labels": [{"x": 1}]}\n')
    error(lambda: read_manifest(m), f"{m}:1:", "label")
    m = write(tmp_path / "dup.jsonl", '{"path": "a.mp4", "id": "k"}\n{"path": "b.mp4", "id": "k"}\n')
    error(lambda: read_manifest(m), f"{m}:2:", "duplicate id 'k'", "line 1")


# ---------------------------------------------------------------- VGGSound


VGGSOUND = (
    "---g-f_I2yQ,1,people marching,test\n"
    'abc,30,"dog barking, growling",train\n'
    "xyz,0,people marching,train\n"
    'abc,30,"dog barking, growling",train\n'  # an exact repeat is dropped
    "missing,12,lions roaring,train\n"
)


def test_vggsound(tmp_path):
    m = write(tmp_path / "vggsound.csv", VGGSOUND)
    media = tmp_path / "media"
    touch(media / "---g-f_I2yQ_000001.mp4")
    touch(media / "abc_000030.mkv")
    touch(media / "abc_000030.wav")  # .mkv comes first in the extension order
    touch(media / "xyz_000000.flac")
    man = read_manifest(m, root=media)
    assert [r.id for r in man.rows] == ["---g-f_I2yQ_000001", "abc_000030", "xyz_000000", "missing_000012"]
    assert [Path(r.path).name for r in man.rows] == [
        "---g-f_I2yQ_000001.mp4", "abc_000030.mkv", "xyz_000000.flac", "missing_000012.mp4"
    ]
    assert all(Path(r.path).is_absolute() for r in man.rows)
    assert man.rows[1].labels == ["dog barking, growling"]
    assert [r.split for r in man.rows] == ["test", "train", "train", "train"]
    assert [r.start for r in man.rows] == [0.0] * 4
    assert man.label_names == ["dog barking, growling", "lions roaring", "people marching"]
    assert not man.multi_label
    # full-length videos: the clip starts at start_seconds inside the file
    full = read_manifest(m, root=media, name_template="{ytid}", trimmed=False, extensions=("webm",))
    assert [r.id for r in full.rows] == ["---g-f_I2yQ", "abc", "xyz", "missing"]
    assert [r.start for r in full.rows] == [1.0, 30.0, 0.0, 12.0]
    assert Path(full.rows[0].path).name == "---g-f_I2yQ.webm"


def test_vggsound_errors(tmp_path):
    m = write(tmp_path / "vggsound.csv", VGGSOUND)
    error(lambda: read_manifest(m), str(m), "root=")
    error(lambda: read_manifest(m, root=tmp_path, name_template="{ytid}_{begin}"), f"{m}:1:", "name_template", "ytid")
    bad = write(tmp_path / "v1.csv", "abc,30,dog,train\nabc,thirty,dog,train\n")
    error(lambda: read_manifest(bad, fmt="vggsound", root=tmp_path), f"{bad}:2:", "start_seconds", "'thirty'")
    bad = write(tmp_path / "v2.csv", "abc,30,dog,train\nabc,30,dog,valid\n")
    error(lambda: read_manifest(bad, fmt="vggsound", root=tmp_path), f"{bad}:2:", "train or test", "'valid'")
    bad = write(tmp_path / "v3.csv", "abc,30,dog,train\nabc,30,dog, barking,train\n")
    error(lambda: read_manifest(bad, fmt="vggsound", root=tmp_path), f"{bad}:2:", "expected 4 fields", "found 5")
    bad = write(tmp_path / "v4.csv", "abc,30,dog,train\nabc,30,cat,train\n")
    error(lambda: read_manifest(bad, fmt="vggsound", root=tmp_path), f"{bad}:2:", "'abc_000030'", "line 1")


# ---------------------------------------------------------------- AudioSet


CLASS_INDEX = (
    "index,mid,display_name\n"
    '0,/m/09x0r,"Speech"\n'
    '1,/m/05zppz,"Male speech, man speaking"\n'
    '2,/m/0jbk,"Animal"\n'
    '3,/m/0bt9lr,"Dog"\n'
)
SEGMENTS = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids=3, num_segs=3, num_unique_labels=4, num_positive_labels=5\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
    '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/05zppz"\n'
    '-0RWZT-miFs, 420.000, 430.000, "/m/0bt9lr,/m/0jbk"\n'
    '-1nilez17Dg, 0.000, 8.500, "/m/0jbk"\n'
)


def test_audioset(tmp_path):
    idx = write(tmp_path / "class_labels_indices.csv", CLASS_INDEX)
    m = write(tmp_path / "balanced_train_segments.csv", SEGMENTS)
    media = tmp_path / "clips"
    touch(media / "--PJHxphWEs_000030.flac")
    man = read_manifest(m, root=media, class_index=idx)
    assert man.multi_label
    assert man.label_names == ["Speech", "Male speech, man speaking", "Animal", "Dog"]  # index order
    assert [r.id for r in man.rows] == ["--PJHxphWEs_000030", "-0RWZT-miFs_000420", "-1nilez17Dg_000000"]
    assert Path(man.rows[0].path).name == "--PJHxphWEs_000030.flac"
    assert Path(man.rows[1].path).name == "-0RWZT-miFs_000420.mp4"  # missing: default name kept
    assert man.rows[0].labels == ["Speech", "Male speech, man speaking"]
    assert man.label_ids(man.rows[1]) == [3, 2]
    assert {r.split for r in man.rows} == {"train"}
    assert [r.start for r in man.rows] == [0.0, 0.0, 0.0]
    # split from the file name, or as given; custom names and full-length files
    ev = write(tmp_path / "eval_segments.csv", SEGMENTS)
    assert {r.split for r in read_manifest(ev, root=media, class_index=idx)} == {"test"}
    assert {r.split for r in read_manifest(ev, root=media, class_index=idx, split="valid")} == {"valid"}
    other = read_manifest(
        ev, root=media, class_index=idx, name_template="Y{ytid}_{start_ms}_{end_ms}", trimmed=False
    )
    assert other.rows[2].id == "Y-1nilez17Dg_0_8500"
    assert [r.start for r in other.rows] == [30.0, 420.0, 0.0]


def test_audioset_errors(tmp_path):
    idx = write(tmp_path / "class_labels_indices.csv", CLASS_INDEX)
    m = write(tmp_path / "balanced_train_segments.csv", SEGMENTS)
    error(lambda: read_manifest(m, root=tmp_path), str(m), "class_index=")
    error(lambda: read_manifest(m, root=tmp_path, class_index=tmp_path / "none.csv"), "none.csv", "no such")
    bad = write(tmp_path / "s1.csv", SEGMENTS + '-zz, 0.000, 10.000, "/m/nothere"\n')
    error(lambda: read_manifest(bad, root=tmp_path, class_index=idx), f"{bad}:7:", "'/m/nothere'", str(idx))
    bad = write(tmp_path / "s2.csv", SEGMENTS + "-zz, 0.000, 10.000\n")
    error(lambda: read_manifest(bad, root=tmp_path, class_index=idx), f"{bad}:7:", "expected 4 fields")
    bad = write(tmp_path / "s3.csv", SEGMENTS + '-zz, 10.000, 10.000, "/m/0jbk"\n')
    error(lambda: read_manifest(bad, root=tmp_path, class_index=idx), f"{bad}:7:", "end_seconds")
    bad_idx = write(tmp_path / "idx2.csv", "index,mid,display_name\n0,/m/a,A\nzero,/m/b,B\n")
    error(lambda: read_manifest(m, root=tmp_path, class_index=bad_idx), f"{bad_idx}:3:", "integer")
    bad_idx = write(tmp_path / "idx3.csv", "id,name\n0,A\n")
    error(lambda: read_manifest(m, root=tmp_path, class_index=bad_idx), f"{bad_idx}:1:", "index,mid,display_name")


def test_audioset_repeated_display_names_stay_distinct(tmp_path):
    idx = write(tmp_path / "idx.csv", "index,mid,display_name\n0,/m/a,Bass\n1,/m/b,Bass\n")
    m = write(tmp_path / "seg.csv", '# YTID, start_seconds, end_seconds, positive_labels\nq, 0.0, 10.0, "/m/b"\n')
    man = read_manifest(m, root=tmp_path, class_index=idx)
    assert man.label_names == ["Bass (/m/a)", "Bass (/m/b)"]
    assert man.label_ids(man.rows[0]) == [1]


# ---------------------------------------------------------------- folders and auto-detection


def test_directory_manifest(tmp_path):
    d = tmp_path / "videos"
    for rel in ["b.mp4", "a/x.MP4", "a/y.wav", "c.txt", ".hidden.mp4", ".cache/z.mp4", "a/b.mkv"]:
        touch(d / rel)
    man = read_manifest(d)
    assert [r.id for r in man.rows] == ["a/b", "a/x", "a/y", "b"]
    assert man.rows[1].path == os.path.abspath(d / "a" / "x.MP4")
    assert man.label_names == [] and not man.multi_label
    assert all(r.labels == [] and r.split is None for r in man.rows)
    touch(d / "b.wav")
    error(lambda: read_manifest(d), str(d), "'b'", "b.mp4", "b.wav")
    empty = tmp_path / "empty"
    touch(empty / "notes.txt")
    error(lambda: read_manifest(empty), str(empty), "no media files")


def test_auto_detection(tmp_path):
    generic = write(tmp_path / "g.csv", "id,path\n1,a.mp4\n")
    vgg = write(tmp_path / "v.csv", 'abc,30,"dog, barking",test\n')
    aud = write(tmp_path / "a.csv", SEGMENTS)
    aud2 = write(tmp_path / "a2.csv", 'YTID,start_seconds,end_seconds,positive_labels\nq,0,10,"/m/0jbk"\n')
    jl = write(tmp_path / "j.jsonl", '{"path": "a.mp4"}\n')
    assert [detect_format(p) for p in (generic, vgg, aud, aud2, jl, tmp_path)] == [
        "csv", "vggsound", "audioset", "audioset", "jsonl", "dir"
    ]
    assert read_manifest(vgg, root=tmp_path).rows[0].labels == ["dog, barking"]
    idx = write(tmp_path / "idx.csv", CLASS_INDEX)
    assert read_manifest(aud2, root=tmp_path, class_index=idx).rows[0].labels == ["Animal"]
    unknown = write(tmp_path / "u.csv", "a,b,c\n1,2,3\n")
    error(lambda: read_manifest(unknown), f"{unknown}:1:", "cannot tell the manifest format")
    txt = write(tmp_path / "m.txt", "path\na.mp4\n")
    error(lambda: read_manifest(txt), str(txt), "'.txt'")
    assert read_manifest(txt, fmt="csv").rows[0].id == "a"  # an explicit format skips detection


def test_generic_errors(tmp_path):
    error(lambda: read_manifest(tmp_path / "nothing.csv"), "nothing.csv", "no such manifest")
    m = write(tmp_path / "m.csv", "path\na.mp4\n")
    error(lambda: read_manifest(m, fmt="tsv"), str(m), "'tsv'", "csv, jsonl")
    error(lambda: read_manifest(m, fmt="dir"), str(m), "not a folder")
    error(lambda: read_manifest(tmp_path, fmt="csv"), str(tmp_path), "is a folder")
