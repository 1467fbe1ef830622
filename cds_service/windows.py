"""When a fact counts: inside a look-back window, current, recent; a day ahead allowed for clock skew."""

from datetime import date

from cds_service.facts import Fact
from cds_service.fhir_dates import CLOCK_SKEW_DAYS


def days_between(since: date, today: date) -> int:
    return (today - since).days


def has_come(day: date, today: date) -> bool:
    """Whether `day` has come (or is within the clock skew of today)."""
    return days_between(day, today) >= -CLOCK_SKEW_DAYS


def in_window(day: date, window: int, today: date) -> bool:
    """Whether `day` lies in the last `window` days, the clock skew allowed."""
    return -CLOCK_SKEW_DAYS <= days_between(day, today) <= window


def within(fact: Fact, days: int, today: date) -> bool:
    """Dated in the last `days` days (a day ahead allowed)."""
    return fact.when is not None and in_window(fact.when, days, today)


def is_recent(fact: Fact, window: int, today: date) -> bool:
    """An illness or injury inside the window: one that has ended by its end (over before the window,
    however recently it was entered), else by its start."""
    if fact.until is not None and has_come(fact.until, today):
        return days_between(fact.until, today) <= window
    return within(fact, window, today)


def is_current(fact: Fact, lookback: int, today: date) -> bool:
    """Active, or dated inside the look-back; a visit's diagnosis also by its visit (recordedDate):
    aches since the spring, diagnosed last week, were present last week."""
    return fact.active or within(fact, lookback, today) or (
        fact.visit and fact.recorded is not None and in_window(fact.recorded, lookback, today))


def newest(facts: list[Fact]) -> Fact | None:
    """The newest dated fact, if any."""
    dated = [f for f in facts if f.when is not None]
    return max(dated, key=lambda f: f.when or date.min) if dated else None


def age_in_years(birth: date | None, today: date) -> int | None:
    if birth is None:
        return None
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
