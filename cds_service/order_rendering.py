"""Cards for order-select and order-sign, from an OrderAssessment and the wording in cards/."""

from collections.abc import Callable
from datetime import datetime

from cds_service.facts import Fact, awaiting_result
from cds_service.knowledge import Knowledge
from cds_service.lab_results import b12_band, low_flag_believed
from cds_service.order_rules import OrderAssessment
from cds_service.protocol import Action, Card, Suggestion
from cds_service.rendering import (
    card_frame,
    escape_text,
    fact_line,
    lab_line,
    new_uuid,
    order_suggestion,
    render_card,
)

_BAND_PHRASES = {"deficient": "bandDeficient", "indeterminate": "bandIndeterminate", "normal": "bandNormal"}


def _earlier_line(fact: Fact, k: Knowledge, banded: bool = True) -> str:
    if fact.resource_type == "Observation" and not awaiting_result(fact, k):
        line = lab_line(k.concepts[fact.concept].label, fact, k)
        bands = k.rule.b12_result.bands.get(fact.concept)
        band = b12_band(fact, bands) if banded and bands is not None and not low_flag_believed(fact, bands) else None
        # the band a B12 level fell in, so an old low one reads as low ("flagged low" says so already)
        return f"{line} ({k.wording.phrases[_BAND_PHRASES[band]]})" if band in _BAND_PHRASES else line
    # a FHIR status code is no word for the clinician: a registered sample has no result yet; "on-hold" reads "on hold"
    if fact.resource_type == "Observation":
        status = f", {k.wording.phrases['sampleNoResult']}"
    else:
        status = f", {k.wording.status_words.get(fact.status, fact.status)}" if fact.status else ""
        if fact.starts is not None and fact.when is not None and fact.starts > fact.when:  # written for a later day
            status += f", {k.wording.phrases['orderDue'].format(date=fact.starts.isoformat())}"
    return f"- **{k.concepts[fact.concept].label}**: {fact_line(fact, k)}{escape_text(status)}"


def render_order_card(
    oa: OrderAssessment, k: Knowledge, patient_id: str, now: datetime,
    encounter_id: str | None = None, user_id: str | None = None, new_id: Callable[[], str] = new_uuid,
) -> Card:
    """The card for a firing order assessment (callers check `oa.fires`)."""
    assert oa.card is not None and oa.indicator is not None
    w = k.wording
    ordered = ", ".join(escape_text(f.text) for f in oa.ordered[:3])
    if oa.card == "pattern":
        assert oa.pattern is not None
        preface = w.order_select_intro.format(orders=ordered)
        return render_card(oa.pattern, k, patient_id, now, encounter_id, user_id, new_id, preface)

    variant = w.variants[oa.card]
    intro = variant.intro
    if oa.card == "duplicate-order" and oa.earlier and all(awaiting_result(f, k) for f in oa.earlier):
        intro = w.phrases["duplicateSampleIntro"]  # a sample at the lab, not an order waiting: say so
    lines = [intro, "", f"**{w.phrases['orderedNow']}**: {ordered}"]
    if oa.card in ("measure-before-treat", "measure-active-before-treat"):
        words = w.not_redundant
        # a check made without data says so: the EHR may hold the level, treatment or order it did not send
        recent = words["resultsNotChecked"] if "results" in oa.unchecked else \
            words["noRecentLevel"].format(days=k.rule.orders.level_on_file_days)
        banded = oa.card != "measure-active-before-treat"  # in pregnancy a total B12 is read with care
        lines += ["", f"**{w.headings['earlier']}**", f"- {recent}"] + [_earlier_line(f, k, banded) for f in oa.earlier[:1]]
        lines += [f"- {words[key]}" for check, key in (("therapy", "therapyNotChecked"), ("orders", "ordersNotChecked"))
                  if check in oa.unchecked]
        lines += ["", f"**{w.headings['criteria']}**: {w.criteria['measure-before-treat']}"]
        products = [f.reference for f in oa.ordered if f.reference]  # the baseline goes with them
        suggestions = order_suggestion(variant, k, patient_id, now, [], encounter_id, user_id, new_id,
                                       supporting=products)
        return card_frame(k, variant, "\n".join(lines), oa.indicator, suggestions, new_id)

    heading = w.headings["sameOrder"] if oa.card == "duplicate-in-draft" else w.headings["earlier"]
    # a total B12 taken in pregnancy is read with care, not by the bands (the card says why)
    banded = oa.next_step != "active-b12" and oa.card != "measure-active-before-treat"
    lines += ["", f"**{heading}**"] + [_earlier_line(f, k, banded) for f in oa.earlier[:3]]
    if oa.combined_panel:
        lines += ["", w.phrases["combinedPanel"]]
    if oa.next_step == "treat":  # definite only when the medicines were read: the EHR may not have sent them
        lines += ["", w.phrases["nextStepTreat" if "therapy" in oa.unchecked else "nextStepTreatUntreated"]]
    elif oa.next_step == "mma":
        lines += ["", w.phrases["nextStepMma"]]
    elif oa.next_step == "active-b12":
        lines += ["", w.phrases["nextStepActiveB12"]]
    window = k.rule.suppressors.recent_result_days
    criteria = w.criteria["duplicate-in-draft"] if oa.card == "duplicate-in-draft" else w.criteria["duplicate"].format(days=window)
    lines += ["", f"**{w.headings['criteria']}**: {criteria}"]
    drafts = [f.reference for f in oa.ordered if f.reference]
    suggestions = None
    if drafts:
        # each removal names its test, so the clinician sees which of two goes (the total B12, not the active one)
        removals = [Action(type="delete", description=w.remove_draft_action.format(test=escape_text(f.text, 80)), resourceId=f.reference)
                    for f in oa.ordered if f.reference]
        suggestions = [Suggestion(label=w.remove_duplicate_label, uuid=new_id(), isRecommended=False, actions=removals)]
        swaps = {"mma": ("test-mma", "replaceWithMma"), "active-b12": ("test-active-b12", "replaceWithActiveB12")}
        if oa.next_step in swaps:  # one click: the repeat out, the test NG239 advises in
            variant_id, label = swaps[oa.next_step]
            # order-sign reads no complaint: the new order states no reason it cannot vouch for
            instead = order_suggestion(w.variants[variant_id], k, patient_id, now, [], encounter_id, user_id, new_id,
                                       complaint_reason=False)
            if instead:
                swap = Suggestion(label=w.phrases[label], uuid=new_id(), isRecommended=False,
                                  actions=[*removals, *(instead[0].actions or [])])
                suggestions.append(swap)
    if oa.next_step == "treat" and variant.summary_treat:  # the low result matters more than the duplicate
        variant = variant.model_copy(update={"summary": variant.summary_treat})
    return card_frame(k, variant, "\n".join(lines), oa.indicator, suggestions, new_id)
