"""Distribution: which ``tf.distribute`` strategy a run uses, which process is the chief, and
what data-parallel training needs beyond the strategy scope.

* :func:`select_strategy`: ``one`` / ``mirrored`` (several local devices) / ``multiworker``
  (several processes or hosts, configured by the ``TF_CONFIG`` environment variable).
* :func:`cluster_size`, :func:`is_chief`, :func:`task_name`: what ``TF_CONFIG`` says about this
  process. The chief (task ``chief``, else ``worker`` 0) is the one that writes the run.
* :class:`ReplicaMeanLoss`: a batch-pooled loss counted once, not once per replica.
* :class:`AverageBatchNormStatistics`: keeps BatchNormalization's moving statistics equal on
  every replica (Keras updates each replica's copy from its own part of the batch).
* :class:`UndistributedValidation`: validation on a plain copy of the model, so no replica is
  ever handed an empty batch.
* :func:`fix_keras_multiworker`: two small Keras 3 bugs that stop ``fit`` under
  ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585), worked around for one model.
* :func:`peer_failures`: a lost worker surfaces as :class:`WorkerLostError` (a
  ``ConnectionError``, so the CLIs print one line and exit 2) instead of a TensorFlow traceback.
* :func:`weights_digest`: a short hash of a model's weights, to check workers agree.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import keras
import numpy as np

from unet_keras.backend import is_tensorflow

if is_tensorflow():
    import tensorflow as tf

# What a collective op raises when a peer process died or became unreachable.
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
               tf.errors.AbortedError, tf.errors.CancelledError) if is_tensorflow() else ()


class WorkerLostError(ConnectionError):
    """A multi-worker run lost contact with another worker; it can be resumed."""


def _tf_config() -> dict:
    text = os.environ.get("TF_CONFIG", "") or "{}"
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"TF_CONFIG is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    return config


def cluster_size() -> int:
    """Number of training processes (``chief`` + ``worker`` tasks) in ``TF_CONFIG``; 1 without."""
    cluster = _tf_config().get("cluster", {})
    return max(1, sum(len(cluster.get(job, [])) for job in ("chief", "worker")))


def is_chief() -> bool:
    """True unless ``TF_CONFIG`` names this process a non-chief worker."""
    tf_config = _tf_config()
    task = tf_config.get("task", {})
    cluster = tf_config.get("cluster", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index") == 0 and "chief" not in cluster


def task_name() -> str:
    """This process as ``TF_CONFIG`` names it, e.g. ``"worker 1"`` (``"local"`` without)."""
    task = _tf_config().get("task", {})
    return f"{task['type']} {task.get('index', 0)}" if task.get("type") else "local"


class SingleDevice:
    """What the JAX and PyTorch backends train with: one device, no ``tf.distribute`` (the
    ``scope()`` and ``num_replicas_in_sync`` that training asks a strategy for)."""

    num_replicas_in_sync = 1

    def scope(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


def _one() -> tf.distribute.Strategy:
    return tf.distribute.get_strategy() if is_tensorflow() else SingleDevice()


def _mirrored() -> tf.distribute.Strategy:
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def _multiworker() -> tf.distribute.Strategy:
    return tf.distribute.MultiWorkerMirroredStrategy()


def _auto() -> tf.distribute.Strategy:
    if not is_tensorflow():
        return SingleDevice()
    if cluster_size() > 1:
        return _multiworker()
    return _mirrored() if len(tf.config.list_logical_devices("GPU")) > 1 else _one()


@dataclass(frozen=True)
class StrategyChoice:
    """One ``--strategy``: ``make()`` builds it; ``description`` is its ``--help`` text;
    ``spans_workers``: it may run in a multi-worker cluster (``TF_CONFIG``), where any other
    strategy would make each process train alone."""

    make: Callable[[], tf.distribute.Strategy]
    description: str
    spans_workers: bool = False


#: The distribution strategies by name (``--strategy``), see :func:`select_strategy`.
STRATEGIES: dict[str, StrategyChoice] = {
    "auto": StrategyChoice(_auto, "multiworker when TF_CONFIG describes a cluster, else "
                                  "mirrored when several GPUs are visible, else one",
                           spans_workers=True),
    "one": StrategyChoice(_one, "the default device, no replication"),
    "mirrored": StrategyChoice(_mirrored, "one replica per local GPU (or per logical CPU "
                                          "device)"),
    "multiworker": StrategyChoice(_multiworker, "the cluster in TF_CONFIG",
                                  spans_workers=True),
}


def select_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy for ``--strategy name`` (:data:`STRATEGIES`).

    * ``one``: the default device, no replication.
    * ``mirrored``: one replica per local GPU or, on a machine without GPUs, per logical CPU
      device (just one unless configured with ``tf.config.set_logical_device_configuration``).
    * ``multiworker``: ``MultiWorkerMirroredStrategy`` over the cluster in ``TF_CONFIG``.
    * ``auto``: ``multiworker`` when ``TF_CONFIG`` describes more than one process, else
      ``mirrored`` when more than one GPU is visible, else ``one``.

    Must run before any other TensorFlow op when the result is multi-worker (collective ops are
    configured when TensorFlow's runtime starts).

    Raises:
        ValueError: unknown name, or ``one``/``mirrored`` while ``TF_CONFIG`` describes a
            multi-worker cluster (each process would silently train alone).
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {tuple(STRATEGIES)}, got {name!r}")
    workers = cluster_size()
    if workers > 1 and not STRATEGIES[name].spans_workers:
        raise ValueError(
            f"TF_CONFIG describes a cluster of {workers} processes, but --strategy {name} would "
            "train each of them alone; use --strategy multiworker (or auto), or unset TF_CONFIG"
        )
    if not is_tensorflow() and (name in ("mirrored", "multiworker") or workers > 1):
        raise ValueError(f"--strategy {name}" + (" in a TF_CONFIG cluster" if workers > 1 else "")
                         + f" needs tf.distribute, i.e. the TensorFlow backend; this process "
                         f"runs Keras on {keras.backend.backend()} (KERAS_BACKEND), which trains "
                         "on one device: use --strategy auto or one")
    return STRATEGIES[name].make()


class ReplicaMeanLoss(keras.losses.Loss):
    """``loss`` divided by the number of replicas in sync, for losses that return one pooled
    scalar per batch (the Dice losses).

    Gradients are summed across replicas, so each replica's loss must be divided by their
    number. Keras does that only when it reduces per-example values itself: a loss whose
    ``call`` returns a scalar is passed through unscaled (``keras.losses.loss.reduce_values``),
    which would make the step R times too large on R replicas and log R times the loss. With
    this wrapper the gradient is the mean of the replicas' gradients, and the logged loss
    (which Keras multiplies back by R) the mean of their pooled losses.
    """

    def __init__(self, loss: keras.losses.Loss):
        super().__init__(name=loss.name)
        self.loss = loss

    def call(self, y_true, y_pred):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return self.loss(y_true, y_pred) / replicas


def _batch_norm_layers(layer: keras.layers.Layer) -> Iterator[keras.layers.BatchNormalization]:
    if isinstance(layer, keras.layers.BatchNormalization):
        yield layer
    for child in getattr(layer, "layers", []):
        yield from _batch_norm_layers(child)


class AverageBatchNormStatistics(keras.callbacks.Callback):
    """At the end of every epoch, replace every replica's BatchNormalization moving mean and
    variance by their mean over all replicas (all workers).

    Under a mirrored strategy each replica normalises with the statistics of its own part of
    the global batch and updates its own copy of the moving statistics (Keras creates them with
    aggregation ``"none"``), so the copies drift apart and checkpoints, which read the first
    local replica, would differ between workers and describe a fraction of the data. Averaging
    costs one all-reduce of a few kilobytes. The averaged moving mean equals the moving average
    of global-batch means (it is linear in them); the averaged variance leaves out the spread
    between the replicas' batch means, which is small unless per-replica batches are tiny.
    """

    def __init__(self, strategy: tf.distribute.Strategy):
        super().__init__()
        self._strategy = strategy
        self._average = None

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        variables = [v.value for layer in _batch_norm_layers(model)
                     for v in (layer.moving_mean, layer.moving_variance)]

        def replica_step() -> None:
            context = tf.distribute.get_replica_context()
            means = context.all_reduce(tf.distribute.ReduceOp.MEAN,
                                       [tf.identity(v) for v in variables])
            for variable, mean in zip(variables, means, strict=True):
                variable.assign(mean)  # aggregation "none": each replica sets its own copy

        self._average = tf.function(lambda: self._strategy.run(replica_step))

    def on_epoch_end(self, epoch, logs=None) -> None:
        self._average()


class UndistributedValidation(keras.callbacks.Callback):
    """Validation for multi-replica training: at the end of every epoch each process evaluates
    the whole validation set on ``twin``, a plain (undistributed) compiled copy of the model
    given the trained weights, and adds ``val_<metric>`` to the epoch's logs.

    Keras' own ``validation_data`` would be split between the replicas like the training
    batches, and a last batch smaller than the number of replicas (or, multi-worker, a worker
    whose shards are used up first) leaves some replica an empty batch, which TensorFlow's
    oneDNN convolution on CPU mishandles (it returns the input's shape). The twin gives exactly
    the single-device numbers; the price is that every worker evaluates the full validation
    set. Place it after :class:`AverageBatchNormStatistics` and before the callbacks that read
    ``val_`` logs.
    """

    def __init__(self, twin: keras.Model, data: tf.data.Dataset):
        super().__init__()
        self.twin = twin
        self.data = data

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.twin.set_weights(self.model.get_weights())
        results = self.twin.evaluate(self.data, verbose=0, return_dict=True)
        logs.update({f"val_{name}": float(value) for name, value in results.items()})


def fix_keras_multiworker(model: keras.Model, strategy: tf.distribute.Strategy) -> None:
    """Let ``model.fit``/``evaluate`` run under a multi-worker ``MultiWorkerMirroredStrategy``.

    Keras 3 (3.15 here; keras-team/keras#20585) fails there in two places that only concern
    bookkeeping, not the training step:

    1. ``Model._maybe_symbolic_build`` averages a whole input batch with ``strategy.reduce``,
       which multi-worker strategies cannot do for a nested ``(images, masks)`` batch. The
       batch only lends its shapes to build the metrics, so the first local replica's part is
       used instead (for this model instance).
    2. The step's logs (scalars) are averaged with ``strategy.reduce("MEAN", v, axis=0)``,
       which rejects scalars; they are averaged across replicas with ``axis=None`` instead
       (patched once per process, only for multi-worker strategies).
    """
    from keras import tree
    from keras.src.backend.tensorflow import trainer

    symbolic_build = model._symbolic_build

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tree.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0], next(batches))
                break
        with strategy.scope():
            symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build

    original = trainer.reduce_per_replica
    if getattr(original, "fixed_for_multiworker", False):
        return

    def reduce_per_replica(values, strategy, reduction="auto"):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            def mean(v):
                scalar = strategy.experimental_local_results(v)[0].shape.rank == 0
                return strategy.reduce("MEAN", v, axis=None if scalar else 0)

            return tree.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica.fixed_for_multiworker = True
    trainer.reduce_per_replica = reduce_per_replica


@contextlib.contextmanager
def peer_failures(run_dir: str | os.PathLike) -> Iterator[None]:
    """Turn a collective op's failure (a worker died or became unreachable) into
    :class:`WorkerLostError` naming the lost task and how to continue.

    A dead peer is noticed within seconds: its gRPC connection resets, or TensorFlow's
    coordination service misses its heartbeats (10 s by default) and aborts the collectives.
    """
    task = _tf_config().get("task", {})
    me = f"/job:{task.get('type')}/replica:0/task:{task.get('index', 0)}"
    try:
        yield
    except PEER_ERRORS as exc:
        peers = sorted(set(re.findall(r"/job:\w+/replica:\d+/task:\d+", str(exc))) - {me})
        raise WorkerLostError(
            f"{task_name()}: lost contact with {', '.join(peers) or 'another worker'} "
            f"({type(exc).__name__}); {run_dir} keeps the last finished epoch: restart every "
            "worker with --resume"
        ) from exc


def weights_digest(model: keras.Model) -> str:
    """First 16 hex digits of the SHA-256 of all weights (float32 bytes, in model order)."""
    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]
