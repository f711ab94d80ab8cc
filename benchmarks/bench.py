"""Keras against the PyTorch mirror, side by side in one process, same ArchConfig and batch.

Measured, warm-up excluded, as the median and the spread (min..max) of several repetitions:

* training images/s (Adam, the paper's Dice loss, one batch per step) and inference images/s
  of Keras float32, Keras ``mixed_bfloat16`` (when the CPU has bf16), Keras with
  ``jit_compile=True`` (XLA), and the PyTorch mirror in float32 NCHW, float32 channels_last and
  bf16 autocast channels_last, each also with one thread (``--modes`` lists the others). Keras
  runs as the project does: training with the fused batch norm, prediction through
  ``inference_model`` (batch norm folded into the convolutions); ``keras-fp32-kerasbn`` and
  ``keras-bf16-kerasbn`` use Keras' own BatchNormalization throughout, for comparison;
* single-slice latency (batch 1) at 256x256 and 512x512 (a size-agnostic copy of the config);
* the ``tf.data`` input pipeline alone: real PNG slices decoded and preprocessed by
  ``make_file_dataset`` without and with an in-memory cache, and preloaded arrays through
  ``make_dataset`` (what ``unet_keras.training`` feeds ``fit``), all with augmentation;
* a float32 and a bfloat16 matmul peak (GFLOP/s, the better of TensorFlow and PyTorch, timed in
  the same rounds as the training steps) and every mode's achieved training GFLOP/s (analytic
  count, :mod:`unet_keras.flops`) as a fraction of its precision's peak; peak resident memory.

All modes are built first and then timed round-robin (one call of each mode per round), so a
machine load that changes during the run weighs on every mode alike.

Each framework runs in its own process: Keras (and the input pipeline) in this one, PyTorch in a
spawned worker that never imports TensorFlow; this process sends it one call at a time and the
worker times it, so the round-robin order is unchanged. With torch 2.14.1 (the CUDA wheel that
pip resolves without the README's pin) loading Triton's native library -- which
``torch.optim.Adam`` does on first use, through ``torch._dynamo`` -- into a process that holds
TensorFlow 2.21 is a segmentation fault; in one process the benchmark died there. A worker that
dies anyway costs only its modes, reported as errors.

Prints a Markdown table, the issue's targets and, last, the ratios fastest Keras mode / fastest
PyTorch mode. ``--json PATH`` writes every number: top-level ``ratios`` (``train``, ``infer``:
fastest Keras / fastest PyTorch), ``ratios_fp32`` (Keras float32 / best PyTorch float32) and
``pipeline_over_train`` (cached file pipeline, epoch 2+, over the fastest Keras training).
The 1-minute load average is recorded with every measurement: on a shared machine the numbers
are pessimistic.

    python benchmarks/bench.py --quick --json bench.json
    python benchmarks/bench.py --base-filters 32 --modes keras-fp32,torch-fp32-cl --no-pipeline
    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/bench.py --quick --modes keras-fp32
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: name -> (dtype policy, jit_compile, the project's batch norm: fused for training, folded for
#: prediction). The ``-kerasbn`` modes keep Keras' own layer for both, for comparison.
KERAS_MODES = {
    "keras-fp32": ("float32", False, True),
    "keras-bf16": ("mixed_bfloat16", False, True),
    "keras-xla": ("float32", True, True),
    "keras-bf16-xla": ("mixed_bfloat16", True, True),
    "keras-fp32-kerasbn": ("float32", False, False),
    "keras-bf16-kerasbn": ("mixed_bfloat16", False, False),
}
#: name -> (channels_last, autocast to bfloat16, threads: 0 = PyTorch's default). The ``-1t``
#: modes exist for shared machines: OpenMP's barrier-synchronised regions stall when another
#: process holds one of the cores, and one thread can then beat two.
TORCH_MODES = {
    "torch-fp32": (False, False, 0),
    "torch-fp32-cl": (True, False, 0),
    "torch-bf16-cl": (True, True, 0),
    "torch-bf16": (False, True, 0),
    "torch-fp32-cl-1t": (True, False, 1),
    "torch-bf16-cl-1t": (True, True, 1),
}
BF16_MODES = {"keras-bf16", "keras-bf16-xla", "keras-bf16-kerasbn", "torch-bf16-cl", "torch-bf16",
              "torch-bf16-cl-1t"}
TORCH_FP32_MODES = {"torch-fp32", "torch-fp32-cl", "torch-fp32-cl-1t"}
DEFAULT_MODES = ["keras-fp32", "keras-bf16", "keras-xla", "torch-fp32", "torch-fp32-cl",
                 "torch-bf16-cl", "torch-fp32-cl-1t", "torch-bf16-cl-1t"]
PAPER = {"input_shape": (256, 256, 3), "base_filters": 64, "depth": 4}


# --- timing --------------------------------------------------------------------------------------

@dataclass
class Timing:
    """Wall-clock seconds of ``reps`` calls, each processing ``images`` images."""

    images: int
    seconds: list[float]
    first_call_s: float  # the first warm-up call: tracing, compilation, primitive creation
    load: tuple[float, float] = (0.0, 0.0)  # 1-min load average before / after

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        """Median images/s."""
        return self.images / self.median_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "images_per_call": self.images, "seconds": [round(s, 5) for s in self.seconds],
            "median_s": round(self.median_s, 5), "images_per_s": round(self.rate, 4),
            "images_per_s_min": round(self.images / max(self.seconds), 4),
            "images_per_s_max": round(self.images / min(self.seconds), 4),
            "first_call_s": round(self.first_call_s, 3),
            "load_avg_1min": [round(v, 2) for v in self.load],
        }


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 in ``/proc/cpuinfo``."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --- matmul peak ---------------------------------------------------------------------------------

def tf_matmul_calls(n: int, repeat: int, bf16: bool) -> dict[str, Callable[[], object]]:
    """Calls doing ``repeat`` products of two ``n x n`` matrices (``2 n^3`` FLOPs each) in
    TensorFlow, float32 and (when ``bf16``) bfloat16, keyed ``matmul-<dtype>-tensorflow``; the
    PyTorch ones run in the worker (:func:`torch_matmul_calls`)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a_np = rng.random((n, n), dtype=np.float32)
    b_np = rng.random((n, n), dtype=np.float32)
    calls: dict[str, Callable[[], object]] = {}
    for dtype in ("float32", "bfloat16") if bf16 else ("float32",):
        a, b = tf.cast(a_np, dtype), tf.cast(b_np, dtype)
        tf_mm = tf.function(lambda a=a, b=b: tf.linalg.matmul(a, b)[0, 0])
        calls[f"matmul-{dtype}-tensorflow"] = lambda f=tf_mm: [f().numpy() for _ in range(repeat)]
    return calls


