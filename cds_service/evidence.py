"""Evidence: one finding the card lists, with the records behind it."""

from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date

from cds_service.facts import Fact


@dataclass(frozen=True)
class Evidence:
    """One criterion that holds, with the facts behind it."""

    id: str
    label: str
    facts: tuple[Fact, ...] = ()
    note: str = ""
    # for a lab criterion: the threshold its latest result crossed, in the lab's canonical unit
    comparator: str = ""
    threshold: float | None = None
    # for a medicine: when its current use began (earlier courses renewed into the active order)
    since: date | None = None
    # for a diagnosis that stands for a lab sign: the latest result of that lab taken since it,
    # which decides instead of the diagnosis (shown, so the card does not hide it)
    measured_since: Fact | None = None
    # for a medicine no longer in use but counted as current (a long course inside the grace window):
    # when it ended, shown so the card does not call it current
    ended: date | None = None
    # for a medicine confounder: the lab result that answers its advice (a creatine kinase since a
    # statin began), shown in the advice's place
    checked: Fact | None = None
    # for a lab sign or lab confounder read against the lab's own upper limit (labUpperLimit): that
    # limit, and the multiple of it crossed; or, with no range to read, the lab's high flag that made it hold
    lab_limit: float | None = None
    limit_times: float | None = None
    flagged_high: bool = False

    def started_after(self, day: date, ignoring: AbstractSet[int] = frozenset()) -> bool:
        """Whether it began after `day`: by its start, else by a record dated after it (the records
        whose id() is in `ignoring` date nothing)."""
        if self.since is not None:
            return self.since > day
        return any(f.when is not None and f.when > day for f in self.facts if id(f) not in ignoring)
