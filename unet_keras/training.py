"""Training: data -> split -> tf.data -> compiled U-Net -> Keras callbacks -> run directory.

A run directory (``TrainConfig.output``) holds::

    config.json      the resolved TrainConfig and ArchConfig (+ which data was used)
    split.json       which files / patients went to train, val and test
    model.keras      best epoch on validation Dice, exported in float32
    last.keras       the last epoch, float32
    model.pt         the PyTorch twin of model.keras (when torch is installed)
    history.csv      one row per epoch (Keras CSVLogger)
    curves.png       accuracy, IoU, Dice and loss, train vs val
    logs/            TensorBoard
    summary.md       what was trained on what, and how well
    backup/          Keras BackupAndRestore state while a run is unfinished (for --resume)

The model trains with TensorFlow's fused BatchNormalization kernel
(:class:`unet_keras.batchnorm.FusedBatchNormalization`, same weights and math, about 20% faster
under ``mixed_bfloat16``); the exports are rebuilt with Keras' own layer, and checkpoints hold
weights only, so no file depends on the fused layer.

Everything is written atomically; a run killed at any moment continues with ``resume=True``
from its last finished epoch.

``--data`` may also be a TFRecord export (:mod:`unet_keras.data.tfrecord`); its split is then
used as exported (and copied to ``split.json``), and the shards are read by a ``tf.data``
pipeline that multi-worker training auto-shards between the workers.

Distribution (``TrainConfig.strategy``, see :mod:`unet_keras.distribute`): the model, optimizer
and metrics are created in the strategy's scope, and ``batch_size`` is the *global* batch, which
the strategy splits evenly between the replicas (it must be a multiple of their number). With
several replicas the training data repeats and an epoch is ``n_train // batch_size`` full
steps, so that no replica ever sees a partial or empty batch; BatchNormalization normalises
each replica's part with its own statistics, the moving statistics are averaged across
replicas after each epoch, and validation runs on an undistributed copy of the model (exactly
the single-device numbers). The learning rate is used as given, for the global batch:
when a change of hardware changes the global batch by a factor ``k`` (e.g. the same
per-replica batch on ``k`` times the replicas), scale ``lr`` by ``k`` (the linear scaling rule,
Goyal et al. 2017, with a few epochs of warm-up for large ``k``); keeping the global batch
keeps the optimisation, whatever the number of replicas. Under ``MultiWorkerMirroredStrategy``
every worker runs :func:`train` with the same configuration; only the chief writes the run
directory, the others write to a temporary directory that is removed when they return, and a
worker that dies makes the others stop with :class:`unet_keras.distribute.WorkerLostError`;
restarting every worker with ``resume=True`` continues from the chief's backup (which the other
workers read, so ``output`` must then be on storage they share).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from unet_keras import data as data_lib
from unet_keras.atomic import atomic_path, write_text_atomic
from unet_keras.config import ArchConfig, TrainConfig
from unet_keras.data import tfrecord
from unet_keras.data.pipeline import make_patch_dataset
from unet_keras.data.splits import load_split_data
from unet_keras.distribute import (
    AverageBatchNormStatistics,
    ReplicaMeanLoss,
    UndistributedValidation,
    cluster_size,
    fix_keras_multiworker,
    is_chief,
    peer_failures,
    select_strategy,
    task_name,
    weights_digest,
)
from unet_keras.losses import get_loss
from unet_keras.metrics import segmentation_metrics
from unet_keras.model import build_unet
from unet_keras.model_meta import ModelMeta, write_model_meta
from unet_keras.precision import resolve_policy
from unet_keras.schedule import Budget, EMAWeights, EMAWeightsBack

MONITOR = "val_dice_coef"


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keras' ``ModelCheckpoint`` writing to a temporary file that is renamed into place."""

    def _save_model(self, epoch, batch, logs):
        final = Path(self._get_file_path(epoch, batch, logs))
        tmp = final.with_name(f".tmp-{final.name}")
        template, self.filepath = self.filepath, str(tmp)
        try:
            super()._save_model(epoch, batch, logs)
        finally:
            self.filepath = template
        if tmp.exists():  # written only when the monitored value improved
            os.replace(tmp, final)


