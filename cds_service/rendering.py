"""Turns an Assessment and the wording in cards/ into CDS Hooks Card models."""

import re
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any, Final

from cds_service.assessment import Assessment, format_value
from cds_service.draft_orders import ORDER_REASON
from cds_service.evidence import Evidence
from cds_service.facts import ORDERED_NOW, Fact
from cds_service.fhir_models import FHIR_ID
from cds_service.follow_up import result_test_label
from cds_service.knowledge import Knowledge
from cds_service.knowledge_models import CodingDef, VariantWording
from cds_service.lab_results import b12_band, crosses, low_flag_believed, unitless_bands
from cds_service.protocol import Action, Card, Coding, Indicator, Link, Source, Suggestion

# What can open markup mid-line: emphasis, code, strikethrough, tables, escapes, HTML and entities;
# autolinks and schemes (a `:` between a letter and a non-space as in `javascript:x` or `http://`,
# an `@` inside a word, the `.` of `www.`, the second `/` of a protocol-relative `//host` that
# linkify-style renderers link); and a link or image, which needs `](`, `][` or `![`.
# Cards put record text only between quotes or before `,`, `.` or a line end, never before `(`/`[`.
# "Symptom: dyspnea", "10:30", "Ouch!", "[Mass/volume]" and an `&` that can start no entity ("Folate & B12")
# stay as written: a renderer that shows markdown as text would print `&#38;`.
_MARKUP = re.compile(
    r"[\\`*_~<>|]|&(?=[A-Za-z0-9#])|(?<=[A-Za-z]):(?=\S)|(?<=\S)@(?=\S)|\](?=[(\[])|!(?=\[)|(?<=(?<![A-Za-z0-9])[wW]{3})\.|(?<=/)/"
)
_MAX_RECORD_TEXT = 120
# cards that review treatment instead of ordering a test: no "not redundant" section
MMA_AFTER_B12: Final = ("test-mma", "test-mma-after-normal-b12")
RAISED_MMA_REVIEW: Final = ("untreated-raised-mma", "untreated-raised-mma-after-nitrous-oxide")
TREATMENT_REVIEW: Final = ("untreated-low", "untreated-mma", *RAISED_MMA_REVIEW, "lapsed-treatment", "diagnosed-deficiency")


def plain_text(text: str, limit: int = _MAX_RECORD_TEXT) -> str:
    """Record text for a plain-text field: one line, at most `limit` characters, no control or
    invisible format characters (a bidi override could make the text read otherwise)."""
    visible = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) not in {"Cc", "Cf"})
    flat = " ".join(visible.split())
    return flat[: limit - 1] + "…" if len(flat) > limit else flat


def escape_text(text: str, limit: int = _MAX_RECORD_TEXT) -> str:
    """Record text made inert for GFM with raw HTML, placed mid-line (never at a line start).

    Only characters that can open markup become numeric character references; ordinary punctuation
    such as `( ) [ ] / . - '` is left as written, so a renderer that shows markdown as text still reads.
    """
    return _MARKUP.sub(lambda m: f"&#{ord(m.group(0))};", plain_text(text, limit))


def when_text(fact: Fact, k: Knowledge) -> str:
    return fact.when.isoformat() if fact.when else k.wording.phrases["undated"]


def _last_result(last: Fact, k: Knowledge) -> str:
    """The line naming the latest B12 or active-B12 result: which test, its value and date."""
    return k.wording.not_redundant["lastResult"].format(
        test=result_test_label(last, k), value=result_text(last, k), date=when_text(last, k))


