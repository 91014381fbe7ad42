"""Load generator for the read API: N concurrent clients (default 50) each send `GET /customers/{id}`
back to back over a keep-alive connection for a fixed time, with random existing ids; reports
p50/p95/p99 latency and requests/s and writes them as JSON to bench/results/.

    # the API already running (`lakehouse serve`), with a key that has customers:read
    python bench/api.py --url http://127.0.0.1:8000 --key $KEY
    # or let the bench start `lakehouse serve` itself over LAKEHOUSE_SERVING_DSN, with a throwaway key
    python bench/api.py [--duration 20] [--concurrency 50] [--workers 1]

The serving database must hold customers (materialise `serve/customer_360` first). The client is a
minimal asyncio HTTP/1.1 client (no httpx) so that the load generator spends as little of the
machine's CPU as possible: it shares the cores with the server and Postgres.
"""

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def get_json(url: str, key: str | None = None) -> dict:
    request = urllib.request.Request(url, headers={"X-API-Key": key} if key else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def customer_ids(base: str, key: str, most: int = 20000) -> list[str]:
    ids, cursor = [], None
    while len(ids) < most:
        page = get_json(f"{base}/customers?limit=500" + (f"&cursor={cursor}" if cursor else ""), key)
        ids += [item["customer_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    return ids


class Client:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int, key: str):
        self.host, self.port, self.key = host, port, key
        self.reader = self.writer = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def get(self, path: str) -> int:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nX-API-Key: {self.key}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer:
            self.writer.close()


async def worker(client: Client, ids: list[str], stop_at: float, record_from: float, latencies: list, statuses: dict):
    await client.connect()
    rng = random.Random()
    while True:
        started = time.perf_counter()
        if started >= stop_at:
            break
        status = await client.get(f"/customers/{rng.choice(ids)}")
        elapsed = time.perf_counter() - started
        if started >= record_from:
            latencies.append(elapsed)
            statuses[status] = statuses.get(status, 0) + 1
    await client.close()


async def load(base: str, key: str, ids: list[str], concurrency: int, duration: float, warmup: float) -> dict:
    parts = urlsplit(base)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    begin = time.perf_counter()
    record_from, stop_at = begin + warmup, begin + warmup + duration
    clients = [Client(parts.hostname, parts.port or 80, key) for _ in range(concurrency)]
    await asyncio.gather(*(worker(c, ids, stop_at, record_from, latencies, statuses) for c in clients))
    measured = time.perf_counter() - record_from
    ms = sorted(v * 1000 for v in latencies)
    return {
        "requests": len(ms),
        "requests_per_s": round(len(ms) / measured, 1),
        "latency_ms": {
            "p50": round(percentile(ms, 50), 2),
            "p95": round(percentile(ms, 95), 2),
            "p99": round(percentile(ms, 99), 2),
            "mean": round(statistics.fmean(ms), 2) if ms else None,
            "max": round(ms[-1], 2) if ms else None,
        },
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "measured_s": round(measured, 2),
    }


def start_server(port: int, workers: int) -> tuple[subprocess.Popen, str]:
    key = "bench-" + secrets.token_hex(16)
    env = {
        **os.environ,
        "LAKEHOUSE_API_KEYS": json.dumps([{"name": "bench", "key": key, "scopes": ["customers:read"]}]),
    }
    env.pop("LAKEHOUSE_API_KEYS_FILE", None)
    code = f"from lakehouse.cli import main; main(['serve', '--port', '{port}', '--workers', '{workers}'])"
    server = subprocess.Popen([sys.executable, "-c", code], env=env)
    return server, key


def wait_healthy(base: str, server: subprocess.Popen | None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if get_json(f"{base}/health").get("status") == "ok":
                return
        except OSError:
            pass
        if (server and server.poll() is not None) or time.monotonic() > deadline:
            raise SystemExit(f"the API at {base} did not become healthy")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=None, help="a running API (default: start `lakehouse serve` on --port)")
    p.add_argument("--key", default=os.environ.get("LAKEHOUSE_API_KEY"), help="API key with customers:read")
    p.add_argument("--port", type=int, default=8765, help="port for the API the bench starts")
    p.add_argument("--workers", type=int, default=1, help="uvicorn workers for the API the bench starts")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    p.add_argument("--out", default=None, help="JSON file (default bench/results/api-<UTC time>.json)")
    args = p.parse_args(argv)
    loadavg_before = os.getloadavg()

    server = None
    if args.url:
        base, key = args.url.rstrip("/"), args.key
        if not key:
            raise SystemExit("--key (or LAKEHOUSE_API_KEY) is needed with --url")
    else:
        base = f"http://127.0.0.1:{args.port}"
        server, key = start_server(args.port, args.workers)
    try:
        wait_healthy(base, server)
        ids = customer_ids(base, key)
        if not ids:
            raise SystemExit("no customers in the serving database: materialise serve/customer_360 first")
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        result = asyncio.run(load(base, key, ids, args.concurrency, args.duration, args.warmup))
    finally:
        if server:
            server.terminate()
            server.wait(timeout=15)
    report = {
        "endpoint": "GET /customers/{id}",
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "customers": len(ids),
        "server": {
            "url": base,
            "started_by_bench": server is not None,
            "uvicorn_workers": args.workers if server else None,
        },
        **result,
        "machine": {"cpus": os.cpu_count(), "loadavg_before": loadavg_before, "python": platform.python_version()},
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out = Path(args.out) if args.out else RESULTS / f"api-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    lat = result["latency_ms"]
    print(
        f"GET /customers/{{id}}, {args.concurrency} clients, {result['measured_s']} s: "
        f"{result['requests_per_s']} req/s, "
        f"p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms, statuses {result['statuses']} -> {out}"
    )
    return report


if __name__ == "__main__":
    main()
