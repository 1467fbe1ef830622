"""`cds-service report`: cards shown and their feedback, per service and card variant.

One card, one outcome: a card's latest feedback (by outcomeTimestamp, then by when it was
received) decides whether it counts as accepted or overridden, and under which override
reason, so retries and changed minds never count a card twice and the rate stays within 100%.

A card in the audit is reported under the service and variant that returned it (whatever
service the feedback was posted to) and in the period it was shown, so its outcome always
counts against the same cards shown. Feedback whose card was never audited (another
deployment, or lost audit) is reported under the posted service, the variant `unknown-card`
and the period of its outcomeTimestamp. The acceptance rate is accepted / shown.
"""

from datetime import date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Engine, Subquery, and_, func, null, select, true

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


def _latest_feedback() -> Subquery:
    """Each card's latest feedback item: the one that decides its outcome."""
    newest_first = func.row_number().over(
        partition_by=card_feedback.c.card_uuid,
        order_by=(card_feedback.c.outcome_at.desc(), card_feedback.c.received_at.desc(), card_feedback.c.id.desc()),
    )
    ranked = select(
        card_feedback.c.card_uuid, card_feedback.c.service_id, card_feedback.c.outcome,
        card_feedback.c.override_system, card_feedback.c.override_code, card_feedback.c.outcome_at,
        newest_first.label("newest_first"),
    ).subquery()
    return select(ranked).where(ranked.c.newest_first == 1).subquery("latest")


def build_report(engine: Engine, since: date | None = None, until: date | None = None) -> Report:
    shown_query = (
        select(card_audit.c.service_id, card_audit.c.variant, func.count())
        .where(_period(card_audit.c.shown_at, since, until))
        .group_by(card_audit.c.service_id, card_audit.c.variant)
    )
    latest = _latest_feedback()
    outcome = (latest.c.outcome, latest.c.override_system, latest.c.override_code)
    audited_query = (
        select(card_audit.c.service_id, card_audit.c.variant, *outcome, func.count())
        .select_from(card_audit.join(latest, latest.c.card_uuid == card_audit.c.card_uuid))
        .where(_period(card_audit.c.shown_at, since, until))
        .group_by(card_audit.c.service_id, card_audit.c.variant, *outcome)
    )
    unaudited_query = (
        select(latest.c.service_id, null(), *outcome, func.count())
        .select_from(latest.outerjoin(card_audit, latest.c.card_uuid == card_audit.c.card_uuid))
        .where(card_audit.c.id.is_(None), _period(latest.c.outcome_at, since, until))
        .group_by(latest.c.service_id, *outcome)
    )
    rows: dict[tuple[str, str], ReportRow] = {}

    def row(service: str, variant: str | None) -> ReportRow:
        key = (service, variant or UNKNOWN_CARD)
        return rows.setdefault(key, ReportRow(service=key[0], variant=key[1]))

    with engine.connect() as connection:
        for service, variant, count in connection.execute(shown_query):
            row(service, variant).shown += count
        feedback = [*connection.execute(audited_query), *connection.execute(unaudited_query)]
        for service, variant, result, system, code, count in feedback:
            target = row(service, variant)
            if result == "accepted":
                target.accepted += count
            else:
                target.overridden += count
                reason = f"{system}|{code}" if system else code or NO_REASON
                target.overrideReasons[reason] = target.overrideReasons.get(reason, 0) + count
    for item in rows.values():
        item.acceptanceRate = round(item.accepted / item.shown, 4) if item.shown else None
        item.overrideReasons = dict(sorted(item.overrideReasons.items()))  # not in the database's grouping order
    return Report(since=since, until=until, rows=[rows[k] for k in sorted(rows)])


def format_report(report: Report, reason_labels: dict[str, str] | None = None) -> str:
    """A plain-text table for people; `--json` gives the same data for programs.
    `reason_labels` maps `system|code` to the wording the clinician saw on the card."""
    labels = reason_labels or {}
    period = f"{report.since or 'start'} .. {report.until or 'now'}"
    lines = [f"Cards and feedback, {period} (UTC)"]
    width = max([len("variant"), *(len(r.variant) for r in report.rows)])  # the longest variant name sets the column
    header = f"{'service':<28} {'variant':<{width}} {'shown':>6} {'accepted':>8} {'overridden':>10} {'rate':>6}"
    lines += [header, "-" * len(header)]
    for r in report.rows:
        rate = f"{r.acceptanceRate:.0%}" if r.acceptanceRate is not None else "-"
        lines.append(f"{r.service:<28} {r.variant:<{width}} {r.shown:>6} {r.accepted:>8} {r.overridden:>10} {rate:>6}")
        for reason, count in sorted(r.overrideReasons.items()):
            shown = f"{labels[reason]} ({reason})" if reason in labels else reason
            lines.append(f"{'':<28}   overridden: {shown} x{count}")
    if not report.rows:
        lines.append("(nothing in this period)")
    return "\n".join(lines)
