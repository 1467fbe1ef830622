"""In-process evaluation time against record size, beside orjson.loads of the same payload.

Run: .venv/bin/python -m tests.benchmarks.bench_evaluate
Prints a table; asserts nothing (speed is measured, never tested).
"""

import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from cds_service.evaluation import evaluate, parse_json_object
from cds_service.knowledge import load_knowledge
from cds_service.services import service_definitions
from tests.benchmarks.records import build_request


def best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    knowledge = load_knowledge()
    service = service_definitions(knowledge)["b12-myalgia-patient-view"]
    now = datetime.now(UTC)
    print(f"{'resources':>9} {'bytes':>10} {'orjson.loads':>13} {'evaluate':>10} {'loads+evaluate':>15} {'ratio':>6}")
    for size in (10, 100, 1_000, 10_000):
        body = orjson.dumps(build_request(size))
        repeat = 200 if size <= 100 else (30 if size <= 1000 else 7)
        t_loads = best_of(lambda b=body: orjson.loads(b), repeat)
        t_eval = best_of(lambda b=body: evaluate(service, orjson.loads(b), knowledge, now), repeat) - t_loads
        t_total = t_loads + t_eval
        assert evaluate(service, parse_json_object(body), knowledge, now).response.cards
        print(f"{size:>9} {len(body):>10} {t_loads * 1e3:>11.3f}ms {t_eval * 1e3:>8.3f}ms "
              f"{t_total * 1e3:>13.3f}ms {t_eval / t_loads:>6.2f}")


if __name__ == "__main__":
    main()
