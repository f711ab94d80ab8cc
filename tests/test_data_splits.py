"""Grouped splits: no patient (or block) in two splits, k-fold covers each group once."""

from __future__ import annotations

import json

import pytest

from unet_keras.data import (
    DataError,
    default_split_by,
    kfold_records,
    read_dataset,
    read_split_json,
    split_records,
    write_split_json,
)
from unet_keras.data.synthetic import make_phantom_slices


@pytest.fixture(scope="module")
def phantoms():
    return make_phantom_slices(60, size=16, slices_per_patient=4)  # 15 patients


def _patients(slices, idx):
    return {slices[i].patient_id for i in idx}


def test_patient_split_has_no_leak_and_covers_everything(phantoms):
    assert default_split_by(phantoms) == "patient"
    for seed in range(5):
        split = split_records(phantoms, val_fraction=0.2, test_fraction=0.2, seed=seed)
        train, val, test = (_patients(phantoms, split[k]) for k in ("train", "val", "test"))
        assert not (train & val) and not (train & test) and not (val & test)
        assert sorted(i for v in split.values() for i in v) == list(range(60))
        assert len(split["test"]) >= 12 and len(split["val"]) >= 12 and split["train"]
    assert split_records(phantoms, seed=1) == split_records(phantoms, seed=1)
    assert split_records(phantoms, seed=1) != split_records(phantoms, seed=2)


def test_block_split_on_png_folder(shared_data):
    slices = read_dataset(shared_data / "figshare-png")
    assert default_split_by(slices) == "block"
    split = split_records(slices, seed=3)
    block = {k: {int(slices[i].id) // 10 for i in idx} for k, idx in split.items()}
    assert not (block["train"] & block["test"]) and not (block["train"] & block["val"])
    assert not (block["val"] & block["test"])
    assert abs(len(split["test"]) - 45) <= 10 and abs(len(split["val"]) - 45) <= 10


def test_bundled_sample_splits_into_three_parts(sample_dir):
    split = split_records(read_dataset(sample_dir), seed=42)
    assert all(split[k] for k in ("train", "val", "test"))


def test_image_split_warns_about_leakage(phantoms):
    with pytest.warns(UserWarning, match="leak"):
        split = split_records(phantoms, by="image", val_fraction=0.1, test_fraction=0.1)
    assert (len(split["val"]), len(split["test"])) == (6, 6)


def test_patient_split_needs_patient_ids(sample_dir):
    with pytest.raises(DataError, match="no patient id"):
        split_records(read_dataset(sample_dir), by="patient")


def test_too_few_groups(phantoms):
    with pytest.raises(DataError, match="group"):
        split_records(phantoms[:8], by="patient")  # 2 patients, 3 splits


def test_kfold_tests_every_patient_exactly_once(phantoms):
    k = 4
    seen: list[str] = []
    for fold in range(k):
        split = kfold_records(phantoms, k=k, fold=fold, seed=7, val_fraction=0.2)
        parts = [_patients(phantoms, split[name]) for name in ("train", "val", "test")]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        assert sorted(i for v in split.values() for i in v) == list(range(60))
        assert 12 <= len(split["test"]) <= 16 and split["val"]
        seen.extend(parts[2])
    assert sorted(seen) == sorted({s.patient_id for s in phantoms})
    with pytest.raises(DataError):
        kfold_records(phantoms, k=4, fold=4)


def test_split_json_round_trip(phantoms, tmp_path):
    split = split_records(phantoms, seed=0)
    path = tmp_path / "split.json"
    write_split_json(path, phantoms, split, info={"by": "patient", "seed": 0})
    doc = json.loads(path.read_text())
    assert doc["counts"] == {k: len(v) for k, v in split.items()}
    assert doc["splits"]["test"]["patients"] == sorted(_patients(phantoms, split["test"]))
    assert doc["splits"]["val"]["ids"] == [phantoms[i].id for i in split["val"]]
    assert doc["info"] == {"by": "patient", "seed": 0}
    assert read_split_json(path, phantoms) == split
    reordered = phantoms[::-1]  # indices follow the ids, not the old positions
    back = read_split_json(path, reordered)
    assert {k: sorted(reordered[i].id for i in v) for k, v in back.items()} == {
        k: sorted(phantoms[i].id for i in v) for k, v in split.items()}
    with pytest.raises(DataError, match=r"split\.json: 60 slice id"):
        read_split_json(path, [])
