"""Scenario fixtures: load a file from fixtures/ and resolve its relative dates against today.

Dates are written `{{today}}`, `{{today-90d}}`, `{{today-3y-41d}}` (units d, w, m, y) so the
suite gives the same answers next year. Run `python -m tests.fixture_files FILE` to print the
hook request with real dates, ready for `cds-service evaluate -` or curl.
"""

import calendar
import json
import re
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
_TOKEN = re.compile(r"\{\{today((?:[+-]\d+[dwmy])*)\}\}")
_STEP = re.compile(r"([+-])(\d+)([dwmy])")


def _add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def shift(today: date, steps: str) -> date:
    result = today
    for sign, amount, unit in _STEP.findall(steps):
        n = int(amount) * (1 if sign == "+" else -1)
        if unit == "d":
            result += timedelta(days=n)
        elif unit == "w":
            result += timedelta(weeks=n)
        else:
            result = _add_months(result, n * (12 if unit == "y" else 1))
    return result


def resolve_dates(text: str, today: date) -> str:
    return _TOKEN.sub(lambda m: shift(today, m.group(1)).isoformat(), text)


def load(path: Path, today: date | None = None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(resolve_dates(path.read_text(encoding="utf-8"), today or date.today()))
    return data


def scenario_files(hook_dir: str) -> list[Path]:
    return sorted((FIXTURES / hook_dir).glob("*.json"))


if __name__ == "__main__":
    print(json.dumps(load(Path(sys.argv[1]))["request"], indent=2))