def result_text(fact: Fact, k: Knowledge, threshold: float | None = None) -> str:
    """A lab result as the card shows it: "below 200.5 pg/mL (flagged low by the lab)". Comparators
    are written as words, so no `<` reaches markdown that renders raw HTML. Shown beside a threshold
    (in the canonical unit), the converted value keeps the decimals that tell it from the threshold."""
    words = k.wording.result
    censored = words.censored.get(fact.comparator or "", "")  # type: ignore[call-overload]
    reported = None
    if fact.reported_value is not None:  # as the lab wrote it: the unit is record text
        unit = escape_text(fact.reported_unit, 24) if fact.reported_unit else ""
        reported = f"{censored} {format_value(fact.reported_value)} {unit}".strip()
    if fact.value is None:
        if reported is None:
            text = words.no_value
        elif fact.implausible and (span := k.units[fact.concept].plausible_range) is not None:
            text = words.implausible.format(value=reported, low=f"{span[0]:g}", high=f"{span[1]:g}", unit=k.units[fact.concept].shown)
        else:
            text = (words.unconverted if fact.reported_unit else words.no_unit).format(value=reported)
            bands = k.rule.b12_result.bands.get(fact.concept)
            if fact.unitless_values and bands is not None and b12_band(fact, bands) != "unknown":
                units = " or ".join(k.units[fact.concept].candidate_units)
                agreed = len(unitless_bands(fact, bands)) == 1
                text = (words.no_unit_same_band if agreed else words.no_unit_never_normal).format(value=reported, units=units)
    else:
        shown = k.units[fact.concept].shown
        text = f"{censored} {format_value(fact.value, threshold)} {shown}".lstrip()
        same_unit = _unit_key(fact.reported_unit or "") in (_unit_key(shown), _unit_key(k.units[fact.concept].canonical_unit))
        if reported and not fact.reported_unit:  # read in the lab's one unit (units.json unitWhenAbsent)
            text = words.unit_assumed.format(value=text, unit=shown)
        elif reported and not same_unit:
            text = words.converted.format(reported=reported, converted=text)
        if fact.unit_from_range:  # no unit on the value, one on the range beside it
            text = words.unit_from_range.format(value=text)
    bands = k.rule.b12_result.bands.get(fact.concept)
    if not fact.flagged_low:
        normal = k.rule.b12_result.low_flags.normal_codes & fact.flags
        if normal and bands is not None and fact.value is not None and b12_band(fact, bands) == "deficient":
            return _with_flag(text, words.flagged_normal)  # the rule's reading and the lab's, both shown
        return text
    flag = words.flagged_low
    if bands is not None and bands.flag_believed_up_to is not None and not fact.implausible and not low_flag_believed(fact, bands):
        flag = words.flag_not_read.format(flag=flag, threshold=f"{bands.flag_believed_up_to:g} {bands.unit}")
    return _with_flag(text, flag)


def _with_flag(text: str, flag: str) -> str:
    if text.endswith(")"):  # one parenthesis: "95 pmol/L (128.7 pg/mL; flagged low by the lab)"
        return f"{text[:-1]}; {flag})"
    return f"{text} ({flag})"


def _unit_key(unit: str) -> str:
    """A unit as compared for display: "mL/min/1.73m2", "mL/min/1.73 m²" and "mL/min/{1.73_m2}" are one."""
    return "".join(c for c in unit.replace("²", "2") if c not in " {}_").casefold()


def fact_line(fact: Fact, k: Knowledge) -> str:
    origin = "" if fact.matched_by == "code" else f", {k.wording.phrases['matchedInText']}"
    source = k.wording.order_reason_source if fact.status == ORDER_REASON else fact.resource_type
    # a condition's end is the day the record was marked resolved: a lifelong one read so has not ended
    # as the record marks it (in remission, inactive); an end with any other status is an abatement
    marked = fact.status if fact.status in {"resolved", "inactive", "remission"} else "resolved"
    status = k.wording.status_words.get(marked, marked)
    ended = (f", {k.wording.condition_resolved.format(status=escape_text(status, 24), date=fact.until.isoformat())}"
             if fact.resource_type == "Condition" and fact.until else "")
    # a working diagnosis reads as one: a provisional B12 deficiency is no deficiency to treat
    suspected = (f", {escape_text(fact.verification, 24)}" if fact.resource_type == "Condition" and fact.verification
                 in k.rule.record_status.condition_verification_suspected else "")
    return f"“{escape_text(fact.text)}” ({source}, {when_text(fact, k)}{ended}{suspected}{origin})"


def lab_line(label: str, fact: Fact, k: Knowledge, threshold: float | None = None) -> str:
    """A lab result as a card lists it: its label, value and date (value beside `threshold` as precise
    as keeps the two apart)."""
    on = k.wording.phrases["resultOn"].format(result=result_text(fact, k, threshold), date=when_text(fact, k))
    return f"- **{label}**: {on}"


