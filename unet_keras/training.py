"""Training: data -> split -> tf.data -> compiled U-Net -> Keras callbacks -> run directory.

:func:`train` runs a training as a sequence of named phases (see :func:`_train`), in this
order, which is also the order in which they consume random numbers:

1. :func:`init_weights` -- the model whose weights start the run (``init_from``), checked;
2. :func:`seed_everything` -- Keras' seeds and, on request, TensorFlow's op determinism;
3. :func:`load_data` -- the dataset or TFRecord export, its split, the preprocessed arrays
   (and the hard-example weights of the training slices, ``hard_examples``);
4. :func:`restore_point` -- where a resumed run continues (epoch, history so far, best Dice);
5. :func:`choose_precision` -- the dtype policy (``auto`` times both on this machine);
6. :func:`choose_strategy` -- the ``tf.distribute`` strategy and its number of replicas;
7. :func:`build_model` -- the U-Net (fused batch norm), compiled in the strategy's scope;
8. :func:`build_datasets` -- the training and validation batches;
9. :func:`make_callbacks` -- checkpoint, logs, schedule, budgets, backup for ``--resume``;
10. :func:`fit` -- ``model.fit``;
11. :func:`export_models` -- ``last.keras``, ``model.keras`` (best epoch), its threshold, ``.pt``;
12. :func:`report` -- ``curves.png`` and ``summary.md``.

``config.json`` is written between 5 and 6, once the dtype policy is known. Phases 5-8 are
where the run meets its backend (dtype policy, distribution, ``tf.data``); everything about
files is in :mod:`unet_keras.run_dir`, which lists what a run directory holds. Everything
is written atomically; a run killed at any moment continues with ``resume=True`` from its
last finished epoch.

The model trains with TensorFlow's fused BatchNormalization kernel
(:class:`unet_keras.batchnorm.FusedBatchNormalization`, same weights and math, about 20% faster
under ``mixed_bfloat16``); the exports are rebuilt with Keras' own layer, and checkpoints hold
weights only, so no file depends on the fused layer.

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
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np

from unet_keras import backend
from unet_keras import data as data_lib
from unet_keras.config import ArchConfig, TrainConfig
from unet_keras.data import loader
from unet_keras.data.hard_examples import hard_example_weights, read_dice
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
from unet_keras.inference import save_model
from unet_keras.losses import get_loss
from unet_keras.metrics import segmentation_metrics
from unet_keras.model import arch_config_of, build_unet
from unet_keras.model_meta import ModelMeta
from unet_keras.optimizers import build_optimizer
from unet_keras.precision import resolve_policy
from unet_keras.run_dir import (
    RunDir,
    check_run_dir,
    config_record,
    init_overlap,
    monitor_key,
    prepare_worker_dir,
    read_history,
    restored_epoch,
    slice_key,
    summary_markdown,
    trim_history,
    write_config,
    write_summary,
)
from unet_keras.schedule import Budget, EMAWeights, EMAWeightsBack
from unet_keras.scoring import MISS_DICE, calibrate_model

if TYPE_CHECKING:
    import tensorflow as tf

    from unet_keras.data import tfrecord

Log = Callable[[str], object]


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
    best_value: float  #: of ``monitor``
    monitor: str  #: the logged key that picked the best epoch, e.g. ``val_dice_coef``


@dataclass(frozen=True)
class RestorePoint:
    """Where a run starts: ``next_epoch`` (0 for a new run), the history rows of the epochs
    already done and the best validation Dice among them (``None``: none yet)."""

    next_epoch: int
    past: list[dict[str, float]]
    best_so_far: float | None


@dataclass
class RunData:
    """What :func:`load_data` read: the data's path, and either a TFRecord ``export`` (split
    as exported, read by ``tf.data``) or the ``slices`` with their ``split`` and preprocessed
    ``arrays`` (``{split: (images, masks)}``)."""

    path: str
    split: dict[str, list]
    export: tfrecord.TFRecordExport | None = None
    slices: list[data_lib.Slice] | None = None
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    #: Sampling probabilities of the training slices (``hard_examples``), else ``None``.
    hard_weights: np.ndarray | None = None


def make_optimizer(cfg: TrainConfig) -> keras.optimizers.Optimizer:
    """The optimizer ``cfg.optimizer`` (:data:`unet_keras.optimizers.OPTIMIZERS`) at
    ``cfg.lr``; with ``cfg.ema`` > 0 it also keeps an exponential moving average of the
    weights (momentum ``ema``)."""
    return build_optimizer(cfg.optimizer, cfg.lr, cfg.momentum, cfg.ema)


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
    with precision_policy("float32"):
        clean = build_unet(arch)
    clean.set_weights(model.get_weights())
    save_model(clean, path, meta)
    return clean


def fit_verbosity(quiet: bool = False, stream=None) -> int:
    """``verbose`` of ``model.fit``: 0 (nothing) when ``quiet``; 1 (Keras' progress bar with
    ETA) when ``stream`` (default ``sys.stdout``) is a terminal; else 2 (one line per epoch,
    so logs written to files stay clean)."""
    if quiet:
        return 0
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return 1 if isatty is not None and isatty() else 2


def train(cfg: TrainConfig, log: Log = print, quiet: bool = False,
          callbacks: Sequence[keras.callbacks.Callback] = ()) -> RunResult:
    """Run a full training as configured; see the module docstring for the phases and
    :mod:`unet_keras.run_dir` for the outputs. A run to resume comes from
    :func:`unet_keras.config.resume_config` (which keeps the run's network).

    Keras reports each epoch as :func:`fit_verbosity` says (``quiet``: not at all; ``log``
    still gets the run's summary lines). In a multi-worker cluster (``TF_CONFIG``) only the
    chief writes ``cfg.output``; every other worker works in a temporary directory, removed
    when it returns or fails. ``callbacks`` are added to the run's own (e.g.
    :class:`unet_keras.throughput.Throughput`).
    """
    if is_chief():
        return _train(cfg, check_run_dir(cfg), True, log, quiet, callbacks)
    with tempfile.TemporaryDirectory(prefix="unet-keras-worker-") as scratch:
        log(f"{task_name()}: scratch {scratch} (removed at the end); the chief writes "
            f"{cfg.output}")
        return _train(cfg, prepare_worker_dir(cfg, Path(scratch)), False, log, quiet,
                      callbacks)


def _train(cfg: TrainConfig, run_dir: Path, chief: bool, log: Log, quiet: bool = False,
           extra_callbacks: Sequence[keras.callbacks.Callback] = ()) -> RunResult:
    """:func:`train` writing into ``run_dir`` (a non-chief worker: its temporary directory),
    phase by phase."""
    run = RunDir(run_dir)
    init_model = init_weights(cfg)
    seed_everything(cfg)
    data = load_data(cfg, run_dir, log)
    record = config_record(cfg, run_dir, data.path,
                           data.export.source if data.export is not None else None)
    start = restore_point(cfg, run)
    policy = choose_precision(cfg, log)
    record["policy"] = policy
    record["backend"] = backend.name()
    log(backend.describe())
    write_config(run_dir, record)
    with precision_policy(policy):
        strategy, replicas, workers = choose_strategy(cfg)
        model = build_model(cfg, strategy, replicas,
                            init_model if start.next_epoch == 0 else None)
        train_ds, val_ds, steps = build_datasets(cfg, data.export, data.arrays, replicas,
                                                 data.hard_weights)
        callbacks = make_callbacks(cfg, run, start)
        callbacks[-1:-1] = list(extra_callbacks)  # the backup stays last
        if replicas > 1:
            # outside the scope: not distributed
            twin = compile_model(build_unet(cfg.arch, batchnorm="fused"), cfg)
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
        elapsed = fit(cfg, model, train_ds, None if replicas > 1 else val_ds, steps,
                      callbacks, workers, quiet)

    if workers > 1:
        log(f"{task_name()}: weights {weights_digest(model)}")
    history = read_history(run.history)
    monitor = monitor_key(cfg)
    best_row = max(history, key=lambda r: r.get(monitor, -np.inf))
    if not chief:
        return RunResult(Path(cfg.output), history, int(best_row["epoch"]),
                         float(best_row[monitor]), monitor)
    export_models(cfg, model, run, data, log)
    report(cfg, run, data, history, best_row, elapsed)
    log(f"best epoch {best_row['epoch'] + 1}: {monitor} {best_row[monitor]:.4f}; run in {run_dir}")
    return RunResult(run_dir, history, int(best_row["epoch"]), float(best_row[monitor]),
                     monitor)


# --- the phases, in the order _train runs them --------------------------------------------


def init_weights(cfg: TrainConfig) -> keras.Model | None:
    """The model whose weights start the run (``init_from``), checked against ``cfg.arch``
    (the input size aside: it may be trained at another)."""
    if not cfg.init_from:
        return None
    from unet_keras.inference import load_model

    source = load_model(cfg.init_from)
    theirs = arch_config_of(source).replace(input_shape=cfg.arch.input_shape)
    if theirs != cfg.arch:
        raise ValueError(f"{cfg.init_from}: its architecture {theirs.to_dict()} differs from "
                         f"this run's {cfg.arch.to_dict()}; --init-from needs the same network")
    return source


def seed_everything(cfg: TrainConfig) -> None:
    """Seed Python, numpy and the backend from ``cfg.seed``; with ``cfg.deterministic`` also
    TensorFlow's op determinism (the JAX backend is deterministic on the CPU as it is; under
    PyTorch, ``torch.use_deterministic_algorithms``)."""
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic and backend.is_tensorflow():
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif cfg.deterministic and backend.name() == "torch":
        import torch

        torch.use_deterministic_algorithms(True)


def load_data(cfg: TrainConfig, run_dir: Path, log: Log) -> RunData:
    """Read the data: a TFRecord export (its own split, copied into the run directory) or a
    dataset split by :func:`unet_keras.data.splits.load_split_data` (a resumed run reuses its
    ``split.json``) and preprocessed.

    Raises:
        DataError: unreadable data, or too few slices for a train and a val split.
    """
    path = cfg.data or str(data_lib.SAMPLE_DIR)
    log(f"data: {path}" + ("" if cfg.data else " (the bundled sample; pass --data for yours)"))
    if (Path(path) / "tfrecord.json").is_file():  # data.tfrecord.MANIFEST: an export
        if not backend.is_tensorflow():
            raise data_lib.DataError(f"{path}: a TFRecord export is read by tf.data, i.e. the "
                                     f"TensorFlow backend (this is {backend.name()}); pass the "
                                     "dataset folder it was made from")
        from unet_keras.data import tfrecord

        if cfg.patch_size:  # refused before the export's split is copied into the run
            raise data_lib.DataError(f"{path}: patch training reads slices in memory; pass "
                                     "the dataset folder instead of a TFRecord export")
        export = tfrecord.open_export(path)
        data = RunData(path, _export_split(export, cfg, run_dir), export=export)
    else:
        scores = _hard_example_scores(cfg, run_dir)  # a bad file is refused before any write
        slices, split, arrays = load_split_data(cfg, run_dir, fresh=not cfg.resume)
        data = RunData(path, split, slices=slices, arrays=arrays)
        overlap = init_overlap(cfg, {name: [slices[i].path for i in idx]
                                     for name, idx in split.items()})
        if overlap:
            _abandon(cfg, run_dir)
            name, hits = next(iter(overlap.items()))
            raise data_lib.DataError(
                f"{cfg.init_from}: that model was trained on {len(hits)} of this run's {name} "
                f"slices (e.g. {slice_key(hits[0])}; its split.json says so), so this run's "
                f"{name} numbers would be inflated; split as its run did (the same "
                "--split-by, --val-fraction, --test-fraction and --seed)")
        if scores is not None:
            data.hard_weights = _hard_weights(cfg, run_dir, slices, split, scores, log)
    log("split: " + ", ".join(f"{k} {len(v)}" for k, v in data.split.items()) + " slices")
    if not data.split.get("train") or not data.split.get("val"):
        raise data_lib.DataError(f"{path}: too few slices for a train and a val split")
    return data


def _hard_example_scores(cfg: TrainConfig, run_dir: Path
                         ) -> tuple[dict[str, float], Path] | None:
    """The ``hard_examples`` scores (:func:`read_dice`) and the file they were read from: the
    run's own copy when it resumes (the file it started with), else the file named."""
    if not cfg.hard_examples:
        return None
    copy = RunDir(run_dir).hard_examples
    source = copy if cfg.resume and copy.is_file() else Path(cfg.hard_examples)
    return read_dice(source), source


