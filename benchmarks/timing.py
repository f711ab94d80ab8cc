"""How the benchmark measures: a call that times itself (:func:`timed`), several modes timed
round-robin (:func:`interleaved`) into :class:`Timing` records, the matmul calls whose GFLOP/s
is the ceiling a mode's training is compared with (:func:`matmul_summary`), and facts about the
machine (bf16 support, CPU model, peak resident memory).

Neither TensorFlow nor PyTorch is imported at module level: the PyTorch worker process
(:mod:`benchmarks.torch_worker`) imports this module and must never load TensorFlow.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


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


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    """``fn`` as a call that returns its own wall-clock seconds."""
    def call() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return call


def describe_error(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"


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
            errors[name] = describe_error(exc)
    names = list(samples)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            if name in errors:
                continue
            try:
                samples[name].append(calls[name]())
            except Exception as exc:  # noqa: BLE001
                errors[name] = describe_error(exc)
    load = (load0, os.getloadavg()[0])
    return {n: Timing(images, samples[n], firsts[n], load) for n in names if n not in errors}


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