def _evidence_line(ev: Evidence, k: Knowledge) -> str:
    first = ev.facts[0] if ev.facts else None
    if first is not None and first.value is not None and first.concept in k.units:
        unit = k.units[first.concept].shown  # a converted lab value: canonical unit
        line = lab_line(ev.label, first, k, ev.threshold)
        phrases = k.wording.phrases
        if ev.lab_limit is not None and ev.limit_times is not None:  # the lab's own limit, in the canonical unit
            limit = f"{ev.lab_limit:g}"  # as the lab printed it, converted: an MMA's 318 nmol/L is 0.318, not 0.32
            line += " (" + (phrases["aboveLabLimit"].format(limit=limit, unit=unit) if ev.limit_times == 1 else
                            phrases["timesLabLimit"].format(times=f"{ev.limit_times:g}", limit=limit, unit=unit)) + ")"
        elif ev.flagged_high:
            line += f" ({phrases['flaggedHigh']})"
        elif ev.threshold is not None:
            line += f" ({ev.comparator} {ev.threshold:g} {unit})"
        return f"{line}. {ev.note}" if ev.note else line
    parts = [f"- **{ev.label}**"]
    if ev.facts:
        parts.append(": " + "; ".join(fact_line(f, k) for f in ev.facts[:3]))
        if len(ev.facts) > 3:
            parts.append("; " + k.wording.phrases["andMore"].format(count=len(ev.facts) - 3))
    if ev.since is not None and all(f.when != ev.since for f in ev.facts):
        parts.append(f" — {k.wording.medicine_since.format(date=ev.since.isoformat())}")
    if ev.ended is not None:  # a long course counted inside its grace window: not called current
        parts.append(f" — {k.wording.course_ended.format(date=ev.ended.isoformat())}")
    if ev.note:
        parts.append(f" — {ev.note}")
    if ev.checked is not None:  # the lab that answers the advice, in its place
        lab, name = ev.checked, k.concepts[ev.checked.concept].label
        parts.append(" " + (k.wording.phrases["checkedOrdered"].format(lab=name) if lab.status == ORDERED_NOW
                            else k.wording.phrases["checkedResult"].format(lab=name, result=result_text(lab, k), date=when_text(lab, k))))
    if ev.measured_since is not None:  # the lab result that decides instead of the diagnosis
        lab = ev.measured_since
        parts.append(" — " + k.wording.phrases["measuredSince"].format(
            lab=k.concepts[lab.concept].label, result=result_text(lab, k), date=when_text(lab, k)))
    return "".join(parts)


def _not_redundant(assessment: Assessment, k: Knowledge) -> list[str]:
    """Why no suppressor applies; a check made without data says so instead of "none on record"."""
    words = k.wording.not_redundant
    unchecked = assessment.unchecked
    lines: list[str] = []
    last = assessment.last_b12
    if "results" in unchecked and last is None:
        lines.append(words["resultsNotChecked"])
    elif assessment.variant == "test-mma-after-nitrous-oxide":
        if last is not None:
            lines.append(_last_result(last, k))
        lines.append(words["noRecentMma"].format(days=assessment.recent_result_days))
    elif assessment.variant == "test-mma-after-normal-b12" and last is not None:
        lines.append(_last_result(last, k))
        lines.append(words["discordantNormal"])
    elif assessment.low_in_pregnancy and last is not None:
        lines.append(_last_result(last, k))
        lines.append(words["lowTotalInPregnancy"])
    elif assessment.variant == "test-mma" and last is not None:
        # the result may be recent: what makes the card not redundant is the follow-up not yet taken
        lines.append(_last_result(last, k))
        lines.append(words["noFollowUpSince"])
    else:
        lines.append(words["noRecentResult"].format(days=assessment.recent_result_days))
        # a result of unknown status is a result on record, of which nothing can be said
        unknown = (assessment.no_result_b12 is not None
                   and assessment.no_result_b12.status in k.rule.record_status.observation_status_unknown)
        if assessment.no_result_b12 is not None:
            lines.append(words["unknownStatusResult" if unknown else "noResult"].format(
                record=fact_line(assessment.no_result_b12, k)))
        if last is None:
            if assessment.undated_b12 is not None:
                lines.append(words["undatedResult"].format(value=result_text(assessment.undated_b12, k)))
            elif not unknown:
                lines.append(words["noResultOnRecord"])
        else:
            lines.append(_last_result(last, k))
            if assessment.new_risk_since_normal:
                lines.append(words["newRiskSinceNormal"].format(date=when_text(last, k)))
    if "therapy" in unchecked:
        lines.append(words["therapyNotChecked"])
    elif assessment.past_therapy:
        lines.append(words["pastTherapy"].format(treatment=fact_line(assessment.past_therapy[0], k)))
    elif assessment.held_therapy is not None:  # a paused order says more than an older course
        lines.append(words["heldTherapy"].format(treatment=fact_line(assessment.held_therapy, k)))
    elif assessment.earlier_therapy is not None:
        lines.append(words["earlierTherapy"].format(treatment=_therapy_line(assessment.earlier_therapy, k)))
    else:
        lines.append(words["noTherapy"])
    if "orders" in unchecked:
        lines.append(words["ordersNotChecked"])
    elif assessment.lapsed_orders:
        latest = max(assessment.lapsed_orders, key=lambda f: f.when or date.min)
        days = k.rule.suppressors.pending_order_days
        if latest.starts is not None and latest.starts != latest.when:  # written for a day of its own
            lines.append(words["lapsedOrderDue"].format(date=when_text(latest, k), due=latest.starts.isoformat(), days=days,
                                                        ahead=k.rule.suppressors.recent_result_days))
        else:
            lines.append(words["lapsedOrder"].format(date=when_text(latest, k), days=days))
    else:
        lines.append(words["noPendingOrder"])
    return [f"- {line}" for line in lines]