def _hard_weights(cfg: TrainConfig, run_dir: Path, slices: list[data_lib.Slice],
                  split: dict[str, list[int]], scores: tuple[dict[str, float], Path], log: Log
                  ) -> np.ndarray:
    """The training slices' sampling weights from ``scores`` (:func:`_hard_example_scores`),
    logged, with a copy of their file kept in the run directory (a file that scores none of
    them is refused)."""
    dice, source = scores
    ids = [slices[i].id for i in split["train"]]
    try:
        hard = hard_example_weights(ids, dice, source)
    except data_lib.DataError:
        _abandon(cfg, run_dir)
        raise
    copy = RunDir(run_dir).hard_examples
    if source.resolve() != copy.resolve():
        shutil.copyfile(source, copy)
    log(f"hard examples: {cfg.hard_fraction:.0%} of the patches from training slices weighted "
        f"by 1 - Dice in {source} ({len(hard.scores)} of {len(ids)} scored, "
        f"{int(np.sum(hard.scores < MISS_DICE))} of them misses, Dice < {MISS_DICE})")
    return hard.weights


def _abandon(cfg: TrainConfig, run_dir: Path) -> None:
    """Undo a new run's start (the ``split.json`` just written, and its directory if that
    leaves it empty) when its data is refused before training."""
    if not cfg.resume:
        RunDir(run_dir).split.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only if nothing else is in it


