"""The explorer under load: concurrent clients mixing predict and intervene over loopback.

    python -m bench.load [--run default] [--clients 32] [--seconds 60] [--json]

Starts ``apmae serve`` as its own process (so its memory is its own), waits until it is ready,
then runs ``--clients`` asyncio clients for ``--seconds``: each loops over held-out scenarios of
the run, sending ``POST /api/predict`` and, every third request, ``POST /api/intervene`` with
two random heads ablated. Every answer is counted by kind: ok, 503 (the bounded queue said
"busy": the designed answer to overload), other 4xx/5xx, timeouts and connection errors.
Reports throughput, latency percentiles of the successful requests, the errors by kind, and the
server's resident memory before and after (``/proc/PID/status``). "Before" is taken after a
warm-up under the same load (``--warmup``), long enough to fill the server's bounded cache of
recent patterns (``APMAE_CACHE_MB``), so the growth measured is a leak's, not the cache's
designed fill. Stops by itself; the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import subprocess
import sys
import time

import httpx
import numpy as np

from apmae.run import Run

from .serving import free_port, held_out_bodies, wait_until_ready


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from ``/proc``."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def client(http: httpx.AsyncClient, work: list[dict], heads: tuple[int, int], stop: float,
                 seed: int, out: dict) -> None:
    rng = random.Random(seed)
    n = 0
    while time.perf_counter() < stop:
        body = dict(rng.choice(work))
        url = "/api/predict"
        if n % 3 == 2:
            layers, per_layer = heads
            body["ablate"] = [[l, h] for l, h in rng.sample(
                [(l, h) for l in range(layers) for h in range(per_layer)], 2)]
            url = "/api/intervene"
        n += 1
        t0 = time.perf_counter()
        try:
            response = await http.post(url, json=body)
            kind = "ok" if response.status_code == 200 else str(response.status_code)
        except httpx.TimeoutException:
            kind = "timeout"
        except httpx.TransportError as e:
            kind = type(e).__name__
        out["kinds"][kind] += 1
        if kind == "ok":
            out["ms"].append((time.perf_counter() - t0) * 1000)
        elif kind == "503":
            await asyncio.sleep(0.5)  # the Retry-After a polite client honours, shortened


async def load(url: str, work: list[dict], heads: tuple[int, int], clients: int, seconds: float) -> dict:
    out = {"kinds": collections.Counter(), "ms": []}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        stop = time.perf_counter() + seconds
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http, work, heads, stop, i, out) for i in range(clients)))
        out["wall_s"] = time.perf_counter() - t0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="default")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=60, help="seconds of load before 'before'")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    run = Run(args.run)
    work = [body for _, body in held_out_bodies(run)]
    if not work:
        sys.exit(f"run {args.run} has no held-out scenarios")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "apmae", "serve", "--run", args.run, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, lambda: server.poll() is None)
        shape = httpx.get(f"{url}/api/run", timeout=30).json()
        heads = (shape["layers"], shape["heads"])
        asyncio.run(load(url, work, heads, args.clients, args.warmup))
        before = rss_mb(server.pid)
        out = asyncio.run(load(url, work, heads, args.clients, args.seconds))
        after = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    ms = np.array(out["ms"]) if out["ms"] else np.array([np.nan])
    total = sum(out["kinds"].values())
    errors = {k: v for k, v in out["kinds"].items() if k not in ("ok", "503")}
    result = {"run": args.run, "clients": args.clients, "seconds": round(out["wall_s"], 1),
              "requests": total, "ok": out["kinds"]["ok"], "busy_503": out["kinds"]["503"],
              "errors": errors, "ok_per_s": round(out["kinds"]["ok"] / out["wall_s"], 2),
              "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
              "p99_ms": round(float(np.percentile(ms, 99)), 1),
              "rss_before_mb": round(before, 1), "rss_after_mb": round(after, 1),
              "rss_growth": round(after / before - 1, 4), "cpus": os.cpu_count()}
    print(f"{args.clients} clients x {result['seconds']} s on run {args.run!r}: {total} requests, "
          f"{result['ok']} ok ({result['ok_per_s']}/s), {result['busy_503']} busy (503), errors {errors or 'none'}")
    print(f"latency of ok requests: p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, p99 {result['p99_ms']} ms")
    print(f"server memory: {result['rss_before_mb']} MB before, {result['rss_after_mb']} MB after "
          f"({100 * result['rss_growth']:+.1f}%)")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