@dataclass
class RunResult:
    """What :func:`train` produced."""

    run_dir: Path
    history: list[dict[str, float]]
    best_epoch: int
    best_val_dice: float


#: The optimizers :func:`make_optimizer` builds (``--optimizer``).
OPTIMIZERS = ("adam", "sgd")


def make_optimizer(cfg: TrainConfig) -> keras.optimizers.Optimizer:
    """Adam, or SGD with (Nesterov-free) momentum, at ``cfg.lr``; with ``cfg.ema`` > 0 the
    optimizer also keeps an exponential moving average of the weights (momentum ``ema``)."""
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose one of {OPTIMIZERS}")
    ema = {"use_ema": True, "ema_momentum": cfg.ema} if cfg.ema else {}
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=cfg.lr, momentum=cfg.momentum, **ema)
    return keras.optimizers.Adam(learning_rate=cfg.lr, **ema)


def compile_model(model: keras.Model, cfg: TrainConfig, replicas: int = 1) -> keras.Model:
    """Compile with the configured loss, optimizer and the paper's metrics (in the strategy's
    scope when ``replicas`` > 1; the pooled loss then counts once, see ``ReplicaMeanLoss``)."""
    loss = get_loss(cfg.loss, cfg.smooth)
    model.compile(
        optimizer=make_optimizer(cfg),
        loss=ReplicaMeanLoss(loss) if replicas > 1 else loss,
        metrics=segmentation_metrics(cfg.smooth),
        jit_compile=cfg.jit_compile,
    )
    return model


def export_float32(model: keras.Model, arch: ArchConfig, path: str | os.PathLike,
                   meta: ModelMeta | None = None) -> keras.Model:
    """Rebuild ``arch`` in float32, copy ``model``'s weights and save it atomically, with
    ``meta`` (:mod:`unet_keras.model_meta`) inside the file.

    A model trained under ``mixed_bfloat16`` carries that dtype policy; inference and
    conversion want float32, so exports are always rebuilt from the config. The export is
    not compiled (it is for inference; no optimizer state travels).
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        clean = build_unet(arch)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    clean.set_weights(model.get_weights())
    with atomic_path(path) as tmp:
        clean.save(tmp)
        if meta is not None:
            write_model_meta(tmp, meta)
    return clean


def read_history(path: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of a Keras ``history.csv`` as dicts of floats (``epoch`` as int)."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (int(v) if k == "epoch" else float(v)) for k, v in r.items()} for r in rows]


def _trim_history(path: Path, next_epoch: int) -> list[dict[str, float]]:
    """Drop rows of epochs that the restored state has not finished (no duplicates)."""
    rows = [r for r in read_history(path) if r["epoch"] < next_epoch]
    if path.exists():
        with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
            if rows:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
    return rows


def _restored_epoch(backup_dir: Path) -> int:
    meta = backup_dir / "training_metadata.json"
    for candidate in (meta, meta.with_name(meta.name + ".bkp")):
        try:
            return int(json.loads(candidate.read_text())["epoch"])
        except (OSError, ValueError, KeyError):
            continue
    return 0


def _check_backup(backup_dir: Path) -> None:
    """Refuse a resume whose BackupAndRestore state cannot be read, before any file is
    touched: at least one copy of the metadata and of the weights (``.bkp`` is the previous
    epoch's) must be readable."""
    if not backup_dir.is_dir():
        return
    advice = ("start again with a new --output (this run's best epoch so far is in "
              f"{backup_dir.parent / 'checkpoints' / 'best.weights.h5'})")
    meta = backup_dir / "training_metadata.json"
    readable_meta = []
    for candidate in (meta, meta.with_name(meta.name + ".bkp")):
        try:
            int(json.loads(candidate.read_text())["epoch"])
            readable_meta.append(candidate)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if not readable_meta:
        raise data_lib.DataError(f"{meta}: the backup of the last finished epoch is unreadable "
                                 f"(and so is its .bkp copy); {advice}")
    weights = backup_dir / "latest.weights.h5"
    import h5py

    for candidate in (weights, weights.with_name(weights.name + ".bkp")):
        try:
            with h5py.File(candidate, "r"):
                return
        except OSError:
            continue
    raise data_lib.DataError(f"{weights}: the backed-up weights are unreadable (and so is "
                             f"their .bkp copy); {advice}")


def check_run_dir(cfg: TrainConfig) -> Path:
    """The run directory of ``cfg``, checked but not created: a new run needs a place with no
    run in it; a resume needs an unfinished run with a readable backup. Nothing is written
    (the directory is made when the first file is, once the inputs have been read)."""
    if cfg.output is None:
        raise ValueError("TrainConfig.output (the run directory) is not set")
    run_dir = Path(cfg.output)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir}: --output is a file, not a directory")
    if cfg.resume:
        if not (run_dir / "config.json").exists():
            raise data_lib.DataError(f"{run_dir}: no config.json here, nothing to resume")
        if not (run_dir / "backup").exists() and (run_dir / "model.keras").exists():
            raise ValueError(f"{run_dir}: this run has finished; there is nothing to resume")
        _check_backup(run_dir / "backup")
    elif (run_dir / "config.json").exists():
        raise ValueError(
            f"{run_dir}: a run already exists here; pass --resume to continue it or choose "
            "another --output"
        )
    return run_dir


