"""FHIR dates and dateTimes, read leniently: a date no record can mean (unreadable, or outside
1800-2999, where date arithmetic overflows) reads as none rather than failing the call."""

from datetime import UTC, date, datetime, timedelta
from typing import Any

# no record's date lies outside these: one that does is a corrupt date, read as none (date
# arithmetic near year 1 or 9999 would overflow)
EARLIEST_DATE, LATEST_DATE = date(1800, 1, 1), date(2999, 12, 31)
CLOCK_SKEW_DAYS = 1
"""A date this many days ahead counts as today: the EHR's clock and the service's differ by time zone."""


def as_date(value: Any) -> date | None:
    day = _as_date(value)
    return day if day is not None and EARLIEST_DATE <= day <= LATEST_DATE else None


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) >= 4:
        try:
            if len(value) >= 10:
                return date.fromisoformat(value[:10])
            # a partial FHIR date (YYYY-MM, YYYY) reads as the first day it allows
            return date(int(value[:4]), int(value[5:7]) if len(value) >= 7 else 1, 1)
        except ValueError:
            return None
    return None


def latest_birth_date(value: Any) -> date | None:
    """The last day a FHIR birthDate (YYYY, YYYY-MM or YYYY-MM-DD) allows: a partial date never
    makes a patient older than they may be (65 or over is a risk factor; under 16 is out of scope)."""
    if not isinstance(value, str):
        return None
    try:
        if len(value) == 4:
            return as_date(date(int(value), 12, 31))
        if len(value) == 7 and value[4] == "-":
            year, month = int(value[:4]), int(value[5:])
            if not 1 <= month <= 12:
                return None
            return as_date(date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1))
    except (ValueError, OverflowError):
        return None
    return as_date(value)


_NO_INSTANT = datetime.min.replace(tzinfo=UTC)


def instant(text: Any) -> datetime:
    """A FHIR date or dateTime as the instant it names, for ordering results: "10:00-05:00" is after
    "14:00Z" the same day, which text order reads the other way round. A date alone is its midday
    in UTC, the moment of that day in every zone from -12:00 to +12:00, so it sorts by its date
    beside a time written in any of them (as its first moment, the 20th sorted before 22:00-05:00
    on the 19th, which is the 20th in UTC); a time with no zone (converters send them) is read as
    UTC; unreadable or absent sorts before every date."""
    if not isinstance(text, str) or len(text) < 4:
        return _NO_INSTANT
    try:
        if len(text) < 10:  # a partial date (YYYY, YYYY-MM): its first day
            moment = datetime(int(text[:4]), int(text[5:7]) if len(text) >= 7 else 1, 1, 12, tzinfo=UTC)
        elif len(text) == 10:
            moment = datetime.fromisoformat(text).replace(hour=12, tzinfo=UTC)
        else:
            parsed = datetime.fromisoformat(text)
            moment = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except ValueError:
        day = as_date(text)  # a date this reads, with a time it cannot (as _observation_date does)
        return datetime(day.year, day.month, day.day, 12, tzinfo=UTC) if day else _NO_INSTANT
    except OverflowError:  # year 1 or 9999 moved across a zone
        return _NO_INSTANT
    return moment if EARLIEST_DATE <= moment.date() <= LATEST_DATE else _NO_INSTANT