def _therapy_line(fact: Fact, k: Knowledge) -> str:
    """A B12 course or dose, with when a course ended when it is recorded."""
    return fact_line(fact, k) + (f" — {k.wording.course_ended.format(date=fact.until.isoformat())}" if fact.until else "")


def _caveats(assessment: Assessment, k: Knowledge) -> list[str]:
    """What the data sent did not let the rule check: the age limit, records that could not be read."""
    words = k.wording.not_redundant
    lines = []
    if assessment.variant in TREATMENT_REVIEW:  # the not-checked lines have no other section
        lines += [words[key] for check, key in (("therapy", "therapyNotChecked"), ("orders", "ordersNotChecked"))
                  if check in assessment.unchecked]
    if "age" in assessment.unchecked:
        lines.append(words["ageNotChecked"].format(age=k.rule.population.min_age_years))
    lines += [words["implausibleResult"].format(lab=k.concepts[f.concept].label, result=result_text(f, k), date=when_text(f, k))
              for f in assessment.implausible]
    if assessment.unreadable:
        lines.append(words["unreadableRecords"].format(count=assessment.unreadable))
    return ["", f"**{k.wording.headings['caveats']}**"] + [f"- {line}" for line in lines] if lines else []


def therapy_unchecked(assessment: Assessment) -> bool:
    """A treatment-review card made without all the B12 replacement records the service asks for."""
    return assessment.variant in TREATMENT_REVIEW and "therapy" in assessment.unchecked