def _export_split(export: tfrecord.TFRecordExport, cfg: TrainConfig, run_dir: Path
                  ) -> dict[str, list[str]]:
    """The export's split (slice ids per split), copied into the run directory."""
    if export.image_size != cfg.image_size:
        raise data_lib.DataError(
            f"{export.root}: exported at {export.image_size}x{export.image_size}; train it with "
            f"--image-size {export.image_size} (or export again at {cfg.image_size})")
    split_file = RunDir(run_dir).split
    if not split_file.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(export.root / "split.json", split_file)
    return export.split_ids()


def restore_point(cfg: TrainConfig, run: RunDir) -> RestorePoint:
    """Where the run starts: a resumed run continues after the epoch its backup holds (the
    history is trimmed to the epochs done); a new run starts at 0 with no history."""
    if not cfg.resume:
        if run.history.exists():
            run.history.unlink()
        return RestorePoint(0, [], None)
    next_epoch = restored_epoch(run.backup)
    past = trim_history(run.history, next_epoch)
    monitor = monitor_key(cfg)
    best = max((r[monitor] for r in past if monitor in r), default=None)
    return RestorePoint(next_epoch, past, best)


def choose_precision(cfg: TrainConfig, log: Log) -> str:
    """The Keras dtype policy to train in (``float32`` or ``mixed_bfloat16``; ``auto`` times
    both on a few steps of this network, :func:`unet_keras.precision.resolve_policy`)."""
    return resolve_policy(cfg.mixed_precision, cfg.arch, cfg.batch_size,
                          cfg.patch_size or cfg.image_size, log)


