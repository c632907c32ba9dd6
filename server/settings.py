"""The server's settings, from the environment (``APMAE_*``) or from ``apmae serve``'s flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    run: str = field(default_factory=lambda: os.environ.get("APMAE_RUN", "default"))
    database_url: str | None = field(default_factory=lambda: os.environ.get("APMAE_DATABASE_URL"))
    #: Largest ``code`` accepted by predict/intervene, in bytes (UTF-8).
    max_code_bytes: int = field(default_factory=lambda: _env_int("APMAE_MAX_CODE_BYTES", 256 * 1024))
    #: Largest request body, in bytes (the code plus JSON around it).
    max_body_bytes: int = field(default_factory=lambda: _env_int("APMAE_MAX_BODY_BYTES", 512 * 1024))
    #: Threads running the model; each uses torch's intra-op threads.
    workers: int = field(default_factory=lambda: _env_int("APMAE_WORKERS", 1))
    #: Requests waiting for a worker beyond which new ones get 503 with Retry-After.
    queue: int = field(default_factory=lambda: _env_int("APMAE_QUEUE", 8))
    #: Seconds a request may wait and run before it gets 504.
    timeout_s: int = field(default_factory=lambda: _env_int("APMAE_TIMEOUT_S", 60))
    #: Memory for recent live results' patterns (fetched by the heatmaps afterwards).
    cache_bytes: int = field(default_factory=lambda: _env_int("APMAE_CACHE_MB", 256) * 2**20)