def torch_matmul_calls(n: int, repeat: int, bf16: bool) -> dict[str, Callable[[], object]]:
    """The PyTorch twin of :func:`tf_matmul_calls` (same matrices), keyed
    ``matmul-<dtype>-torch``."""
    import torch

    rng = np.random.default_rng(0)
    a_np = rng.random((n, n), dtype=np.float32)
    b_np = rng.random((n, n), dtype=np.float32)
    calls: dict[str, Callable[[], object]] = {}
    for dtype in ("float32", "bfloat16") if bf16 else ("float32",):
        ta = torch.from_numpy(a_np).to(getattr(torch, dtype))
        tb = torch.from_numpy(b_np).to(getattr(torch, dtype))
        calls[f"matmul-{dtype}-torch"] = lambda a=ta, b=tb: [torch.mm(a, b) for _ in range(repeat)]
    return calls


def matmul_summary(timings: dict[str, Timing], n: int, repeat: int) -> dict[str, Any]:
    """GFLOP/s per matmul call (median and best) and, per dtype, ``peak``: the best
    framework's median. The matmuls run in the same rounds as the training steps, so the
    fraction of peak compares the two under the same machine load."""
    flops = 2 * n**3 * repeat
    out: dict[str, Any] = {"n": n, "products_per_call": repeat, "calls": {}, "peak_gflops": {},
                           "best_gflops": {}}
    for key, t in timings.items():
        out["calls"][key] = {"gflops_median": round(flops / t.median_s / 1e9, 1),
                             "gflops_best": round(flops / min(t.seconds) / 1e9, 1)}
    for dtype in ("float32", "bfloat16"):
        rows = [v for k, v in out["calls"].items() if k.startswith(f"matmul-{dtype}-")]
        out["peak_gflops"][dtype] = max((v["gflops_median"] for v in rows), default=None)
        out["best_gflops"][dtype] = max((v["gflops_best"] for v in rows), default=None)
    return out


# --- the two frameworks --------------------------------------------------------------------------

@dataclass
class ModeResult:
    """One framework/precision/layout mode: training, inference and latency timings."""

    name: str
    train: Timing | None = None
    infer: Timing | None = None
    latency: dict[int, Timing] = field(default_factory=dict)
    resized: Timing | None = None  # Keras: a 512² slice via predict_any_size (resize to input)
    error: str | None = None


