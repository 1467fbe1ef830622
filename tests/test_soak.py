"""A bounded soak on loopback: 32 concurrent clients, valid and invalid calls mixed, against
`python -m cds_service serve` in its own process, whose RSS is sampled from /proc.

Valid calls must all answer 200 with their expected cards, invalid ones their 4xx, and memory
must stay flat (last-third mean RSS within 20% of the first-third mean, after a warm-up).
CDS_SOAK_SECONDS sets the length (default 60; run longer by hand, e.g. CDS_SOAK_SECONDS=900).
"""

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import _free_port, load_scenario
from tests.fixture_files import FIXTURES
from tests.test_scenarios import SERVICE

SECONDS = float(os.environ.get("CDS_SOAK_SECONDS", "60"))
CLIENTS = 32
LIMIT = 200_000
VALID = [FIXTURES / p for p in (
    "patient-view/01-metformin-paresthesia-critical.json", "patient-view/03-marathon-no-card.json",
    "patient-view/27-hostile-text-is-escaped.json", "order-select/01-ibuprofen-for-pattern-patient-card.json",
    "order-sign/01-b12-test-with-recent-result-warning.json", "order-sign/05-no-b12-test-in-draft-no-card.json",
)]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    env = {**os.environ, "CDS_DATA_DIR": str(tmp_path), "CDS_LOG_LEVEL": "WARNING", "CDS_MAX_BODY_BYTES": str(LIMIT),
           "CDS_PATIENT_HASH_KEY": "soak-test-patient-hash-key"}
    process = subprocess.Popen([sys.executable, "-m", "cds_service", "serve", "--port", str(port)], env=env,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "server did not start"
            time.sleep(0.1)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=15)


def calls() -> list[tuple[str, dict[str, Any], int, int | None]]:
    """(path, httpx kwargs, expected status, expected card count) -- valid and invalid."""
    out: list[tuple[str, dict[str, Any], int, int | None]] = []
    for path in VALID:
        scenario = load_scenario(path)
        request = scenario["request"]
        out.append((f"/cds-services/{SERVICE[request['hook']]}", {"json": request}, 200, len(scenario["expect"]["cards"])))
    hook = out[0][0]
    json_type = {"content-type": "application/json"}
    out += [
        (hook, {"content": b"{not json", "headers": json_type}, 400, None),
        (hook, {"content": b"x", "headers": {"content-type": "text/plain"}}, 415, None),
        ("/cds-services/nope", {"json": {}}, 404, None),
        (hook, {"content": b'{"a": "' + b"x" * LIMIT + b'"}', "headers": json_type}, 413, None),
        (hook, {"json": {"hook": "patient-view"}}, 400, None),
        (hook + "/feedback", {"json": {"feedback": [{}]}}, 400, None),
    ]
    return out


async def soak(url: str, pid: int, seconds: float) -> tuple[Counter[str], list[int], float]:
    plan = calls()
    outcomes: Counter[str] = Counter()
    samples: list[int] = []
    stop = time.monotonic() + seconds

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            i = n
            while time.monotonic() < stop:
                path, kwargs, status, cards = plan[i % len(plan)]
                i += 1
                try:
                    response = await c.post(path, **kwargs)
                except httpx.TransportError as exc:
                    outcomes[f"transport {type(exc).__name__}"] += 1
                    continue
                ok = response.status_code == status and (cards is None or len(response.json()["cards"]) == cards)
                kind = "valid" if status == 200 else "invalid"
                outcomes[f"{kind} {'ok' if ok else f'WRONG {response.status_code}'}"] += 1

    async def sampler() -> None:
        while time.monotonic() < stop:
            samples.append(rss_kib(pid))
            await asyncio.sleep(0.5)

    started = time.monotonic()
    await asyncio.gather(sampler(), *(client(n) for n in range(CLIENTS)))
    return outcomes, samples, time.monotonic() - started


@pytest.mark.soak
@pytest.mark.timeout(SECONDS + 120)
def test_soak(served: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, process = served
    asyncio.run(soak(url, process.pid, min(5.0, SECONDS / 4)))  # warm-up: caches, pools, allocator
    outcomes, samples, took = asyncio.run(soak(url, process.pid, SECONDS))
    third = max(1, len(samples) // 3)
    first, last = sum(samples[:third]) / third, sum(samples[-third:]) / third
    total = sum(outcomes.values())
    print(f"\nsoak {took:.0f} s, {CLIENTS} clients: {total / took:.0f} requests/s, {dict(outcomes)}; "
          f"RSS first third {first / 1024:.1f} MiB, last third {last / 1024:.1f} MiB, max {max(samples) / 1024:.1f} MiB")
    assert process.poll() is None
    assert set(outcomes) <= {"valid ok", "invalid ok"}, outcomes
    assert outcomes["valid ok"] > 0 and outcomes["invalid ok"] > 0
    assert last <= first * 1.2