@contextlib.contextmanager
def precision_policy(policy: str) -> Iterator[None]:
    """Keras' global dtype policy set to ``policy`` inside the block, restored after."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def choose_strategy(cfg: TrainConfig) -> tuple[tf.distribute.Strategy, int, int]:
    """``(strategy, replicas, workers)`` for ``cfg.strategy``
    (:func:`unet_keras.distribute.select_strategy`).

    Raises:
        ValueError: ``batch_size`` (the global batch) is not a multiple of the replicas.
    """
    strategy = select_strategy(cfg.strategy)
    replicas, workers = strategy.num_replicas_in_sync, cluster_size()
    if cfg.batch_size % replicas:
        raise ValueError(f"batch size {cfg.batch_size} is the global batch; it must be a "
                         f"multiple of the {replicas} replicas")
    return strategy, replicas, workers


def build_model(cfg: TrainConfig, strategy: tf.distribute.Strategy, replicas: int,
                init_model: keras.Model | None = None) -> keras.Model:
    """The U-Net of ``cfg.arch`` with the fused batch norm, compiled in ``strategy``'s scope,
    starting from ``init_model``'s weights when given."""
    with strategy.scope():
        model = compile_model(build_unet(cfg.arch, batchnorm=_batchnorm()), cfg, replicas)
        if init_model is not None:
            model.set_weights(init_model.get_weights())
    return model