def synthetic_batch(batch: int, h: int, w: int, c: int, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Images uniform in [0, 1] ``(B, H, W, C)`` and blob masks of 0/1 ``(B, H, W, 1)``,
    float32 (speed does not depend on the values)."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, h, w, c), dtype=np.float32)
    yy, xx = np.mgrid[:h, :w]
    centres = rng.uniform(0.3, 0.7, size=(batch, 2))
    y = np.stack([((yy / h - cy) ** 2 + (xx / w - cx) ** 2 < 0.01) for cy, cx in centres])
    return x, y[..., None].astype(np.float32)


class KerasRunner:
    """The Keras model under ``KERAS_MODES[name]``, set up as the project runs it: training on
    a compiled (Adam, Dice loss) model with the fused batch norm (as ``unet_keras.training``),
    prediction on :func:`~unet_keras.inference.inference_model` copies (batch norm folded, as
    ``unet-predict`` and ``unet-serve``) at the config's size and size-agnostic (single-slice
    latency). The ``-kerasbn`` modes use Keras' own BatchNormalization for both. Every call
    blocks until its result is in host memory."""

    def __init__(self, name: str, config, batch: int, latency_sizes: list[int]) -> None:
        import keras
        import tensorflow as tf

        from unet_keras.losses import DiceLoss

        self.name = name
        self.policy, self.jit, project_bn = KERAS_MODES[name]
        h, w, c = config.input_shape
        x, y = synthetic_batch(batch, h, w, c)
        self.x, self.y = tf.constant(x), tf.constant(y)
        self.model = self._build(config, "fused" if project_bn else "keras")
        self.model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=DiceLoss(),
                           jit_compile=self.jit)
        self.predictor = self._predictor(self.model, project_bn)
        any_size = config.replace(input_shape=(None, None, c))
        self.any_size = (self._predictor(self._build(any_size, "keras"), project_bn)
                         if latency_sizes else None)
        self.slices = {s: tf.constant(synthetic_batch(1, s, s, c)[0]) for s in latency_sizes}
        self.slice512 = synthetic_batch(1, 512, 512, c)[0][0]

    def _build(self, config, batchnorm: str):
        import keras

        from unet_keras.model import build_unet

        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(self.policy)
        try:
            return build_unet(config, batchnorm=batchnorm)
        finally:
            keras.mixed_precision.set_global_policy(previous)

    def _predictor(self, model, project_bn: bool):
        """What ``unet-predict`` runs (``inference_model``), or ``model`` itself (compiled with
        this mode's ``jit_compile`` unless it is the training model, compiled already)."""
        from unet_keras.inference import inference_model

        if project_bn:
            precision = "bfloat16" if self.policy == "mixed_bfloat16" else "float32"
            return inference_model(model, precision, jit_compile=self.jit)
        if model is not self.model:
            model.compile(jit_compile=self.jit)
        return model

    def train(self) -> None:
        self.model.train_on_batch(self.x, self.y)

    def infer(self) -> None:
        self.predictor.predict_on_batch(self.x)

    def latency(self, size: int) -> None:
        self.any_size.predict_on_batch(self.slices[size])

    def resized(self) -> None:
        """A 512x512 slice through the config-size model as ``unet-predict`` runs it:
        :func:`~unet_keras.inference.predict_any_size` resizes it to the model's input (area),
        predicts and resizes the probabilities back (linear)."""
        from unet_keras.inference import predict_any_size

        predict_any_size(self.predictor, self.slice512)


def torch_dice_loss(y_true, y_pred, smooth: float = 1.0):
    """``-dice`` pooled over the batch, as :class:`unet_keras.losses.DiceLoss`."""
    inter = (y_true * y_pred).sum()
    return -(2.0 * inter + smooth) / (y_true.sum() + y_pred.sum() + smooth)


class TorchRunner:
    """The PyTorch mirror under ``TORCH_MODES[name]`` (memory format, bf16 autocast, threads),
    trained with Adam on the same Dice loss; inference in ``eval()`` under ``inference_mode``."""

    def __init__(self, name: str, config, batch: int, latency_sizes: list[int]) -> None:
        import torch

        from unet_keras.torch_mirror import build_torch_unet

        self.name = name
        channels_last, self.bf16, threads = TORCH_MODES[name]
        self.threads = threads or torch.get_num_threads()
        self.format = torch.channels_last if channels_last else torch.contiguous_format
        h, w, c = config.input_shape
        x, y = synthetic_batch(batch, h, w, c)
        self.x, self.y = self._nchw(x), self._nchw(y)
        self.net = build_torch_unet(config).to(memory_format=self.format)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.slices = {s: self._nchw(synthetic_batch(1, s, s, c)[0]) for s in latency_sizes}

    def _nchw(self, a: np.ndarray):
        import torch

        return torch.from_numpy(a.transpose(0, 3, 1, 2).copy()).to(memory_format=self.format)

    def _autocast(self):
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else nullcontext()

    @contextmanager
    def _threads(self) -> Iterator[None]:
        import torch

        default = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(default)

    def train(self) -> None:
        self.net.train()
        with self._threads():
            self.optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                pred = self.net(self.x)
            torch_dice_loss(self.y, pred.float()).backward()
            self.optimizer.step()

    def _predict(self, inputs) -> None:
        import torch

        self.net.eval()
        with self._threads(), torch.inference_mode(), self._autocast():
            self.net(inputs).float()

    def infer(self) -> None:
        self._predict(self.x)

    def latency(self, size: int) -> None:
        self._predict(self.slices[size])


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    """``fn`` as a call that returns its own wall-clock seconds."""
    def call() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return call


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"


