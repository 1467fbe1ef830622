"""What one validated resource says: made by each type's reader, read by facts. A module of its
own because record_readers (which lists every reader) imports observation_reader, which makes one too."""

from dataclasses import dataclass
from datetime import date
from typing import Literal


@dataclass(frozen=True, slots=True)
class Reading:
    """What one validated resource says, before it is attached to concepts. `use` decides where it
    goes: a current or past record (counts), a resolved condition (ended: only "recent" confounders
    read it), a test not yet resulted (in-progress), a test that reports no value and says why
    (no-result), or nothing (skip; invalid is counted). `reports` is False for an Observation with
    no number and no lab flag: as a lab test, no result (a symptom needs no value)."""

    use: Literal["counts", "ended", "in-progress", "renewal", "no-result", "skip", "invalid"]
    when: date | None = None
    active: bool = False
    status: str | None = None
    until: date | None = None
    value: float | None = None
    unit: str | None = None
    unit_text: str | None = None  # Quantity.unit, as the lab printed it: shown when it means the same as `unit`
    comparator: str | None = None
    flagged_low: bool = False
    reports: bool = True
    verification: str | None = None
    recorded: date | None = None
    starts: date | None = None
    planned: bool = False  # a medicine planned, not known to be taken: no B12 replacement under way
    visit: bool = False  # a visit's diagnosis only: judged by its dates (Fact.visit)
    flags: frozenset[str] = frozenset()
    upper_limits: tuple[tuple[float, tuple[str, ...]], ...] = ()  # referenceRange highs, with the units they give
    range_units: tuple[str, ...] = ()  # the units referenceRange gives, low or high
    entered_only: bool = False  # a Condition dated by its recordedDate alone: no onset given


SKIP = Reading("skip")
