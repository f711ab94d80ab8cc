"""One worker thread owns the model: requests queue up, equal-size slices run as one batch.

Keras models are not documented as safe to call from many threads at once, and a web server
calls from many. :class:`Segmenter` serialises every forward pass through a single thread; while
it runs, new requests wait in a queue, and the next pass takes all waiting slices of the same
size together (up to ``max_batch``), so concurrent requests cost fewer model calls.
"""

from __future__ import annotations

import queue
import threading
from collections import defaultdict
from concurrent.futures import Future

import keras
import numpy as np

from unet_keras.inference import predict_any_size

_STOP = object()


class Segmenter:
    """Batched, thread-safe tumor probabilities from one Keras U-Net.

    Args:
        model: a U-Net taking ``(N, H, W, C)`` in [0, 1]; any H, W (see ``predict_any_size``).
        max_batch: most slices per forward pass.
        tta: average over flips (see ``predict_batch``).
    """

    def __init__(self, model: keras.Model, max_batch: int = 8, tta: bool = False) -> None:
        self.model = model
        self.max_batch = max_batch
        self.tta = tta
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="unet-segmenter", daemon=True)
        self._thread.start()

    def submit(self, image: np.ndarray) -> Future:
        """Queue one preprocessed slice ``(H, W, C)`` float32 in [0, 1].

        Returns a future resolving to its probabilities ``(H, W)`` float32 in [0, 1].
        """
        if not self._thread.is_alive():
            raise RuntimeError("the segmenter has been closed")
        future: Future = Future()
        self._queue.put((image, future))
        return future

    def pending(self) -> int:
        """Slices waiting for the model now."""
        return self._queue.qsize()

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued work, then stop the worker thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[tuple[np.ndarray, Future]]) -> None:
        groups: dict[tuple[int, ...], list[tuple[np.ndarray, Future]]] = defaultdict(list)
        for image, future in batch:
            if future.set_running_or_notify_cancel():
                groups[image.shape].append((image, future))
        for items in groups.values():
            try:
                probs = predict_any_size(self.model, np.stack([im for im, _ in items]),
                                         batch_size=len(items), tta=self.tta)
            except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                for _, future in items:
                    future.set_exception(exc)
                continue
            for (_, future), p in zip(items, probs, strict=True):
                future.set_result(p)
