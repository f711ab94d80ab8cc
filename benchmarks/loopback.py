"""Run the app with uvicorn on a free loopback port in a background thread of this process.

For tests, the load check and notebooks: a real HTTP server (sockets, uvicorn, lifespan) without
a second Python process re-importing TensorFlow and reloading the model.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1",
                    startup_timeout: float = 30.0) -> Iterator[str]:
    """Serve ``app`` on ``host`` at a port the OS picks; yield its base URL.

    The server shuts down (running the app's lifespan exit) when the block ends.
    Raises ``RuntimeError`` if it has not started within ``startup_timeout`` seconds.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="unet-serve-loopback", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {host}:{port} did not start")
            time.sleep(0.02)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(startup_timeout)
        sock.close()
