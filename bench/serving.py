"""What the explorer benchmarks share: a free loopback port, waiting until the server has
loaded its run, the explorer served in this process, and predict bodies made from the run's
held-out scenarios."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

import httpx
import uvicorn

from apmae.run import Run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(url: str, alive: Callable[[], bool] = lambda: True, timeout_s: float = 300) -> None:
    """Poll ``/api/health`` until the run is loaded; SystemExit if the server dies or is late."""
    deadline = time.time() + timeout_s
    while time.time() < deadline and alive():
        try:
            if httpx.get(f"{url}/api/health", timeout=5).json()["ready"]:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server at {url} did not become ready")


@contextmanager
def served(run: str) -> Iterator[str]:
    """The explorer over ``run``, served by uvicorn in a thread of this process on a free
    loopback port; yields its URL once the run is loaded, and stops it afterwards."""
    from server.app import create_app
    from server.settings import Settings

    url = f"http://127.0.0.1:{free_port()}"
    server = uvicorn.Server(uvicorn.Config(create_app(Settings(run=run)), host="127.0.0.1",
                                           port=int(url.rsplit(":", 1)[1]), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until_ready(url, thread.is_alive)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def held_out_bodies(run: Run) -> list[tuple[str, dict]]:
    """``(task, predict body)`` per held-out scenario (test split, noise aside): the window's
    text pasted as code, the target masked by its offsets."""
    return [(s.task, {"code": s.prefix + s.target + s.suffix, "start": len(s.prefix),
                      "end": len(s.prefix) + len(s.target)})
            for s in run.scenarios() if s.split == "test" and s.task != "noise"]
