"""A bounded load check: N segment requests, K at a time, against a running server.

Reports latency percentiles (wall time of each request as the client sees it) and counts every
request that did not come back ``200`` with a mask as a failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import numpy as np


@dataclass(frozen=True)
class LoadReport:
    """Outcome of :func:`run_load`; latencies in milliseconds."""

    requests: int
    concurrency: int
    failures: int
    seconds: float
    p50_ms: float
    p95_ms: float
    max_ms: float
    errors: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds

    def __str__(self) -> str:
        return (f"{self.requests} requests, {self.concurrency} concurrent: "
                f"{self.failures} failed, p50 {self.p50_ms:.0f} ms, p95 {self.p95_ms:.0f} ms, "
                f"max {self.max_ms:.0f} ms, {self.throughput:.1f} req/s")


def run_load(base_url: str, files: Sequence[tuple[str, bytes]], requests: int = 200,
             concurrency: int = 8, timeout: float = 120.0) -> LoadReport:
    """POST ``requests`` slices to ``{base_url}/api/segment``, ``concurrency`` in flight.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000``.
        files: ``(filename, bytes)`` slices, sent in turn.
        requests: total number of requests.
        concurrency: requests in flight at once.
        timeout: per-request timeout in seconds (a timeout counts as a failure).
    """
    if not files:
        raise ValueError("run_load needs at least one file to send")
    return asyncio.run(_load(base_url, files, requests, concurrency, timeout))


async def _load(base_url: str, files: Sequence[tuple[str, bytes]], requests: int,
                concurrency: int, timeout: float) -> LoadReport:
    latencies: list[float] = []
    errors: list[str] = []
    next_index = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        for i in next_index:
            name, data = files[i % len(files)]
            start = time.perf_counter()
            try:
                r = await client.post("/api/segment", files={"file": (name, data)})
                ok = r.status_code == 200 and r.json()["mask"].startswith("data:image/png")
                if not ok:
                    errors.append(f"{name}: HTTP {r.status_code} {r.text[:200]}")
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
            latencies.append((time.perf_counter() - start) * 1e3)

    limits = httpx.Limits(max_connections=concurrency)
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    p50, p95 = np.percentile(latencies, [50, 95])
    return LoadReport(requests, concurrency, len(errors), seconds, float(p50), float(p95),
                      float(max(latencies)), errors)