def _callbacks(cfg: TrainConfig, run_dir: Path, best_so_far: float | None,
               past: list[dict[str, float]]) -> list:
    callbacks = []
    if cfg.steps or cfg.time_budget or cfg.schedule == "cosine":
        last = past[-1] if past else {}
        callbacks.append(Budget(
            steps=cfg.steps, minutes=cfg.time_budget, warmup=cfg.warmup,
            peak_lr=cfg.lr if cfg.schedule == "cosine" else None,
            done_steps=int(last.get("steps", 0)), done_minutes=float(last.get("minutes", 0.0))))
    if cfg.ema:
        ema = EMAWeights()
        callbacks.append(ema)
    callbacks += [
        AtomicModelCheckpoint(
            str(run_dir / "checkpoints" / "best.weights.h5"), monitor=MONITOR, mode="max",
            save_best_only=True, save_weights_only=True, initial_value_threshold=best_so_far,
        ),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs"), write_graph=False),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
    ]
    if cfg.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=MONITOR, mode="max", factor=cfg.lr_factor, patience=cfg.lr_patience,
            min_lr=cfg.min_lr))
    if cfg.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=MONITOR, mode="max", patience=cfg.early_stopping, restore_best_weights=False))
    if cfg.ema:
        callbacks.append(EMAWeightsBack(ema))
    # Last, so the epoch's checkpoint and history row exist before the backup says it is done.
    callbacks.append(keras.callbacks.BackupAndRestore(str(run_dir / "backup"),
                                                      double_checkpoint=True))
    return callbacks


def _prepare_worker_dir(cfg: TrainConfig, scratch: Path) -> Path:
    """A non-chief worker's stand-in for the run directory: empty, or on resume a copy of the
    chief's config, split, history and backup (read from ``cfg.output``)."""
    if cfg.output is None:
        raise ValueError("TrainConfig.output (the run directory) is not set")
    if cfg.resume:
        run_dir = Path(cfg.output)
        if not (run_dir / "config.json").exists():
            raise data_lib.DataError(
                f"{run_dir}: no config.json here, nothing to resume (every worker reads the "
                "chief's run directory on resume: put --output on storage they share)")
        check_run_dir(cfg)
        for name in ("config.json", "split.json", "history.csv"):
            if (run_dir / name).exists():
                shutil.copyfile(run_dir / name, scratch / name)
        if (run_dir / "backup").is_dir():
            shutil.copytree(run_dir / "backup", scratch / "backup")
    return scratch


