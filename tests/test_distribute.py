"""Distribution: TFRecord exports and their auto-sharding, strategy selection from TF_CONFIG,
MirroredStrategy on two logical CPU devices against a single device, and two multi-worker
processes on 127.0.0.1 (one killed, then all resumed).

The mirrored comparison trains on 40 copies of one real slice: every half-batch a replica
sees then equals the whole global batch, so BatchNormalization's per-replica batch statistics
are the global ones and each replica's pooled Dice equals the global batch's up to the smoothing
term (``smooth=1e-3``: relative effect ~1e-5). What is left is the mechanics under test
(splitting the batch, scaling the loss, summing gradients, updating mirrored variables), so
the trajectories must agree to float rounding. SGD is used because Adam would hide a wrongly
scaled gradient. On distinct slices the runs differ by design (each replica normalises with
the statistics of its own half batch, and pooled Dice is not an average over images); that is
documented, not asserted.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from unet_keras.cli.data import tfrecord_main
from unet_keras.config import TrainConfig
from unet_keras.data import load_arrays, read_dataset, split_records, tfrecord
from unet_keras.distribute import cluster_size, is_chief, select_strategy, task_name

REPO = Path(__file__).resolve().parents[1]
TINY = ["--image-size", "32", "--base-filters", "4", "--depth", "2", "--batch-size", "4"]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


@pytest.fixture(scope="module")
def export(sample_dir: Path, tmp_path_factory) -> tfrecord.TFRecordExport:
    """The bundled sample exported at 32x32 in (up to) 4 shards per split, through
    ``python -m unet_keras.data export-tfrecord``."""
    from unet_keras.data.__main__ import main

    out = tmp_path_factory.mktemp("export") / "sample32"
    assert main(["export-tfrecord", str(sample_dir), str(out), "--image-size", "32",
                 "--shards", "4"]) == 0
    return tfrecord.open_export(out)


def test_export_writes_manifest_split_and_round_robin_shards(export, sample_dir: Path):
    slices = read_dataset(sample_dir)
    split = split_records(slices, val_fraction=0.15, test_fraction=0.15, seed=42)  # train.py's
    assert export.counts == {name: len(idx) for name, idx in split.items()}
    assert export.split_ids() == {name: [slices[i].id for i in idx] for name, idx in split.items()}
    assert export.source == str(sample_dir.resolve())
    for name, idx in split.items():
        files = export.shards[name]
        assert len(files) == min(4, len(idx))
        images, masks = load_arrays([slices[i] for i in idx], 32, 1)
        for k, path in enumerate(files):
            # Decode the records with protobuf + numpy only (independent of our reader).
            records = [tf.train.Example.FromString(r.numpy()).features.feature
                       for r in tf.data.TFRecordDataset(str(path))]
            positions = list(range(k, len(idx), len(files)))
            assert [r["index"].int64_list.value[0] for r in records] == positions
            for f, p in zip(records, positions, strict=True):
                assert f["id"].bytes_list.value[0].decode() == slices[idx[p]].id
                image = np.frombuffer(f["image"].bytes_list.value[0], "<f4").reshape(32, 32)
                mask = np.frombuffer(f["mask"].bytes_list.value[0], np.uint8).reshape(32, 32)
                np.testing.assert_array_equal(image, images[p, ..., 0])
                np.testing.assert_array_equal(mask, masks[p, ..., 0])


def test_unshuffled_read_equals_in_memory_arrays(export, sample_dir: Path):
    slices = {s.id: s for s in read_dataset(sample_dir)}
    for name, ids in export.split_ids().items():
        images, masks = load_arrays([slices[i] for i in ids], 32, 3)
        batches = list(tfrecord.make_tfrecord_dataset(export, name, 5, channels=3,
                                                      shuffle=False))
        assert len(batches) == -(-len(ids) // 5)
        np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), images)
        np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), masks)


def test_file_auto_sharding_gives_each_worker_its_own_shards(export):
    from tensorflow.python.data.experimental.ops.distribute import _AutoShardDataset

    def stored_images(path: Path) -> set[bytes]:  # protobuf decode, independent of our reader
        return {tf.train.Example.FromString(r.numpy()).features.feature["image"]
                .bytes_list.value[0] for r in tf.data.TFRecordDataset(str(path))}

    per_file = [stored_images(f) for f in export.shards["train"]]
    assert [len(s) for s in per_file] == [6, 6, 6, 5]  # 23 slices dealt round-robin
    for worker in range(2):
        ds = tfrecord.make_tfrecord_dataset(export, "train", 1, 1, shuffle=True, repeat=True,
                                            shard_policy=tf.data.experimental.AutoShardPolicy.FILE)
        mine = per_file[worker] | per_file[worker + 2]  # files worker and worker + 2
        # The rewrite MultiWorkerMirroredStrategy applies on each worker: one pass = its files.
        sharded = _AutoShardDataset(ds, num_workers=2, index=worker).take(len(mine))
        assert {x.numpy()[0, ..., 0].astype("<f4").tobytes() for x, _ in sharded} == mine


def test_training_rejects_an_export_of_another_size(export, tmp_path: Path):
    from unet_keras.training import train

    cfg = TrainConfig(data=str(export.root), image_size=64, output=str(tmp_path / "run"))
    with pytest.raises(ValueError, match=r"exported at 32x32; train it with --image-size 32"):
        train(cfg, log=lambda *_: None)


def test_patch_training_on_an_export_is_refused_before_the_run_dir_is_made(export,
                                                                          tmp_path: Path):
    from unet_keras.data import DataError
    from unet_keras.training import train

    run = tmp_path / "run"
    cfg = TrainConfig.from_dict({"data": str(export.root), "image_size": 32,
                                 "patch_size": 16, "base_filters": 4, "depth": 2,
                                 "output": str(run)})
    with pytest.raises(DataError, match=r"patch training reads slices in memory"):
        train(cfg, log=lambda *_: None)
    assert not run.exists()  # a corrected command is not refused as "a run already exists"


def test_export_cli_refuses_to_overwrite(export, capsys):
    assert tfrecord_main(["export", str(REPO / "data" / "sample"), str(export.root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {export.root}: already holds a TFRecord export; choose another output"


def test_tf_config_roles_and_strategy_guard(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert (cluster_size(), is_chief(), task_name()) == (1, True, "local")
    workers = {"worker": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]}
    for index, chief in ((0, True), (2, False)):
        monkeypatch.setenv("TF_CONFIG", json.dumps(
            {"cluster": workers, "task": {"type": "worker", "index": index}}))
        assert (cluster_size(), is_chief(), task_name()) == (3, chief, f"worker {index}")
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"chief": ["a:1"], **workers}, "task": {"type": "worker", "index": 0}}))
    assert (cluster_size(), is_chief()) == (4, False)
    with pytest.raises(ValueError, match="cluster of 4 processes, but --strategy one"):
        select_strategy("one")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        cluster_size()


MIRRORED_SCRIPT = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
import unet_keras
from unet_keras.config import ArchConfig, TrainConfig
from unet_keras.distribute import select_strategy
from unet_keras.data.splits import load_split_data
from unet_keras.training import build_datasets, train

data, out = sys.argv[1], sys.argv[2]
result = {}
for strategy in ("one", "mirrored"):
    cfg = TrainConfig(data=data, epochs=2, batch_size=4, image_size=32,
                      arch=ArchConfig(base_filters=4, depth=2), augment=False, optimizer="sgd",
                      lr=0.1, smooth=1e-3, strategy=strategy, output=f"{out}/{strategy}")
    logs = []
    result[strategy] = train(cfg, log=logs.append).history
    result[strategy + "_log"] = logs
    result[strategy + "_weights"] = [w.tolist() for w in
                                     keras.models.load_model(f"{out}/{strategy}/last.keras")
                                     .get_weights()]
strategy = select_strategy("mirrored")
_, _, arrays = load_split_data(cfg)
train_ds, _, steps = build_datasets(cfg, None, arrays, strategy.num_replicas_in_sync)
images, _ = next(iter(strategy.experimental_distribute_dataset(train_ds)))
result["replica_batches"] = [int(t.shape[0]) for t in strategy.experimental_local_results(images)]
result["steps"] = steps
print("RESULT " + json.dumps(result))
"""


