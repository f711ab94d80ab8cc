"""Distribution: which ``tf.distribute`` strategy a run uses, and which process is the chief."""

from __future__ import annotations

import json
import os

import tensorflow as tf


def select_strategy(name: str) -> tf.distribute.Strategy:
    """``one`` (default device), ``mirrored`` (all local devices), ``multiworker``
    (``TF_CONFIG``), or ``auto`` = mirrored when more than one GPU is visible."""
    if name == "auto":
        name = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "one"
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief() -> bool:
    """True unless ``TF_CONFIG`` names this process a non-chief worker."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = tf_config.get("task", {})
    cluster = tf_config.get("cluster", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index") == 0 and "chief" not in cluster
