"""The PyTorch side of the benchmark, in a process of its own: :func:`torch_worker` runs in a
spawned interpreter that never imports TensorFlow, builds every PyTorch mode there and times
one call at a time on request; :class:`TorchWorker` is the parent's handle on it.

Why a separate process is in the docstring of ``benchmarks/bench.py``: with torch 2.14.1,
loading Triton into a process that holds TensorFlow was a segmentation fault.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from benchmarks.runners import TorchRunner
from benchmarks.timing import describe_error, peak_rss_mib, timed, torch_matmul_calls

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from unet_keras.config import ArchConfig


def torch_worker(conn: Connection, spec: dict[str, Any]) -> None:
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
            errors[name] = describe_error(exc)
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
            conn.send(("error", describe_error(exc)))


class TorchWorker:
    """Parent side of :func:`torch_worker`: a spawned process (a fresh interpreter, so no
    TensorFlow) holding every PyTorch mode; :meth:`call` runs one call there and returns the
    seconds the worker measured. If the worker dies, every later call raises ``RuntimeError``
    and :func:`interleaved` records it as the mode's error."""

    def __init__(self, modes: list[str], config: ArchConfig, batch: int, latency_sizes: list[int],
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
