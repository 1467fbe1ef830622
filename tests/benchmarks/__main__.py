"""All benchmarks with one command: `.venv/bin/python -m tests.benchmarks` (needs wrk for the HTTP part).

Prints numbers; asserts nothing. `--duration N` sets the seconds of each wrk run, `--rounds N`
how many alternating rounds of service and bare endpoint are run (the median is shown).
"""

from tests.benchmarks import bench_evaluate, bench_http, bench_text

if __name__ == "__main__":
    print("== in-process evaluation against record size ==")
    bench_evaluate.main()
    print()
    print("== free-text matching against text length ==")
    bench_text.main()
    print()
    print("== HTTP: cds-service serve against a bare endpoint ==")
    bench_http.main()