@pytest.mark.slow
def test_mirrored_on_two_cpu_devices_matches_one_device(sample_dir: Path, tmp_path: Path):
    same = tmp_path / "same"
    (same / "images").mkdir(parents=True)
    (same / "masks").mkdir()
    for i in range(40):  # 4 blocks of 10: train 20 (5 full batches), val 10, test 10
        shutil.copy(sample_dir / "images" / "1001.png", same / "images" / f"{i}.png")
        shutil.copy(sample_dir / "masks" / "1001.png", same / "masks" / f"{i}.png")
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(same), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=_env(), cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert any("MirroredStrategy, 2 replicas on 1 worker(s), 2 images per replica, 5 steps"
               in line for line in result["mirrored_log"])
    assert not any("replicas" in line for line in result["one_log"])
    assert result["replica_batches"] == [2, 2] and result["steps"] == 5
    one, mirrored = result["one"], result["mirrored"]
    assert [r["epoch"] for r in mirrored] == [0, 1]
    assert abs(one[-1]["loss"] - one[0]["loss"]) > 1e-3  # it trained: the check can fail
    for a, b in zip(one, mirrored, strict=True):
        for key in ("loss", "dice_coef", "iou_coef", "val_loss", "val_dice_coef"):
            assert b[key] == pytest.approx(a[key], abs=2e-5), key
    for a, b in zip(result["one_weights"], result["mirrored_weights"], strict=True):
        np.testing.assert_allclose(b, a, atol=1e-4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_workers(outputs: list[Path], args: list[str], tmp: Path, tag: str
                   ) -> list[subprocess.Popen]:
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in outputs]}
    procs = []
    for i, output in enumerate(outputs):
        scratch = tmp / f"{tag}-tmp{i}"
        scratch.mkdir()
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), *args, "--output", str(output)],
            stdout=(tmp / f"{tag}{i}.out").open("w"), stderr=(tmp / f"{tag}{i}.err").open("w"),
            env=_env(TF_CONFIG=tf_config, TMPDIR=str(scratch)), cwd=REPO))
    return procs


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)