def render_detail(assessment: Assessment, k: Knowledge) -> str:
    w = k.wording
    assert assessment.variant is not None and assessment.indicator is not None
    h = w.headings
    out = [w.variants[assessment.variant].intro, "", f"**{h['complaint']}**"]
    if therapy_unchecked(assessment):  # its intro says no replacement was given: said first that it is unverified
        out = [w.phrases["therapyUncheckedFirst"], "", *out]
    out += [f"- {fact_line(f, k)}" for f in assessment.trigger[:3]]
    if assessment.last_b12 is not None and (
        assessment.variant == "untreated-low" or (assessment.variant == "lapsed-treatment" and assessment.b12_band == "deficient")
    ):
        last = assessment.last_b12
        unit = k.units[last.concept].shown
        cut_off = k.rule.b12_result.bands[last.concept].deficient_below
        label = k.concepts[last.concept].label  # total or active B12
        # a lab's low flag decides over this rule's cut-off (assay-dependent): say so beside a value above it
        flag_decides = low_flag_believed(last, k.rule.b12_result.bands[last.concept]) and not crosses(last, "<", cut_off)
        below = w.phrases["flagOverCutOff" if flag_decides else "deficientBelow"].format(threshold=f"{cut_off:g} {unit}")
        out += ["", f"**{h['latestB12']}**", f"{lab_line(label, last, k, cut_off)} ({below})"]
    elif assessment.last_b12 is not None and assessment.variant in RAISED_MMA_REVIEW:
        last = assessment.last_b12  # the serum B12 that misled: the MMA is read beside it
        out += ["", f"**{h['latestB12']}**", lab_line(k.concepts[last.concept].label, last, k)]
    if assessment.variant == "diagnosed-deficiency" and assessment.diagnosis is not None:
        out += ["", f"**{h['diagnosis']}**", f"- {fact_line(assessment.diagnosis, k)}"]
        latest = assessment.earlier_therapy or next(iter(assessment.past_therapy), None)  # given since a result, or ever
        if latest is not None:
            out += ["", f"**{h['latestTreatment']}**", f"- {_therapy_line(latest, k)}"]
    if assessment.variant in TREATMENT_REVIEW and assessment.held_therapy is not None:
        out += ["", f"**{h['heldTreatment']}**", f"- {fact_line(assessment.held_therapy, k)}"]
    if assessment.variant == "lapsed-treatment":
        out += ["", f"**{h['treatmentSince']}**"] + [
            f"- {_therapy_line(f, k)}" for f in assessment.past_therapy[:3]
        ]
    if assessment.signs:
        out += ["", f"**{h['signs']}**"] + [_evidence_line(e, k) for e in assessment.signs]
    if assessment.risk_factors:
        out += ["", f"**{h['riskFactors']}**"] + [_evidence_line(e, k) for e in assessment.risk_factors]
    if assessment.short_courses:
        out += ["", f"**{h['notYetRiskFactors']}**"] + [_evidence_line(e, k) for e in assessment.short_courses]
    if assessment.confounders:
        review = {c.id: c.review_advice for c in k.rule.confounders if c.review_advice} if assessment.variant in TREATMENT_REVIEW else {}
        out += ["", f"**{h['confounders']}**"] + [_evidence_line(replace(e, note=review[e.id]) if e.id in review else e, k)
                                                  for e in assessment.confounders]
    if assessment.variant in TREATMENT_REVIEW:
        criteria = w.criteria[assessment.variant]  # no test to justify: no "not redundant" section
    else:
        out += ["", f"**{h['notRedundant']}**"] + _not_redundant(assessment, k)
        # an info card with a risk factor was lowered by an event that may explain the aches: say so
        criteria = w.criteria["info-explained" if assessment.indicator == Indicator.INFO and assessment.risk_factors
                              else "warning-without-risk-factor" if assessment.indicator == Indicator.WARNING and not assessment.risk_factors
                              else "critical-untreated-low" if assessment.critical_feature == "untreated-low"
                              else assessment.indicator.value]
    out += _caveats(assessment, k)
    out += ["", f"**{h['criteria']}**: {criteria} (knowledge {k.version})"]
    return "\n".join(out)


def _coding(c: CodingDef) -> dict[str, str]:
    return {"system": c.system, "code": c.code, "display": c.display}


