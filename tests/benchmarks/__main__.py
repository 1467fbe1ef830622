"""All benchmarks with one command: `.venv/bin/python -m tests.benchmarks` (needs wrk for the HTTP part).

Prints numbers; asserts nothing. Pass `--duration N` for the seconds of each wrk run.
"""

from tests.benchmarks import bench_evaluate, bench_http

if __name__ == "__main__":
    print("== in-process evaluation against record size ==")
    bench_evaluate.main()
    print()
    print("== HTTP: cds-service serve against a bare endpoint ==")
    bench_http.main()