@pytest.fixture(scope="module")
def multiworker(export, tmp_path_factory) -> dict:
    """Two workers train the export (``--epochs 4``); once epoch 1 is backed up, worker 1 is
    killed and worker 0 (the chief) must stop on its own. Then both restart with ``--resume``
    for exactly one more epoch. Worker 1 is first given its own ``--output`` (which it must not
    create), then the chief's (resume reads the chief's backup: shared storage)."""
    tmp = tmp_path_factory.mktemp("multiworker")
    run, other = tmp / "run", tmp / "worker1-run"
    args = ["--data", str(export.root), *TINY, "--strategy", "multiworker"]
    procs = _start_workers([run, other], [*args, "--epochs", "4"], tmp, "first")
    meta = run / "backup" / "training_metadata.json"
    try:
        deadline = time.time() + 240
        while time.time() < deadline and procs[0].poll() is None:
            try:
                if json.loads(meta.read_text())["epoch"] >= 1:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        assert procs[0].poll() is None, (tmp / "first0.err").read_text()[-3000:]
        procs[1].kill()
        killed_at = time.time()
        try:
            chief_rc = procs[0].wait(timeout=60)  # the bound: no hang
        except subprocess.TimeoutExpired:
            pytest.fail("the chief did not stop within 60 s of losing worker 1")
        stopped_after = time.time() - killed_at
    finally:
        _stop(procs)
    done = json.loads(meta.read_text())["epoch"]
    resumed = _start_workers([run, run], [*args, "--resume", "--epochs", str(done + 1)], tmp,
                             "resumed")
    try:
        codes = [p.wait(timeout=300) for p in resumed]
    finally:
        _stop(resumed)

    def read(name: str) -> str:
        return (tmp / name).read_text()

    return {"tmp": tmp, "run": run, "other": other, "chief_rc": chief_rc, "done": done,
            "stopped_after": stopped_after, "chief_err": read("first0.err"), "codes": codes,
            "out": [read(f"resumed{i}.out") for i in range(2)],
            "err": [read(f"resumed{i}.err") for i in range(2)]}


@pytest.mark.slow
def test_killing_a_worker_stops_the_chief_quickly_with_one_line(multiworker):
    assert multiworker["chief_rc"] == 2
    assert multiworker["stopped_after"] < 60
    last = multiworker["chief_err"].strip().splitlines()[-1]
    assert last.startswith("error: worker 0: lost contact with /job:worker/replica:0/task:1 ")
    assert "restart every worker with --resume" in last


@pytest.mark.slow
def test_resume_finishes_one_epoch_on_both_workers_with_identical_weights(multiworker):
    assert multiworker["codes"] == [0, 0], multiworker["err"][0][-2000:]
    digests = [re.findall(rf"worker {i}: weights ([0-9a-f]{{16}})", out)
               for i, out in enumerate(multiworker["out"])]
    assert len(digests[0]) == 1 and digests[0] == digests[1]
    assert multiworker["out"][1].count("Epoch ") == 1  # exactly one epoch after the resume
    import keras

    import unet_keras  # noqa: F401  (registers the custom objects)

    weights = keras.models.load_model(multiworker["run"] / "last.keras").get_weights()
    sha = hashlib.sha256(b"".join(np.asarray(w, np.float32).tobytes() for w in weights))
    assert sha.hexdigest()[:16] == digests[0][0]
    with (multiworker["run"] / "history.csv").open() as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(multiworker["done"] + 1))


@pytest.mark.slow
def test_only_the_chief_writes_a_run_directory(multiworker):
    run = multiworker["run"]
    for name in ("model.keras", "last.keras", "config.json", "split.json", "history.csv"):
        assert (run / name).is_file(), name
    assert not (run / "backup").exists()
    assert not multiworker["other"].exists()  # worker 1's own --output was never created
    scratch = re.findall(r"worker 1: scratch (\S+)", multiworker["out"][1])
    assert len(scratch) == 1 and not Path(scratch[0]).exists()
    assert not list((multiworker["tmp"] / "resumed-tmp1").glob("unet-keras-worker-*"))
