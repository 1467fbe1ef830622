"""`cds-service report`: cards shown and their feedback, per service and card variant.

Cards shown are counted by the time they were shown; feedback by its outcomeTimestamp.
Feedback whose card was never audited (another deployment, or lost audit) is reported
under the variant `unknown-card`. The acceptance rate is accepted / shown.
"""

from datetime import date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Engine, and_, func, select, true

from cds_service.tables import card_audit, card_feedback

UNKNOWN_CARD = "unknown-card"
NO_REASON = "(no reason given)"


class ReportRow(BaseModel):
    service: str
    variant: str
    shown: int = 0
    accepted: int = 0
    overridden: int = 0
    overrideReasons: dict[str, int] = {}
    acceptanceRate: float | None = None


class Report(BaseModel):
    since: date | None
    until: date | None
    rows: list[ReportRow]


def _period(column: Any, since: date | None, until: date | None) -> ColumnElement[bool]:
    """`since` and `until` are whole UTC days, both included."""
    conditions = []
    if since:
        conditions.append(column >= datetime.combine(since, time.min))
    if until and until < date.max:  # date.max ("no end") has no next day
        conditions.append(column < datetime.combine(until + timedelta(days=1), time.min))
    return and_(true(), *conditions)


def build_report(engine: Engine, since: date | None = None, until: date | None = None) -> Report:
    shown_query = (
        select(card_audit.c.service_id, card_audit.c.variant, func.count())
        .where(_period(card_audit.c.shown_at, since, until))
        .group_by(card_audit.c.service_id, card_audit.c.variant)
    )
    joined = card_feedback.outerjoin(card_audit, card_feedback.c.card_uuid == card_audit.c.card_uuid)
    feedback_query = (
        select(
            card_feedback.c.service_id, card_audit.c.variant, card_feedback.c.outcome,
            card_feedback.c.override_system, card_feedback.c.override_code,
            func.count(func.distinct(card_feedback.c.card_uuid)),  # an EHR's retry is not a second outcome
        )
        .select_from(joined)
        .where(_period(card_feedback.c.outcome_at, since, until))
        .group_by(
            card_feedback.c.service_id, card_audit.c.variant, card_feedback.c.outcome,
            card_feedback.c.override_system, card_feedback.c.override_code,
        )
    )
    rows: dict[tuple[str, str], ReportRow] = {}

    def row(service: str, variant: str | None) -> ReportRow:
        key = (service, variant or UNKNOWN_CARD)
        return rows.setdefault(key, ReportRow(service=key[0], variant=key[1]))

    with engine.connect() as connection:
        for service, variant, count in connection.execute(shown_query):
            row(service, variant).shown += count
        for service, variant, outcome, system, code, count in connection.execute(feedback_query):
            target = row(service, variant)
            if outcome == "accepted":
                target.accepted += count
            else:
                target.overridden += count
                reason = f"{system}|{code}" if system else code or NO_REASON
                target.overrideReasons[reason] = target.overrideReasons.get(reason, 0) + count
    for item in rows.values():
        item.acceptanceRate = round(item.accepted / item.shown, 4) if item.shown else None
    return Report(since=since, until=until, rows=[rows[k] for k in sorted(rows)])


def format_report(report: Report, reason_labels: dict[str, str] | None = None) -> str:
    """A plain-text table for people; `--json` gives the same data for programs.
    `reason_labels` maps `system|code` to the wording the clinician saw on the card."""
    labels = reason_labels or {}
    period = f"{report.since or 'start'} .. {report.until or 'now'}"
    lines = [f"Cards and feedback, {period} (UTC)"]
    header = f"{'service':<28} {'variant':<14} {'shown':>6} {'accepted':>8} {'overridden':>10} {'rate':>6}"
    lines += [header, "-" * len(header)]
    for r in report.rows:
        rate = f"{r.acceptanceRate:.0%}" if r.acceptanceRate is not None else "-"
        lines.append(f"{r.service:<28} {r.variant:<14} {r.shown:>6} {r.accepted:>8} {r.overridden:>10} {rate:>6}")
        for reason, count in sorted(r.overrideReasons.items()):
            shown = f"{labels[reason]} ({reason})" if reason in labels else reason
            lines.append(f"{'':<28}   overridden: {shown} x{count}")
    if not report.rows:
        lines.append("(nothing in this period)")
    return "\n".join(lines)
