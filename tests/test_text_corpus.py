"""743 realistic note snippets (chief complaints, HPI, review-of-systems templates, portal messages,
problem-list text), labelled in two reviews of the text matcher: a change to a cue in cards/ must keep
every case it reads right. Cases marked known_wrong are what the matcher still misreads; one it now
reads right loses the mark, so the list stays honest."""

import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.knowledge import Knowledge

CORPUS: list[dict[str, Any]] = [
    json.loads(line) for line in (Path(__file__).parent / "text_corpus.jsonl").read_text(encoding="utf-8").splitlines()
]


def _read(knowledge: Knowledge, case: dict[str, Any]) -> set[str]:
    """The concepts found, among those the case is about ("notes": every concept read from notes)."""
    focus = ({c for c, v in knowledge.concepts.items() if {"Condition", "Observation"} & set(v.applies_to)}
             if case["focus"] == "notes" else set(case["focus"]))
    return knowledge.text.find(case["text"]) & focus


def test_the_corpus_is_the_reviewed_one() -> None:
    assert len(CORPUS) == 743 and len({c["text"] for c in CORPUS}) == 743


@pytest.mark.parametrize("known_wrong", [False, True], ids=["read-right", "known-wrong"])
def test_each_case_reads_as_labelled(knowledge: Knowledge, known_wrong: bool) -> None:
    cases = [c for c in CORPUS if c["known_wrong"] is known_wrong]
    changed = [f"{c['text']!r}: {sorted(_read(knowledge, c))}, labelled {c['expect']}"
               for c in cases if (_read(knowledge, c) == set(c["expect"])) is known_wrong]
    assert changed == [], ("now read right: set known_wrong to false" if known_wrong else "misread") + "\n" + "\n".join(changed)