def _batchnorm() -> str:
    """TensorFlow's fused batch norm kernel where it exists, else Keras' own layer."""
    return "fused" if backend.is_tensorflow() else "keras"


def build_datasets(cfg: TrainConfig, export: tfrecord.TFRecordExport | None,
                   arrays: dict | None, replicas: int, hard_weights: np.ndarray | None = None,
                   ) -> tuple[tf.data.Dataset, tf.data.Dataset, int | None]:
    """Training and validation batches of the global batch size, and steps per epoch (``None``:
    one pass over the training split, the single-replica case): patches cut from the slices
    in memory (a ``cfg.hard_fraction`` of them from slices drawn by ``hard_weights`` when
    given), whole slices in memory, or a TFRecord export's shards."""
    if not backend.is_tensorflow():
        return _portable_datasets(cfg, arrays, hard_weights)
    from unet_keras.data import tfrecord
    from unet_keras.data.pipeline import make_patch_dataset

    spread = {"repeat": True, "drop_remainder": True} if replicas > 1 else {}
    if cfg.patch_size:  # from arrays in memory (load_data refuses an export)
        images, masks = arrays["train"]
        train_ds = make_patch_dataset(
            images, masks, cfg.batch_size, cfg.patch_size, cfg.foreground_fraction,
            augment=cfg.augment, scale=cfg.augment_scale, gamma=cfg.augment_gamma,
            noise=cfg.augment_noise, seed=cfg.seed, hard_weights=hard_weights,
            hard_fraction=cfg.hard_fraction)
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


def _portable_datasets(cfg: TrainConfig, arrays: dict, hard_weights: np.ndarray | None = None,
                       ) -> tuple[keras.utils.PyDataset, keras.utils.PyDataset, int]:
    """:func:`build_datasets` under JAX and PyTorch: the same batches from
    :mod:`unet_keras.data.loader` (numpy/OpenCV, one device)."""
    images, masks = arrays["train"]
    workers = min(8, os.cpu_count() or 1)
    if cfg.patch_size:
        steps = cfg.steps_per_epoch or max(1, -(-len(images) // cfg.batch_size))
        train_ds = loader.PatchBatches(
            images, masks, cfg.batch_size, cfg.patch_size, steps, cfg.foreground_fraction,
            augment=cfg.augment, scale=cfg.augment_scale, gamma=cfg.augment_gamma,
            noise=cfg.augment_noise, seed=cfg.seed, workers=workers,
            hard_weights=hard_weights, hard_fraction=cfg.hard_fraction)
    else:
        train_ds = loader.SliceBatches(images, masks, cfg.batch_size, shuffle=True,
                                       augment=cfg.augment, seed=cfg.seed, workers=workers)
    val_ds = loader.SliceBatches(*arrays["val"], batch_size=cfg.batch_size, shuffle=False)
    return train_ds, val_ds, len(train_ds)


def make_callbacks(cfg: TrainConfig, run: RunDir, start: RestorePoint) -> list:
    """The Keras callbacks of a run: budget and cosine schedule, weight EMA, best-epoch
    checkpoint, TensorBoard, ``history.csv``, plateau schedule, early stopping and, last, the
    backup that ``--resume`` restores."""
    callbacks = []
    if cfg.steps or cfg.time_budget or cfg.schedule == "cosine":
        last = start.past[-1] if start.past else {}
        callbacks.append(Budget(
            steps=cfg.steps, minutes=cfg.time_budget, warmup=cfg.warmup,
            peak_lr=cfg.lr if cfg.schedule == "cosine" else None,
            done_steps=int(last.get("steps", 0)), done_minutes=float(last.get("minutes", 0.0))))
    if cfg.ema:
        ema = EMAWeights()
        callbacks.append(ema)
    callbacks += [
        AtomicModelCheckpoint(
            str(run.best_weights), monitor=monitor_key(cfg), mode="max", save_best_only=True,
            save_weights_only=True, initial_value_threshold=start.best_so_far,
        ),
        keras.callbacks.CSVLogger(str(run.history), append=True),
    ]
    if backend.is_tensorflow():  # Keras' TensorBoard callback writes through TensorFlow
        callbacks.insert(-1, keras.callbacks.TensorBoard(log_dir=str(run.logs),
                                                         write_graph=False))
    if cfg.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitor_key(cfg), mode="max", factor=cfg.lr_factor,
            patience=cfg.lr_patience,
            min_lr=cfg.min_lr))
    if cfg.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor_key(cfg), mode="max", patience=cfg.early_stopping,
            restore_best_weights=False))
    if cfg.ema:
        callbacks.append(EMAWeightsBack(ema))
    # Last, so the epoch's checkpoint and history row exist before the backup says it is done.
    callbacks.append(keras.callbacks.BackupAndRestore(str(run.backup), double_checkpoint=True))
    return callbacks


