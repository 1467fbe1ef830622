"""Free-text matching against text length, for the texts that cost most per character.

Run: .venv/bin/python -m tests.benchmarks.bench_text
Prints a table; asserts nothing. Each row should cost about ten times the row above it: the cost
grows with the length of the text, not its square (a long text with no clause break once took
seconds per 50 KB).
"""

from cds_service.knowledge import load_knowledge
from tests.benchmarks.bench_evaluate import best_of

# The first is the common case; in the others every mention is negated or answered "no", so none
# can be skipped as already found.
TEXTS = {"affirmed": "myalgia ", "negated, no breaks": "no myalgia ", "negated, with breaks": "denies myalgia. ",
         "answered no": "myalgia: no ", "negated lists": "no " + "myalgia, " * 30 + ". "}


def main() -> None:
    matcher = load_knowledge().text
    print(f"{'text':<22} {'chars':>9} {'ms':>9} {'µs per 1,000 chars':>19}")
    for label, unit in TEXTS.items():
        for chars in (10_000, 100_000, 1_000_000):
            text = unit * (chars // len(unit))
            seconds = best_of(lambda t=text: matcher.find(t), 3)
            print(f"{label:<22} {len(text):>9} {seconds * 1e3:>9.2f} {seconds * 1e6 / (len(text) / 1000):>19.1f}")


if __name__ == "__main__":
    main()