def build_order(
    order: CodingDef, k: Knowledge, patient_id: str, now: datetime, reasons: list[Fact],
    encounter_id: str | None, user_id: str | None, complaint_reason: bool = True,
    reason_text: str | None = None, supporting: Sequence[str] = (),
) -> dict[str, Any]:
    """The ServiceRequest the suggestion creates, validated against the R4B model. Without the
    complaint as its reason it states `reason_text`; `supporting` names the records it goes with
    (the B12 product a baseline level is taken before, the B12 result an MMA follows)."""
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "category": [{"coding": [_coding(k.wording.order_category)]}],
        "code": {"coding": [_coding(order)], "text": order.display},
        "subject": {"reference": f"Patient/{patient_id}"},
        # an instant, not a date: a UTC date is tomorrow for an evening clinic west of Greenwich
        "authoredOn": now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if complaint_reason:
        resource["reasonCode"] = [{"coding": [_coding(k.wording.order_reason)], "text": k.wording.order_reason.display}]
    elif reason_text:
        resource["reasonCode"] = [{"text": reason_text}]
    refs = [{"reference": f.reference} for f in reasons if f.reference and f.resource_type in ("Condition", "Observation")]
    if refs:
        resource["reasonReference"] = refs
    linked = [ref for ref in supporting if _is_reference(ref)]
    if linked:
        resource["supportingInfo"] = [{"reference": ref} for ref in linked]
    # context ids become references only when they are FHIR ids: anything else would make the order invalid
    if encounter_id and FHIR_ID.fullmatch(encounter_id):
        resource["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    user_type, _, user = (user_id or "").partition("/")
    if user_type in ("Practitioner", "PractitionerRole") and FHIR_ID.fullmatch(user):
        resource["requester"] = {"reference": user_id}
    return resource  # its shape is validated against the R4B model by the scenario tests


def _is_reference(ref: str) -> bool:
    """A relative `Type/id` reference with a FHIR id (a draft's, as the EHR named it)."""
    rtype, _, rid = ref.partition("/")
    return rtype.isalpha() and bool(FHIR_ID.fullmatch(rid))


def new_uuid() -> str:
    return str(uuid.uuid4())


def order_suggestion(
    variant: VariantWording, k: Knowledge, patient_id: str, now: datetime, reasons: list[Fact],
    encounter_id: str | None, user_id: str | None, new_id: Callable[[], str], complaint_reason: bool | None = None,
    supporting: Sequence[str] = (),
) -> list[Suggestion] | None:
    """The one-click order of the variant's test, or None when the variant orders nothing. The
    order names the muscle complaint as its reason when the variant says so, unless the caller
    knows nothing of the complaint (`complaint_reason=False`)."""
    if variant.order is None or not variant.suggestion_label:
        return None
    reason = variant.order_reason_is_complaint if complaint_reason is None else complaint_reason
    order = build_order(variant.order, k, patient_id, now, reasons, encounter_id, user_id, reason,
                        variant.order_reason_text, supporting)
    action = Action(type="create", description=k.wording.phrases["orderAction"].format(display=variant.order.display),
                    resource=order)
    return [Suggestion(label=variant.suggestion_label, uuid=new_id(), isRecommended=True, actions=[action])]


_CRITICAL_PHRASES: Final = {"neurological": "criticalNeurological", "macrocytic-anaemia": "criticalMacrocyticAnaemia",
                             "both": "criticalBoth", "untreated-low": "criticalUntreatedLow"}


def card_frame(
    k: Knowledge, variant: VariantWording, detail: str, indicator: Indicator,
    suggestions: list[Suggestion] | None, new_id: Callable[[], str], critical_feature: str | None = None,
    unverified_therapy: bool = False,
) -> Card:
    """What every card of this service shares: source and links; its variant's summary (a critical
    one names what made it critical) and override reasons; a fresh uuid."""
    w = k.wording
    topic = Coding(**_coding(w.source.topic)) if w.source.topic else None
    summary = variant.summary
    critical = w.phrases[_CRITICAL_PHRASES[critical_feature]] if indicator == Indicator.CRITICAL and critical_feature else None
    if unverified_therapy and critical and variant.summary_therapy_unchecked_critical:
        summary = variant.summary_therapy_unchecked_critical.replace("{critical}", critical)
    elif unverified_therapy and variant.summary_therapy_unchecked:
        summary = variant.summary_therapy_unchecked
    elif critical_feature == "untreated-low" and critical and variant.summary_untreated_low:
        summary = variant.summary_untreated_low
    elif critical and variant.summary_critical:
        summary = variant.summary_critical.replace("{critical}", critical)
    return Card(
        uuid=new_id(),
        summary=summary,
        detail=detail,
        indicator=indicator,
        source=Source(label=w.source.label, url=w.source.url, topic=topic),
        suggestions=suggestions,
        selectionBehavior="at-most-one" if suggestions else None,
        overrideReasons=[Coding(**_coding(c)) for c in w.override_reasons_for(variant)],
        links=[Link(label=link.label, url=link.url, type=link.type) for link in w.links],
    )


def render_card(
    assessment: Assessment, k: Knowledge, patient_id: str, now: datetime,
    encounter_id: str | None = None, user_id: str | None = None,
    new_id: Callable[[], str] = new_uuid, preface: str | None = None,
) -> Card:
    """The card for a firing assessment (callers check `assessment.fires`)."""
    assert assessment.variant is not None and assessment.indicator is not None
    variant = k.wording.variants[assessment.variant]
    # a methylmalonic acid follows a B12 result (indeterminate, or normal beside a strong picture): the lab sees which
    last = assessment.last_b12
    follows = [last.reference] if assessment.variant in MMA_AFTER_B12 and last is not None and last.reference else []
    suggestions = order_suggestion(
        variant, k, patient_id, now, list(assessment.trigger), encounter_id, user_id, new_id, supporting=follows
    )
    detail = render_detail(assessment, k)
    if preface:
        detail = f"{preface}\n\n{detail}"
    return card_frame(k, variant, detail, assessment.indicator, suggestions, new_id, assessment.critical_feature,
                      therapy_unchecked(assessment))