def fit(cfg: TrainConfig, model: keras.Model, train_ds: tf.data.Dataset,
        val_ds: tf.data.Dataset | None, steps: int | None, callbacks: list, workers: int,
        quiet: bool) -> float:
    """``model.fit`` for ``cfg.epochs`` epochs (a lost worker ends it as
    :class:`~unet_keras.distribute.WorkerLostError`); returns the seconds it took."""
    start = time.time()
    # Also when nothing is left to run: BackupAndRestore then restores the weights.
    with peer_failures(cfg.output) if workers > 1 else contextlib.nullcontext():
        model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs,
                  verbose=fit_verbosity(quiet), shuffle=False, steps_per_epoch=steps,
                  callbacks=callbacks)
    return time.time() - start


def export_models(cfg: TrainConfig, model: keras.Model, run: RunDir, data: RunData,
                  log: Log) -> None:
    """``last.keras`` (the last epoch) and ``model.keras`` (the best), float32, with their
    :class:`~unet_keras.model_meta.ModelMeta`; the decision threshold, flip TTA and
    post-processing chosen on the validation split (slices in memory only) and the PyTorch
    twin ``model.pt``."""
    meta = ModelMeta(arch=cfg.arch.to_dict(), image_size=cfg.image_size)
    export_float32(model, cfg.arch, run.last, meta)
    if run.best_weights.exists():
        model.load_weights(run.best_weights)
    best = export_float32(model, cfg.arch, run.model, meta)
    if data.slices is not None:
        calibrate_model(run.model, [data.slices[i] for i in data.split["val"]],
                        *data.arrays["val"], image_size=cfg.image_size, log=log)
    _export_torch(best, run.torch_model, log)


def _export_torch(model: keras.Model, path: Path, log: Log) -> None:
    try:
        from unet_keras import torch_mirror
    except ImportError:
        return  # torch is an optional extra
    torch_mirror.save_pt(torch_mirror.keras_to_torch(model), path)
    log(f"wrote {path}")


def report(cfg: TrainConfig, run: RunDir, data: RunData, history: list[dict[str, float]],
           best_row: dict[str, float], elapsed: float) -> None:
    """``curves.png`` (the history) and ``summary.md`` (what was trained, how well)."""
    from unet_keras import viz  # matplotlib only when a run finishes

    viz.plot_curves(history, run.curves)
    write_summary(run.root, summary_markdown(cfg, data.path, data.split, best_row,
                                             len(history), elapsed))
