"""Throughput and latency over HTTP with wrk, beside a bare endpoint on the same server settings.

Run: .venv/bin/python -m tests.benchmarks.bench_http [--duration 5] [--rounds 3] [--workers 1]
Needs wrk (Debian package `wrk`). Prints numbers; asserts nothing.

Service and the two bare endpoints (tests/benchmarks/bare_app.py) run in alternating rounds and
the median round of each is shown: on a shared 2-core machine one long run of each drifts with
whatever else the machine is doing.
"""

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from tests.benchmarks.records import build_request

SERVICE_PATH = "/cds-services/b12-myalgia-patient-view"
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body}", "rb"); wrk.body = f:read("*a"); f:close()
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(cmd: list[str], port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    # the audit database and hash key go to a throwaway directory, not ./data wherever this is run
    env = {"CDS_DATA_DIR": str(data_dir), **os.environ, "CDS_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start: {cmd}")


def _wrk(url: str, script: Path, duration: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": ms("50"), "p99": ms("99"), "non2xx": float(errors.group(1)) if errors else 0.0}


def _median_round(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run whose throughput is the median (its latencies go with it)."""
    median = statistics.median_low([r["rps"] for r in runs])
    return next(r for r in runs if r["rps"] == median)


def _peak_rss_mb(pid: int) -> float:
    """VmHWM of the process and its children (the uvicorn workers)."""
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout.split()]
    total = 0.0
    for p in pids:
        status = Path(f"/proc/{p}/status").read_text()
        total += int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of service and bare endpoint")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp())
    sizes = {"typical (200 resources)": 200, "heavy (5,000 resources)": 5000}
    scripts = {}
    for name, size in sizes.items():
        body = tmp / f"body-{size}.json"
        body.write_bytes(orjson.dumps(build_request(size)))
        script = tmp / f"post-{size}.lua"
        script.write_text(LUA.format(body=body))
        scripts[name] = (script, body.stat().st_size)

    py = sys.executable
    ports = {"service": _port(), "bare": _port(), "bare-gc": _port()}
    service = _start([py, "-m", "cds_service", "serve", "--port", str(ports["service"]), "--workers", str(args.workers)],
                     ports["service"], tmp / "data")
    # the floors: FastAPI's defaults, and the same with the service's garbage-collector settings
    floors = [_start([py, "-m", "uvicorn", f"tests.benchmarks.bare_app:{app}", "--port", str(ports[label]),
                      "--workers", str(args.workers), "--log-level", "warning", "--no-access-log"], ports[label], tmp / "data")
              for label, app in (("bare", "app"), ("bare-gc", "tuned_app"))]
    try:
        print(f"wrk: {args.connections} connections, {args.rounds} alternating rounds of {args.duration}s, "
              f"{args.workers} worker(s), 2 cores; the median round of each is shown")
        print("ratio: the service's req/s over this floor's (bare: FastAPI defaults; bare-gc: the same with the "
              "garbage-collector settings the service applies, the like-for-like floor)")
        print(f"{'request':<26} {'bytes':>9} {'server':<8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'ratio':>6}")
        for name, (script, size) in scripts.items():
            rounds: dict[str, list[dict[str, float]]] = {label: [] for label in ports}
            for port in ports.values():
                _wrk(f"http://127.0.0.1:{port}{SERVICE_PATH}", script, 2, args.connections)  # warm-up
            for _ in range(args.rounds):
                for label, port in ports.items():
                    rounds[label].append(_wrk(f"http://127.0.0.1:{port}{SERVICE_PATH}", script, args.duration, args.connections))
            results = {label: _median_round(runs) for label, runs in rounds.items()}
            for label, r in results.items():
                shown = f"{results['service']['rps'] / r['rps']:>6.2f}" if label != "service" else ""
                print(f"{name:<26} {size:>9} {label:<8} {r['rps']:>8.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['non2xx']:>8.0f} {shown}")
            spread = ", ".join(f"{label} {min(x['rps'] for x in runs):.0f}-{max(x['rps'] for x in runs):.0f}"
                               for label, runs in rounds.items())
            print(f"{'':<26} {'':>9} req/s range over rounds: {spread}")
        print(f"peak RSS of the service after the heavy run: {_peak_rss_mb(service.pid):.0f} MB")
    finally:
        for proc in (service, *floors):
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