def torch_worker(conn, spec: dict[str, Any]) -> None:
    """The PyTorch process: build ``spec["modes"]`` (and the matmul calls), report
    ``("ready", info)``, then answer each ``("call", key)`` with ``("ok", seconds)`` or
    ``("error", message)`` until ``("stop",)``. Keys: ``(what, mode[, size])`` with ``what`` in
    train / infer / latency, or ``("matmul", name)``. TensorFlow is never imported here."""
    os.environ["KERAS_BACKEND"] = "torch"  # unet_keras then skips TensorFlow
    import torch

    from unet_keras.config import ArchConfig

    if spec["torch_threads"]:
        torch.set_num_threads(spec["torch_threads"])
    config = ArchConfig.from_dict(spec["config"])
    runners, errors = {}, {}
    for name in spec["modes"]:
        try:
            runners[name] = TorchRunner(name, config, spec["batch"], spec["latency_sizes"])
        except Exception as exc:  # noqa: BLE001 - one failing mode must not hide the others
            errors[name] = _error(exc)
    calls: dict[tuple, Callable[[], float]] = {
        ("matmul", k): timed(f)
        for k, f in torch_matmul_calls(spec["matmul_n"], spec["repeat"], spec["bf16"]).items()}
    for name, r in runners.items():
        calls[("train", name)], calls[("infer", name)] = timed(r.train), timed(r.infer)
        for size in spec["latency_sizes"]:
            calls[("latency", name, size)] = timed(partial(r.latency, size))
    conn.send(("ready", {"built": list(runners), "errors": errors,
                         "matmul": [k[1] for k in calls if k[0] == "matmul"],
                         "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                         "tensorflow_imported": "tensorflow" in sys.modules}))
    while True:
        message = conn.recv()
        if message[0] == "stop":
            conn.send(("ok", peak_rss_mib()))
            return
        if message[0] == "rss":
            conn.send(("ok", peak_rss_mib()))
            continue
        if message[0] == "free_optimizers":  # before inference, as in one process
            for r in runners.values():
                r.optimizer = None
            gc.collect()
            conn.send(("ok", 0.0))
            continue
        try:
            conn.send(("ok", calls[tuple(message[1])]()))
        except Exception as exc:  # noqa: BLE001
            conn.send(("error", _error(exc)))


class TorchWorker:
    """Parent side of :func:`torch_worker`: a spawned process (a fresh interpreter, so no
    TensorFlow) holding every PyTorch mode; :meth:`call` runs one call there and returns the
    seconds the worker measured. If the worker dies, every later call raises ``RuntimeError``
    and :func:`interleaved` records it as the mode's error."""

    def __init__(self, modes: list[str], config, batch: int, latency_sizes: list[int],
                 matmul_n: int, repeat: int, bf16: bool, torch_threads: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        spec = {"modes": modes, "config": config.to_dict(), "batch": batch,
                "latency_sizes": latency_sizes, "matmul_n": matmul_n, "repeat": repeat,
                "bf16": bf16, "torch_threads": torch_threads}
        self.process = ctx.Process(target=torch_worker, args=(child, spec), daemon=True,
                                   name="bench-torch")
        self.process.start()
        child.close()
        self.info: dict[str, Any] = self._receive("start")
        self.peak_rss_mib: float | None = None

    def _receive(self, what: str) -> Any:
        try:
            status, value = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(5)
            raise RuntimeError(f"the PyTorch worker process died during {what} (exit code "
                               f"{self.process.exitcode})") from None
        if status == "error":
            raise RuntimeError(value)
        return value

    def call(self, *key) -> float:
        """Run the call ``key`` in the worker; its wall-clock seconds there."""
        if not self.process.is_alive():
            raise RuntimeError(f"the PyTorch worker process died (exit code "
                               f"{self.process.exitcode})")
        self.conn.send(("call", key))
        return self._receive(" ".join(map(str, key)))

    def rss(self) -> float | None:
        """The worker's peak resident set size so far (MiB), or None if it died."""
        try:
            self.conn.send(("rss",))
            return round(self._receive("rss"), 1)
        except (RuntimeError, OSError):
            return None

    def free_optimizers(self) -> None:
        self.conn.send(("free_optimizers",))
        self._receive("free_optimizers")

    def close(self) -> None:
        """Stop the worker (recording its peak RSS) or, if it hangs, kill it."""
        if self.process.is_alive():
            try:
                self.conn.send(("stop",))
                self.peak_rss_mib = self._receive("stop")
            except (RuntimeError, OSError, BrokenPipeError):
                pass
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def interleaved(calls: dict[str, Callable[[], float]], images: int, warmup: int, reps: int,
                errors: dict[str, str]) -> dict[str, Timing]:
    """Time every mode's call round-robin: all warm-ups first, then ``reps`` rounds in which
    each mode runs once (order reversed every other round), so a load that changes during the
    run weighs on every mode alike. Each call returns its own seconds (see :func:`timed`;
    PyTorch calls are timed in their worker). A mode that raises is dropped and its error
    recorded."""
    firsts, samples = {}, {}
    load0 = os.getloadavg()[0]
    for name, fn in calls.items():
        try:
            firsts[name] = fn()
            for _ in range(max(warmup, 1) - 1):
                fn()
            samples[name] = []
        except Exception as exc:  # noqa: BLE001 - one failing mode must not hide the others
            errors[name] = _error(exc)
    names = list(samples)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            if name in errors:
                continue
            try:
                samples[name].append(calls[name]())
            except Exception as exc:  # noqa: BLE001
                errors[name] = _error(exc)
    load = (load0, os.getloadavg()[0])
    return {n: Timing(images, samples[n], firsts[n], load) for n in names if n not in errors}


def run_modes(modes: list[str], config, batch: int, latency_sizes: list[int], warmup: int,
              reps: int, extra: dict[str, Callable[[], object]], log: Callable[[str], None],
              worker: TorchWorker | None = None
              ) -> tuple[list[ModeResult], dict[str, Timing]]:
    """Build every Keras mode here (the PyTorch ones live in ``worker``), then time training
    (with the ``extra`` calls and the worker's matmuls in the same rounds), inference and each
    latency size, interleaved. Returns the modes' results and the ``extra`` timings."""
    errors: dict[str, str] = dict(worker.info["errors"]) if worker else {}
    runners = {}
    for name in modes:
        if name not in KERAS_MODES:
            continue
        try:
            runners[name] = KerasRunner(name, config, batch, latency_sizes)
        except Exception as exc:  # noqa: BLE001
            errors[name] = _error(exc)
    remote = [n for n in modes if worker and n in worker.info["built"]]
    calls: dict[str, dict[str, Callable[[], float]]] = {
        "train": {n: timed(r.train) for n, r in runners.items()},
        "infer": {n: timed(r.infer) for n, r in runners.items()}}
    for name in remote:
        calls["train"][name] = partial(worker.call, "train", name)
        calls["infer"][name] = partial(worker.call, "infer", name)
    extra_calls = {k: timed(f) for k, f in extra.items()}
    if worker:
        extra_calls.update({k: partial(worker.call, "matmul", k) for k in worker.info["matmul"]})
    order = [n for n in modes if n in calls["train"]]
    train = interleaved({**{n: calls["train"][n] for n in order}, **extra_calls}, batch, warmup,
                        reps, errors)
    extra_timings = {k: train.pop(k) for k in extra_calls if k in train}
    log("training: " + ", ".join(f"{n} {t.rate:.2f}" for n, t in train.items())
        + f" img/s; peak RSS {peak_rss_mib():.0f} MiB (Keras process)")
    order = [n for n in order if n in train]
    if worker and any(n in TORCH_MODES for n in order):
        try:
            worker.free_optimizers()  # free the optimizer state before inference
        except RuntimeError as exc:
            for n in order:
                if n in TORCH_MODES:
                    errors[n] = _error(exc)
            order = [n for n in order if n not in TORCH_MODES]
    gc.collect()
    infer = interleaved({n: calls["infer"][n] for n in order}, batch, warmup, reps, errors)
    log("inference: " + ", ".join(f"{n} {t.rate:.2f}" for n, t in infer.items()) + " img/s")
    latency = {}
    for size in latency_sizes:
        latency[size] = interleaved(
            {n: (timed(partial(runners[n].latency, size)) if n in runners
                 else partial(worker.call, "latency", n, size)) for n in order if n in infer},
            1, warmup, reps, errors)
        log(f"latency {size}²: " + ", ".join(f"{n} {1000 * t.median_s:.0f}"
                                             for n, t in latency[size].items()) + " ms")
    resized = interleaved({n: timed(r.resized) for n, r in runners.items() if n in infer}, 1,
                          warmup, reps, errors)
    log("512² slice via predict_any_size (resized to the model's input): "
        + ", ".join(f"{n} {1000 * t.median_s:.0f}" for n, t in resized.items()) + " ms")
    results = [ModeResult(n, train.get(n), infer.get(n),
                          {s: latency[s][n] for s in latency_sizes if n in latency[s]},
                          resized.get(n), errors.get(n)) for n in modes]
    return results, extra_timings


# --- input pipeline ------------------------------------------------------------------------------

def run_pipeline(data: Path, size: int, channels: int, batch: int, n_files: int,
                 epochs: int) -> dict[str, Any]:
    """Images/s of full passes over the real PNG slices in ``data/figshare-png``.

    ``files, no cache`` decodes every epoch; ``files, memory cache`` decodes in epoch 1 and
    reads the cache after; ``arrays`` is ``make_dataset`` over preloaded arrays. All augment.
    ``steady`` is the median of epochs 2+ (epoch 1 alone when ``epochs == 1``).
    """
    from unet_keras.data import (
        list_files,
        load_arrays,
        make_dataset,
        make_file_dataset,
        read_slice,
    )

    fmt, files = list_files(data / "figshare-png")
    files = files[:n_files]
    n = len(files)

    def passes(ds) -> dict[str, Any]:
        load0 = os.getloadavg()[0]
        rates = []
        for _ in range(epochs):
            start = time.perf_counter()
            for _batch in ds:
                pass
            rates.append(n / (time.perf_counter() - start))
        steady = statistics.median(rates[1:] or rates)
        return {"epochs_images_per_s": [round(r, 1) for r in rates],
                "images_per_s": round(steady, 1),
                "load_avg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)]}

    out: dict[str, Any] = {"files": n, "source": str(data / "figshare-png"), "size": size,
                           "batch": batch, "augment": True}
    for label, cache in (("files, no cache", None), ("files, memory cache", "")):
        ds = make_file_dataset(files, size, channels, batch, format=fmt, cache=cache,
                               shuffle=True, augment=True)
        out[label] = passes(ds)
    images, masks = load_arrays([read_slice(f, fmt) for f in files], size, channels)
    out["arrays"] = passes(make_dataset(images, masks, batch, shuffle=True, augment=True))
    return out


# --- report --------------------------------------------------------------------------------------

def _ms(t: Timing | None) -> str:
    return f"{1000 * t.median_s:.0f} ({1000 * min(t.seconds):.0f}-{1000 * max(t.seconds):.0f})" \
        if t else "-"


def _rate(t: Timing | None) -> str:
    if t is None:
        return "-"
    return f"{t.rate:.2f} ({t.images / max(t.seconds):.2f}-{t.images / min(t.seconds):.2f})"


def summarize(results: list[ModeResult], peaks: dict[str, float], train_flops_per_image: int,
              ) -> dict[str, dict[str, Any]]:
    """Per mode: the timings as dicts, achieved training GFLOP/s and its fraction of the peak
    of the mode's precision."""
    out = {}
    for r in results:
        d: dict[str, Any] = {}
        if r.error:
            d["error"] = r.error
        if r.train:
            d["train"] = r.train.to_dict()
            gflops = train_flops_per_image * r.train.rate / 1e9
            peak = peaks["bfloat16" if r.name in BF16_MODES else "float32"]
            d["train_gflops"] = round(gflops, 1)
            d["train_fraction_of_peak"] = round(gflops / peak, 3) if peak else None
        if r.infer:
            d["infer"] = r.infer.to_dict()
        d["latency"] = {str(s): t.to_dict() for s, t in r.latency.items()}
        if r.resized:
            d["latency_512_via_resize"] = r.resized.to_dict()
        out[r.name] = d
    return out


def markdown(results: list[ModeResult], modes: dict[str, dict[str, Any]],
             pipeline: dict[str, Any] | None, sizes: list[int]) -> str:
    """The results as Markdown tables (medians, spread min-max in parentheses)."""
    head = ["mode", "train img/s", "train GFLOP/s (% peak)", "infer img/s"] + \
        [f"latency {s}² ms" for s in sizes] + ["512² via resize ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        m = modes[r.name]
        if r.error:
            lines.append(f"| {r.name} | error: {r.error} |")
            continue
        frac = m.get("train_fraction_of_peak")
        gf = f"{m['train_gflops']:.0f} ({100 * frac:.0f}%)" if frac is not None else "-"
        cells = [r.name, _rate(r.train), gf, _rate(r.infer)] + \
            [_ms(r.latency.get(s)) for s in sizes] + [_ms(r.resized)]
        lines.append("| " + " | ".join(cells) + " |")
    if pipeline:
        lines += ["", f"| tf.data pipeline ({pipeline['files']} real slices -> "
                  f"{pipeline['size']}², augment) | images/s per epoch | steady |",
                  "|---|---|---|"]
        for label in ("files, no cache", "files, memory cache", "arrays"):
            p = pipeline[label]
            lines.append(f"| {label} | {', '.join(map(str, p['epochs_images_per_s']))} "
                         f"| {p['images_per_s']} |")
    return "\n".join(lines)


def best(results: list[ModeResult], names: set[str], what: str) -> ModeResult | None:
    """The mode among ``names`` with the highest median ``what`` ("train"/"infer") rate."""
    cands = [r for r in results if r.name in names and getattr(r, what) is not None]
    return max(cands, key=lambda r: getattr(r, what).rate, default=None)


def ratio(a: ModeResult | None, b: ModeResult | None, what: str) -> float | None:
    if a is None or b is None:
        return None
    return round(getattr(a, what).rate / getattr(b, what).rate, 3)


def targets(results: list[ModeResult], modes: dict[str, dict[str, Any]],
            pipeline_over_train: float | None, is_paper: bool) -> list[dict[str, Any]]:
    """The issue's targets with the measured values (``met`` is None when not measured)."""
    keras_names, torch_names = set(KERAS_MODES), set(TORCH_MODES)
    rows = []

    def add(name: str, value: float | None, goal: str, ok: Callable[[float], bool]) -> None:
        rows.append({"target": name, "value": value, "goal": goal,
                     "met": None if value is None else bool(ok(value))})

    kf = [r for r in results if r.name == "keras-fp32" and r.train]
    for what in ("train", "infer"):
        add(f"keras-fp32 / best torch fp32 layout, {what}",
            ratio(kf[0] if kf else None, best(results, TORCH_FP32_MODES, what), what), ">= 1.0",
            lambda v: v >= 1.0)
        add(f"fastest keras / fastest torch, {what}",
            ratio(best(results, keras_names, what), best(results, torch_names, what), what),
            ">= 1.0", lambda v: v >= 1.0)
    add("pipeline (memory cache, steady) / fastest keras training", pipeline_over_train,
        ">= 10", lambda v: v >= 10)
    for name in ("keras-fp32", "keras-bf16"):
        frac = modes.get(name, {}).get("train_fraction_of_peak")
        add(f"{name} training, fraction of its precision's matmul peak", frac, ">= 0.65",
            lambda v: v >= 0.65)
    lat = [(r.latency[512].median_s, r.name) for r in results
           if r.name in keras_names and 512 in r.latency]
    for seconds, name in sorted(lat)[:1]:
        add(f"512² slice at full resolution, fastest keras mode ({name}), s", round(seconds, 3),
            "< 0.5", lambda v: v < 0.5)
    lat = [(r.resized.median_s, r.name) for r in results if r.resized]
    for seconds, name in sorted(lat)[:1]:
        add(f"512² slice via predict_any_size (resized to the model input), fastest keras mode "
            f"({name}), s", round(seconds, 3), "< 0.5", lambda v: v < 0.5)
    if not is_paper:
        for row in rows:
            row["note"] = "not the paper config: indicative only"
    return rows


# --- main ----------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:]))
    ap.add_argument("--quick", action="store_true",
                    help="1 warm-up and 3 timed calls, 120 slices for the pipeline (about 7 min "
                         "on an idle 2-core CPU; the default: 2 and 5, 300 slices)")
    ap.add_argument("--json", metavar="PATH", help="write all results as JSON")
    ap.add_argument("--markdown", metavar="PATH", help="write the Markdown table")
    ap.add_argument("--modes", default=",".join(DEFAULT_MODES),
                    help=f"comma-separated, of {', '.join([*KERAS_MODES, *TORCH_MODES])} "
                         "(default: %(default)s)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=256, help="training/inference H = W")
    ap.add_argument("--base-filters", type=int, default=64)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--latency-sizes", default="256,512",
                    help="comma-separated single-slice sizes ('' for none)")
    ap.add_argument("--warmup", type=int, help="untimed calls per measurement (default 2, "
                    "--quick 1)")
    ap.add_argument("--reps", type=int, help="timed calls per measurement (default 5, "
                    "--quick 3)")
    ap.add_argument("--matmul-n", type=int, default=2048, help="matmul side (default 2048)")
    ap.add_argument("--no-pipeline", action="store_true", help="skip the tf.data measurement")
    ap.add_argument("--pipeline-files", type=int, help="real slices read (default 300, "
                    "--quick 120)")
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("UNET_KERAS_DATA", REPO.parent / "shared/data")),
                    help="folder holding figshare-png/ (default: $UNET_KERAS_DATA or "
                         "../shared/data)")
    ap.add_argument("--intra-threads", type=int, default=0,
                    help="TensorFlow intra-op threads (0: TensorFlow's default)")
    ap.add_argument("--inter-threads", type=int, default=0,
                    help="TensorFlow inter-op threads (0: TensorFlow's default)")
    ap.add_argument("--torch-threads", type=int, default=0,
                    help="torch.set_num_threads (0: PyTorch's default)")
    args = ap.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in KERAS_MODES and m not in TORCH_MODES]
    if unknown:
        ap.error(f"unknown mode(s) {unknown}; choose from {[*KERAS_MODES, *TORCH_MODES]}")
    args.latency_sizes = [int(s) for s in args.latency_sizes.split(",") if s.strip()]
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.reps = args.reps if args.reps is not None else (3 if args.quick else 5)
    args.pipeline_files = args.pipeline_files or (120 if args.quick else 300)
    return args


def set_threads_and_describe(intra: int, inter: int) -> dict[str, Any]:
    """Apply TensorFlow's thread settings (0 keeps its default; they must be set before it runs
    anything) and describe the machine and the libraries (PyTorch's side comes from its
    worker)."""
    import keras
    import tensorflow as tf

    if intra:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "bf16": cpu_has_bf16(),
        "python": platform.python_version(), "tensorflow": tf.__version__,
        "keras": keras.__version__, "torch": None,
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset: on)"),
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "torch_threads": None, "load_avg_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    from unet_keras.config import ArchConfig  # the package hides TensorFlow's start-up lines

    env = set_threads_and_describe(args.intra_threads, args.inter_threads)
    try:
        config = ArchConfig(input_shape=(args.size, args.size, 3),
                            base_filters=args.base_filters, depth=args.depth)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.no_pipeline and not (args.data / "figshare-png" / "images").is_dir():
        print(f"error: {args.data / 'figshare-png'}: no images/ folder of real slices for the "
              "pipeline measurement (set --data or UNET_KERAS_DATA, or pass --no-pipeline)",
              file=sys.stderr)
        return 2
    bf16 = env["bf16"]
    modes = [m for m in args.modes if bf16 or m not in BF16_MODES]
    is_paper = all(getattr(config, k) == v for k, v in PAPER.items())
    repeat = 4 if args.quick else 8
    worker = None
    torch_modes = [m for m in modes if m in TORCH_MODES]
    if torch_modes:  # a separate process: see the module docstring
        worker = TorchWorker(torch_modes, config, args.batch, args.latency_sizes,
                             args.matmul_n, repeat, bf16, args.torch_threads)
        env["torch"], env["torch_threads"] = worker.info["torch"], worker.info["torch_threads"]
        env["torch_process_imported_tensorflow"] = worker.info["tensorflow_imported"]
    try:
        return _run(args, env, config, modes, is_paper, repeat, worker, started)
    finally:
        if worker:
            worker.close()


def _run(args: argparse.Namespace, env: dict[str, Any], config, modes: list[str],
         is_paper: bool, repeat: int, worker: TorchWorker | None, started: float) -> int:
    """Everything after start-up: the timed rounds, the pipeline, the report."""
    from unet_keras.flops import forward_flops, train_flops

    bf16 = env["bf16"]
    print(f"{env['cpu']}, {env['cores']} cores, bf16 {bf16}; TF {env['tensorflow']}, Keras "
          f"{env['keras']}, torch {env['torch']}; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"config {config.to_dict()} ({'paper' if is_paper else 'NOT the paper config'}), "
          f"batch {args.batch}, {args.warmup} warm-up + {args.reps} timed calls each",
          flush=True)
    skipped = sorted(set(args.modes) - set(modes))
    if skipped:
        print(f"skipped (no bf16 on this CPU): {skipped}")

    results, mm_timings = run_modes(
        modes, config, args.batch, args.latency_sizes, args.warmup, args.reps,
        tf_matmul_calls(args.matmul_n, repeat, bf16),
        lambda line: print(f"  {line}  [load {os.getloadavg()[0]:.2f}]", flush=True), worker)
    matmul = matmul_summary(mm_timings, args.matmul_n, repeat)
    peaks = matmul["peak_gflops"]

    pipeline = None
    if not args.no_pipeline:
        pipeline = run_pipeline(args.data, args.size, config.channels, args.batch,
                                args.pipeline_files, 2 if args.quick else 3)

    flops = train_flops(config)
    modes_out = summarize(results, peaks, flops)
    fastest_keras = best(results, set(KERAS_MODES), "train")
    pipeline_over_train = pipeline_over_train_nocache = None
    if pipeline and fastest_keras:
        pipeline_over_train = round(
            pipeline["files, memory cache"]["images_per_s"] / fastest_keras.train.rate, 1)
        pipeline_over_train_nocache = round(
            pipeline["files, no cache"]["images_per_s"] / fastest_keras.train.rate, 1)
    ratios = {what: ratio(best(results, set(KERAS_MODES), what),
                          best(results, set(TORCH_MODES), what), what)
              for what in ("train", "infer")}
    fp32 = [r for r in results if r.name == "keras-fp32" and r.train]
    ratios_fp32 = {what: ratio(fp32[0] if fp32 else None,
                               best(results, TORCH_FP32_MODES, what), what)
                   for what in ("train", "infer")}
    table = markdown(results, modes_out, pipeline, args.latency_sizes)
    target_rows = targets(results, modes_out, pipeline_over_train, is_paper)
    report = {
        "config": config.to_dict(), "paper_config": is_paper, "batch": args.batch,
        "warmup": args.warmup, "reps": args.reps, "quick": args.quick, "env": env,
        "flops": {"train_per_image": flops, "forward_per_image": forward_flops(config)},
        "matmul": matmul, "modes": modes_out, "pipeline": pipeline,
        "pipeline_over_train": pipeline_over_train,
        "pipeline_over_train_nocache": pipeline_over_train_nocache,
        "ratios": ratios, "ratios_fp32": ratios_fp32, "targets": target_rows,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "peak_rss_mib_torch_process": worker.rss() if worker else None,
        "load_avg_end": os.getloadavg(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print()
    print(table)
    print()
    print(f"matmul {args.matmul_n}² timed in the training rounds (median of the best framework):"
          f" float32 {peaks['float32']}, bfloat16 {peaks['bfloat16']} GFLOP/s (best single call "
          f"{matmul['best_gflops']['float32']}, {matmul['best_gflops']['bfloat16']})")
    print(f"training: {flops / 1e9:.1f} GFLOP per image (analytic); peak RSS "
          f"{report['peak_rss_mib']:.0f} MiB (Keras process), "
          f"{report['peak_rss_mib_torch_process']} MiB (PyTorch process); load average at end "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} on {env['cores']} cores "
          "(a loaded machine makes every number pessimistic)")
    for row in target_rows:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[row["met"]]
        print(f"target {row['target']}: {row['value']} (goal {row['goal']}) -> {verdict}")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"pipeline_over_train {pipeline_over_train} (no cache: {pipeline_over_train_nocache})")
    print(f"ratios keras-fp32 / best torch fp32: train {ratios_fp32['train']}, "
          f"infer {ratios_fp32['infer']}")
    print(f"ratios fastest keras / fastest torch: train {ratios['train']}, "
          f"infer {ratios['infer']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