def _datasets(cfg: TrainConfig, export: tfrecord.TFRecordExport | None, arrays: dict | None,
              replicas: int) -> tuple[tf.data.Dataset, tf.data.Dataset, int | None]:
    """Training and validation batches of the global batch size, and steps per epoch (``None``:
    one pass over the training split, the single-replica case)."""
    spread = {"repeat": True, "drop_remainder": True} if replicas > 1 else {}
    if cfg.patch_size:
        if export is not None:
            raise data_lib.DataError(f"{export.root}: patch training reads slices in memory; "
                                     "pass the dataset folder instead of a TFRecord export")
        images, masks = arrays["train"]
        train_ds = make_patch_dataset(
            images, masks, cfg.batch_size, cfg.patch_size, cfg.foreground_fraction,
            augment=cfg.augment, scale=cfg.augment_scale, gamma=cfg.augment_gamma,
            noise=cfg.augment_noise, seed=cfg.seed)
        val_ds = data_lib.make_dataset(*arrays["val"], batch_size=cfg.batch_size, shuffle=False)
        # An epoch shows as many patches as there are training slices, unless set.
        return train_ds, val_ds, (cfg.steps_per_epoch
                                  or max(1, -(-len(images) // cfg.batch_size)))
    if export is None:
        n_train = len(arrays["train"][0])
        train_ds = data_lib.make_dataset(*arrays["train"], batch_size=cfg.batch_size,
                                         shuffle=True, augment=cfg.augment, seed=cfg.seed,
                                         **spread)
        val_ds = data_lib.make_dataset(*arrays["val"], batch_size=cfg.batch_size, shuffle=False)
    else:
        n_train = export.counts["train"]
        train_ds = tfrecord.make_tfrecord_dataset(export, "train", cfg.batch_size, cfg.channels,
                                                  shuffle=True, augment=cfg.augment,
                                                  seed=cfg.seed, **spread)
        val_ds = tfrecord.make_tfrecord_dataset(export, "val", cfg.batch_size, cfg.channels,
                                                shuffle=False)
    return train_ds, val_ds, (max(1, n_train // cfg.batch_size) if replicas > 1 else None)


def _export_split(export: tfrecord.TFRecordExport, cfg: TrainConfig, run_dir: Path
                  ) -> dict[str, list[str]]:
    """The export's split (slice ids per split), copied into the run directory."""
    if export.image_size != cfg.image_size:
        raise data_lib.DataError(
            f"{export.root}: exported at {export.image_size}x{export.image_size}; train it with "
            f"--image-size {export.image_size} (or export again at {cfg.image_size})")
    if not (run_dir / "split.json").exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(export.root / "split.json", run_dir / "split.json")
    return export.split_ids()


def fit_verbosity(quiet: bool = False, stream=None) -> int:
    """``verbose`` of ``model.fit``: 0 (nothing) when ``quiet``; 1 (Keras' progress bar with
    ETA) when ``stream`` (default ``sys.stdout``) is a terminal; else 2 (one line per epoch,
    so logs written to files stay clean)."""
    if quiet:
        return 0
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return 1 if isatty is not None and isatty() else 2


def train(cfg: TrainConfig, log=print, quiet: bool = False) -> RunResult:
    """Run a full training as configured; see the module docstring for the outputs.

    Keras reports each epoch as :func:`fit_verbosity` says (``quiet``: not at all; ``log``
    still gets the run's summary lines). In a multi-worker cluster (``TF_CONFIG``) only the
    chief writes ``cfg.output``; every other worker works in a temporary directory, removed
    when it returns or fails.
    """
    if is_chief():
        return _train(cfg, check_run_dir(cfg), True, log, quiet)
    with tempfile.TemporaryDirectory(prefix="unet-keras-worker-") as scratch:
        log(f"{task_name()}: scratch {scratch} (removed at the end); the chief writes "
            f"{cfg.output}")
        return _train(cfg, _prepare_worker_dir(cfg, Path(scratch)), False, log, quiet)


def _train(cfg: TrainConfig, run_dir: Path, chief: bool, log, quiet: bool = False
           ) -> RunResult:
    """:func:`train` writing into ``run_dir`` (a non-chief worker: its temporary directory)."""
    arch = cfg.arch()
    if cfg.resume:
        _check_same_network(run_dir, arch)
    init_model = _init_model(cfg, arch)
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()

    data_path = cfg.data or str(data_lib.SAMPLE_DIR)
    log(f"data: {data_path}" + ("" if cfg.data else " (the bundled sample; pass --data for yours)"))
    export = tfrecord.open_export(data_path) if tfrecord.is_export(data_path) else None
    if export is None:
        slices, split, arrays = load_split_data(cfg, run_dir, fresh=not cfg.resume)
    else:
        slices, split, arrays = None, _export_split(export, cfg, run_dir), None
    log("split: " + ", ".join(f"{k} {len(v)}" for k, v in split.items()) + " slices")
    if not split.get("train") or not split.get("val"):
        raise data_lib.DataError(f"{data_path}: too few slices for a train and a val split")

    config_record = {"arch": arch.to_dict(), "train": cfg.to_dict(), "data_path": data_path,
                     "lineage": _lineage(cfg, run_dir)}
    if export is not None:
        config_record["data_source"] = export.source

    backup_dir = run_dir / "backup"
    history_path = run_dir / "history.csv"
    next_epoch = _restored_epoch(backup_dir) if cfg.resume else 0
    past = _trim_history(history_path, next_epoch) if cfg.resume else []
    if not cfg.resume and history_path.exists():
        history_path.unlink()
    best_so_far = max((r[MONITOR] for r in past if MONITOR in r), default=None)

    previous_policy = keras.mixed_precision.global_policy()
    policy = resolve_policy(cfg.mixed_precision, arch, cfg.batch_size,
                            cfg.patch_size or cfg.image_size, log)
    config_record["policy"] = policy
    write_text_atomic(run_dir / "config.json", json.dumps(config_record, indent=2))
    keras.mixed_precision.set_global_policy(policy)
    try:
        strategy = select_strategy(cfg.strategy)
        replicas, workers = strategy.num_replicas_in_sync, cluster_size()
        if cfg.batch_size % replicas:
            raise ValueError(f"batch size {cfg.batch_size} is the global batch; it must be a "
                             f"multiple of the {replicas} replicas")
        with strategy.scope():
            model = compile_model(build_unet(arch, batchnorm="fused"), cfg, replicas)
            if init_model is not None and next_epoch == 0:
                model.set_weights(init_model.get_weights())
        train_ds, val_ds, steps = _datasets(cfg, export, arrays, replicas)
        callbacks = _callbacks(cfg, run_dir, best_so_far, past)
        if replicas > 1:
            # outside the scope: not distributed
            twin = compile_model(build_unet(arch, batchnorm="fused"), cfg)
            callbacks[:0] = [AverageBatchNormStatistics(strategy),
                             UndistributedValidation(twin, val_ds)]
        if workers > 1:
            fix_keras_multiworker(model, strategy)
        log(f"model: {model.count_params():,} parameters; {cfg.epochs} epochs, "
            f"batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr}, loss {cfg.loss}"
            + f", {policy}" + (f", patches {cfg.patch_size}" if cfg.patch_size else "")
            + (f", from {cfg.init_from}" if cfg.init_from else ""))
        if replicas > 1:
            log(f"{task_name()}: {type(strategy).__name__}, {replicas} replicas on {workers} "
                f"worker(s), {cfg.batch_size // replicas} images per replica, {steps} steps "
                "per epoch")
        start = time.time()
        # Also when nothing is left to run: BackupAndRestore then restores the weights.
        with peer_failures(cfg.output) if workers > 1 else contextlib.nullcontext():
            model.fit(train_ds, validation_data=None if replicas > 1 else val_ds,
                      epochs=cfg.epochs, verbose=fit_verbosity(quiet), shuffle=False,
                      steps_per_epoch=steps, callbacks=callbacks)
        elapsed = time.time() - start
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    if workers > 1:
        log(f"{task_name()}: weights {weights_digest(model)}")
    history = read_history(history_path)
    best_row = max(history, key=lambda r: r.get(MONITOR, -np.inf))
    if not chief:
        return RunResult(Path(cfg.output), history, int(best_row["epoch"]),
                         float(best_row[MONITOR]))
    meta = ModelMeta(arch=arch.to_dict(), image_size=cfg.image_size)
    export_float32(model, arch, run_dir / "last.keras", meta)
    best_weights = run_dir / "checkpoints" / "best.weights.h5"
    if best_weights.exists():
        model.load_weights(best_weights)
    best = export_float32(model, arch, run_dir / "model.keras", meta)
    if slices is not None:
        _choose_threshold(run_dir, [slices[i] for i in split["val"]], arrays["val"], cfg, log)
    _export_torch(best, run_dir / "model.pt", log)
    from unet_keras import viz  # matplotlib only when a run finishes

    viz.plot_curves(history, run_dir / "curves.png")
    write_text_atomic(run_dir / "summary.md",
                      _summary(cfg, data_path, split, best_row, len(history), elapsed))
    log(f"best epoch {best_row['epoch'] + 1}: val Dice {best_row[MONITOR]:.4f}; run in {run_dir}")
    return RunResult(run_dir, history, int(best_row["epoch"]), float(best_row[MONITOR]))


def _choose_threshold(run_dir: Path, val_slices: list, val_arrays: tuple, cfg: TrainConfig,
                      log) -> None:
    """The decision threshold of ``model.keras``, chosen on the validation split
    (:func:`unet_keras.evaluation.calibrate_threshold`, which writes ``threshold.json``)."""
    from unet_keras.evaluation import calibrate_threshold

    calibrate_threshold(run_dir / "model.keras", val_slices, *val_arrays,
                        image_size=cfg.image_size, log=log)


def _check_same_network(run_dir: Path, arch: ArchConfig) -> None:
    """A resumed run must build the network its backup holds."""
    saved = ArchConfig.from_dict(json.loads((run_dir / "config.json").read_text())["arch"])
    if saved != arch:
        changed = sorted(k for k, v in arch.to_dict().items() if saved.to_dict()[k] != v)
        raise ValueError(f"{run_dir}: resuming needs the run's own network; these settings "
                         f"differ from its config.json: {', '.join(changed)}")


def _init_model(cfg: TrainConfig, arch: ArchConfig) -> keras.Model | None:
    """The model whose weights start the run (``init_from``), checked against ``arch``."""
    if not cfg.init_from:
        return None
    from unet_keras.inference import load_model
    from unet_keras.model import arch_config_of

    source = load_model(cfg.init_from)
    theirs = arch_config_of(source).replace(input_shape=arch.input_shape)
    if theirs != arch:
        raise ValueError(f"{cfg.init_from}: its architecture {theirs.to_dict()} differs from "
                         f"this run's {arch.to_dict()}; --init-from needs the same network")
    return source


def _lineage(cfg: TrainConfig, run_dir: Path) -> list[dict]:
    """The sittings that led to this run: the ``init_from`` model's run (its own lineage
    first, read from its ``config.json`` when it sits in a run directory), then this one."""
    chain: list[dict] = []
    if cfg.init_from:
        source = Path(cfg.init_from)
        record = (source if source.is_dir() else source.parent) / "config.json"
        if record.exists():
            chain = json.loads(record.read_text()).get("lineage", [])
        else:
            chain = [{"model": str(source)}]
    here = {"run": str(run_dir), "init_from": cfg.init_from}
    return [*chain, here] if not chain or chain[-1] != here else chain


def _export_torch(model: keras.Model, path: Path, log) -> None:
    try:
        from unet_keras import torch_mirror
    except ImportError:
        return  # torch is an optional extra
    torch_mirror.save_pt(torch_mirror.keras_to_torch(model), path)
    log(f"wrote {path}")


def _summary(cfg: TrainConfig, data_path: str, split: dict, best: dict, epochs_done: int,
             elapsed: float) -> str:
    counts = ", ".join(f"{k}: {len(v)}" for k, v in split.items())
    metrics = " | ".join(f"{k} {best[k]:.4f}" for k in
                         ("dice_coef", "iou_coef", "accuracy", "val_dice_coef", "val_iou_coef",
                          "val_accuracy") if k in best)
    return (
        f"# Training run\n\n"
        f"- data: `{data_path}` ({counts} slices)\n"
        f"- model: base {cfg.base_filters}, depth {cfg.depth}, {cfg.image_size}x{cfg.image_size}"
        f"x{cfg.channels}, attention {cfg.attention}, dropout {cfg.dropout}\n"
        f"- training: {epochs_done} epochs, batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr}, "
        f"loss {cfg.loss}, augment {cfg.augment}, mixed precision {cfg.mixed_precision}, "
        f"seed {cfg.seed}\n"
        f"- best epoch (on validation Dice): {best['epoch'] + 1}: {metrics}\n"
        f"- time this session: {elapsed / 60:.1f} min\n"
    )
