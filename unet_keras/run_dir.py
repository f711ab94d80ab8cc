"""The run directory of a training run: where each file goes, and the records kept in it.

A run directory (``TrainConfig.output``) holds::

    config.json      the resolved TrainConfig and ArchConfig (+ which data was used)
    split.json       which files / patients went to train, val and test
    hard_examples.csv  the --hard-examples scores the run sampled by (read on --resume)
    model.keras      best epoch on validation Dice, exported in float32
    last.keras       the last epoch, float32
    model.pt         the PyTorch twin of model.keras (when torch is installed)
    history.csv      one row per epoch (Keras CSVLogger)
    curves.png       accuracy, IoU, Dice and loss, train vs val
    logs/            TensorBoard
    summary.md       what was trained on what, and how well
    checkpoints/     best.weights.h5: the best epoch so far
    backup/          Keras BackupAndRestore state while a run is unfinished (for --resume)

:class:`RunDir` names these paths; the functions here check a directory before a run starts
or resumes (:func:`check_run_dir`), read and trim ``history.csv``, and write ``config.json``
and ``summary.md``. Every record is written atomically (:mod:`unet_keras.atomic`).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unet_keras.atomic import atomic_path, write_text_atomic
from unet_keras.config import TrainConfig
from unet_keras.data import DataError


def monitor_key(cfg: TrainConfig) -> str:
    """The logged key that picks the best epoch (checkpoint, plateau, early stopping):
    ``val_`` + ``cfg.monitor``."""
    return f"val_{cfg.monitor}"


@dataclass(frozen=True)
class RunDir:
    """The paths of a run directory rooted at ``root`` (see the module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def split(self) -> Path:
        return self.root / "split.json"

    @property
    def hard_examples(self) -> Path:
        return self.root / "hard_examples.csv"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def backup(self) -> Path:
        return self.root / "backup"

    @property
    def best_weights(self) -> Path:
        return self.root / "checkpoints" / "best.weights.h5"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def model(self) -> Path:
        return self.root / "model.keras"

    @property
    def last(self) -> Path:
        return self.root / "last.keras"

    @property
    def torch_model(self) -> Path:
        return self.root / "model.pt"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def summary(self) -> Path:
        return self.root / "summary.md"


def read_history(path: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of a Keras ``history.csv`` as dicts of floats (``epoch`` as int)."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (int(v) if k == "epoch" else float(v)) for k, v in r.items()} for r in rows]


def trim_history(path: Path, next_epoch: int) -> list[dict[str, float]]:
    """Drop rows of epochs that the restored state has not finished (no duplicates)."""
    rows = [r for r in read_history(path) if r["epoch"] < next_epoch]
    if path.exists():
        with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
            if rows:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
    return rows


def restored_epoch(backup_dir: Path) -> int:
    """The epoch a resumed run continues from: what its BackupAndRestore state says (its
    ``.bkp`` copy when the current one is unreadable), 0 without a backup."""
    meta = backup_dir / "training_metadata.json"
    for candidate in (meta, meta.with_name(meta.name + ".bkp")):
        try:
            return int(json.loads(candidate.read_text())["epoch"])
        except (OSError, ValueError, KeyError):
            continue
    return 0


def check_backup(backup_dir: Path) -> None:
    """Refuse a resume whose BackupAndRestore state cannot be read, before any file is
    touched: at least one copy of the metadata and of the weights (``.bkp`` is the previous
    epoch's) must be readable."""
    if not backup_dir.is_dir():
        return
    advice = ("start again with a new --output (this run's best epoch so far is in "
              f"{RunDir(backup_dir.parent).best_weights})")
    meta = backup_dir / "training_metadata.json"
    readable_meta = []
    for candidate in (meta, meta.with_name(meta.name + ".bkp")):
        try:
            int(json.loads(candidate.read_text())["epoch"])
            readable_meta.append(candidate)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if not readable_meta:
        raise DataError(f"{meta}: the backup of the last finished epoch is unreadable "
                        f"(and so is its .bkp copy); {advice}")
    weights = backup_dir / "latest.weights.h5"
    import h5py

    for candidate in (weights, weights.with_name(weights.name + ".bkp")):
        try:
            with h5py.File(candidate, "r"):
                return
        except OSError:
            continue
    raise DataError(f"{weights}: the backed-up weights are unreadable (and so is "
                    f"their .bkp copy); {advice}")


def check_run_dir(cfg: TrainConfig) -> Path:
    """The run directory of ``cfg``, checked but not created: a new run needs a place with no
    run in it; a resume needs an unfinished run with a readable backup. Nothing is written
    (the directory is made when the first file is, once the inputs have been read)."""
    if cfg.output is None:
        raise ValueError("TrainConfig.output (the run directory) is not set")
    run = RunDir(Path(cfg.output))
    if run.root.exists() and not run.root.is_dir():
        raise ValueError(f"{run.root}: --output is a file, not a directory")
    if cfg.resume:
        if not run.config.exists():
            raise DataError(f"{run.root}: no config.json here, nothing to resume")
        if not run.backup.exists() and run.model.exists():
            raise ValueError(f"{run.root}: this run has finished; there is nothing to resume")
        check_backup(run.backup)
    elif run.config.exists():
        raise ValueError(
            f"{run.root}: a run already exists here; pass --resume to continue it or choose "
            "another --output"
        )
    return run.root


def prepare_worker_dir(cfg: TrainConfig, scratch: Path) -> Path:
    """A non-chief worker's stand-in for the run directory: empty, or on resume a copy of the
    chief's config, split, history and backup (read from ``cfg.output``)."""
    if cfg.output is None:
        raise ValueError("TrainConfig.output (the run directory) is not set")
    if cfg.resume:
        chief = RunDir(Path(cfg.output))
        if not chief.config.exists():
            raise DataError(
                f"{chief.root}: no config.json here, nothing to resume (every worker reads the "
                "chief's run directory on resume: put --output on storage they share)")
        check_run_dir(cfg)
        for source in (chief.config, chief.split, chief.history):
            if source.exists():
                shutil.copyfile(source, scratch / source.name)
        if chief.backup.is_dir():
            shutil.copytree(chief.backup, scratch / chief.backup.name)
    return scratch


def slice_key(path: str) -> str:
    """A slice's name across machines: the last three parts of its file's path (dataset
    folder, subfolder, file: ``figshare-pool-256/images/130.png``)."""
    return "/".join(Path(path).parts[-3:])


def init_overlap(cfg: TrainConfig, split_paths: dict[str, list[str]]) -> dict[str, list[str]]:
    """The slices of this run's ``val`` and ``test`` splits that the ``init_from`` model was
    trained on, by split (read from the ``split.json`` beside that model; nothing when there
    is none): a second sitting validated on them would pick its checkpoint and threshold on
    slices its weights already fit, and report inflated numbers."""
    if not cfg.init_from:
        return {}
    source = Path(cfg.init_from)
    record = RunDir(source if source.is_dir() else source.parent).split
    if not record.is_file():
        return {}
    try:
        trained = json.loads(record.read_text())["splits"]["train"]["paths"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{record}: unreadable split of the --init-from model ({exc})") from exc
    seen = {slice_key(p) for p in trained}
    return {name: hits for name in ("val", "test")
            if (hits := [p for p in split_paths.get(name, []) if slice_key(p) in seen])}


def lineage(cfg: TrainConfig, run_dir: Path) -> list[dict]:
    """The sittings that led to this run: the ``init_from`` model's run (its own lineage
    first, read from its ``config.json`` when it sits in a run directory), then this one."""
    chain: list[dict] = []
    if cfg.init_from:
        source = Path(cfg.init_from)
        record = RunDir(source if source.is_dir() else source.parent).config
        if record.exists():
            chain = json.loads(record.read_text()).get("lineage", [])
        else:
            chain = [{"model": str(source)}]
    here = {"run": str(run_dir), "init_from": cfg.init_from}
    return [*chain, here] if not chain or chain[-1] != here else chain


def config_record(cfg: TrainConfig, run_dir: Path, data_path: str,
                  data_source: str | None = None) -> dict[str, Any]:
    """What ``config.json`` records: the network (``arch``), every training setting
    (``train``, the network nested in it too), the data read, and the run's lineage; the
    dtype policy is added once chosen (:func:`write_config`)."""
    record: dict[str, Any] = {"arch": cfg.arch.to_dict(), "train": cfg.to_dict(),
                              "data_path": data_path, "lineage": lineage(cfg, run_dir)}
    if data_source is not None:
        record["data_source"] = data_source
    return record


def write_config(run_dir: Path, record: dict[str, Any]) -> None:
    """Write ``config.json`` (atomically)."""
    write_text_atomic(RunDir(run_dir).config, json.dumps(record, indent=2))


def summary_markdown(cfg: TrainConfig, data_path: str, split: dict, best: dict,
                     epochs_done: int, elapsed: float) -> str:
    """``summary.md``: what was trained on what data, and its best epoch's metrics."""
    counts = ", ".join(f"{k}: {len(v)}" for k, v in split.items())
    metrics = " | ".join(f"{k} {best[k]:.4f}" for k in
                         ("dice_coef", "iou_coef", "accuracy", "val_dice_coef", "val_iou_coef",
                          "val_accuracy", "val_dice_per_image") if k in best)
    arch = cfg.arch
    return (
        f"# Training run\n\n"
        f"- data: `{data_path}` ({counts} slices)\n"
        f"- model: base {arch.base_filters}, depth {arch.depth}, {cfg.image_size}x"
        f"{cfg.image_size}x{cfg.channels}, attention {arch.attention}, dropout {arch.dropout}\n"
        f"- training: {epochs_done} epochs, batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr}, "
        f"loss {cfg.loss}, augment {cfg.augment}, mixed precision {cfg.mixed_precision}, "
        f"seed {cfg.seed}\n"
        f"- best epoch (on {monitor_key(cfg)}): {best['epoch'] + 1}: {metrics}\n"
        f"- time this session: {elapsed / 60:.1f} min\n"
    )


def write_summary(run_dir: Path, text: str) -> None:
    """Write ``summary.md`` (atomically)."""
    write_text_atomic(RunDir(run_dir).summary, text)
