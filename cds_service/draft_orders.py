"""DraftOrders: what the clinician is ordering now (order-select / order-sign context.draftOrders).

Drafts come from real clients in many shapes: the sandbox sends `reasonCode` and `category`
as single objects, a Bundle without `type`, entries without `fullUrl`, and DSTU2
`MedicationOrder` for older servers. We read what we understand and count the rest.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cds_service import fhir_models
from cds_service.concept_screen import ConceptScreen, record_label, texts_of
from cds_service.facts import RECORDS_PER_CHECK, Fact
from cds_service.fhir_dates import as_date
from cds_service.fhir_shapes import as_r4_order, items
from cds_service.knowledge import Knowledge
from cds_service.patient_data import PatientData, is_bundle, patient_of, reference_parts
from cds_service.record_readers import reported
from cds_service.textmatch import TimeCheck, no_time_limit

ORDER_TYPES = ("MedicationRequest", "ServiceRequest")

ORDER_REASON = "order-reason"  # Fact.status of a complaint named as a draft order's reason
REPORTED = "reported"  # Fact.status of a home medicine documented among the drafts: taken already, not ordered now


@dataclass
class DraftOrders:
    """Concepts named by the draft orders, and the complaint named in their reasons."""

    by_concept: dict[str, list[Fact]] = field(default_factory=lambda: defaultdict(list))
    reasons: list[Fact] = field(default_factory=list)
    references: set[str] = field(default_factory=set)
    skipped: int = 0

    def of(self, concepts: list[str]) -> list[Fact]:
        return [f for c in concepts for f in self.by_concept.get(c, [])]

    def ordered(self, concepts: list[str]) -> list[Fact]:
        """The drafts of `concepts` being ordered now: not a home medicine documented among them."""
        return [f for f in self.of(concepts) if f.status != REPORTED]


# the draft is read for its id alone (what it orders is screened in the raw JSON): a malformed element
# the rule never reads (a performer, an authoredOn such as "20261126") does not lose the order
_DRAFT_ELEMENTS = frozenset({"id"})


def _draft_entries(bundle: Any) -> list[tuple[str | None, Any]]:
    """(fullUrl, resource) of each draft; a single resource stands for itself. Bundles bent as
    prefetch Bundles are (no resourceType, `entry` as one object) are read the same way."""
    if not isinstance(bundle, dict):
        return []
    if not is_bundle(bundle):
        return [(None, bundle)]
    return [(e.get("fullUrl") if isinstance(e.get("fullUrl"), str) else None, e.get("resource"))
            for e in items(bundle.get("entry")) if isinstance(e, dict)]


def draft_resources(bundle: Any) -> list[Any]:
    return [resource for _, resource in _draft_entries(bundle)]


def _reference(selection: str) -> str:
    """`Type/id` of a selection written as a full URL or with a version (`.../MedicationRequest/1/_history/2`)."""
    return "/".join(reference_parts(selection.split("?", 1)[0].rstrip("/"))[-2:])


def _type_and_id(draft: dict[str, Any]) -> str | None:
    """`Type/id` of a draft whose type and id are strings (never str() of a nested value)."""
    rtype, rid = draft.get("resourceType"), draft.get("id")
    return f"{rtype}/{rid}" if isinstance(rtype, str) and isinstance(rid, str) else None


def selected_only(draft_orders: Any, selections: list[str]) -> list[Any]:
    """The drafts named in `selections` (by Type/id, as the hook defines it, or by a full URL, the
    entry's fullUrl or the bare id, as some clients write it; by Type for drafts that carry no id). A draft whose
    id is not named was not selected, even when the selections name nothing in the draft."""
    entries = [(url, d) for url, d in _draft_entries(draft_orders) if isinstance(d, dict)]
    chosen = {_reference(s) for s in selections} | set(selections)
    # a bare id ("m1"), as some clients write it against the hook's Type/id: every draft with that id
    bare = {s for s in selections if "/" not in s and ":" not in s}
    by_ref = [d for url, d in entries
              if _type_and_id(d) in chosen or url in chosen or (isinstance(d.get("id"), str) and d["id"] in bare)]
    if by_ref:
        return by_ref
    types = {_reference(s).split("/")[0] for s in selections}  # of a full URL too
    return [d for _, d in entries if isinstance(d.get("resourceType"), str) and d["resourceType"] in types and not d.get("id")]


def draft_medications(bundle: Any) -> PatientData:
    """The Medications sent among the drafts, for a draft that names its medicine by a
    medicationReference to one of them: by id (`Medication/id`), or by the entry's fullUrl (drafts
    are not stored yet, so they may point at each other by `urn:uuid:` fullUrls)."""
    data = PatientData()
    for url, resource in _draft_entries(bundle):
        if isinstance(resource, dict) and resource.get("resourceType") == "Medication":
            data.add(resource)
            if url is not None:
                data.medications.setdefault(url.rsplit("/", 1)[-1], resource)
    return data


def _with_performer_type(raw: dict[str, Any], screen: ConceptScreen) -> dict[str, Any]:
    """A referral coded by a catch-all code ('Patient referral') names its service by who is to perform
    it (performerType: 'Rheumatologist'), as referral guides code it: read as the service's names too
    (found in the order review). Any other order keeps its own code."""
    performer, code = raw.get("performerType"), raw.get("code")
    if not isinstance(performer, dict) or not isinstance(code, dict) or not screen.generic(code, "ServiceRequest"):
        return raw
    codings = [c for c in (*items(code.get("coding")), *items(performer.get("coding"))) if isinstance(c, dict)]
    service, who = (next(iter(texts_of(c)), None) for c in (code, performer))
    if who is None:
        return raw
    # named on the card as 'Patient referral (Rheumatologist)'
    return {**raw, "code": {"coding": codings, "text": f"{service} ({who})" if service else who}}


def _due(raw: dict[str, Any]) -> date | None:
    """The day a drafted test is for (ServiceRequest.occurrence[x]): one drawn in three months is
    checked against the results of then at order-sign (found in the order review)."""
    period = raw.get("occurrencePeriod")
    return as_date(raw.get("occurrenceDateTime")) or (as_date(period.get("start")) if isinstance(period, dict) else None)


def read_drafts(resources: list[Any], knowledge: Knowledge, today: date,
                check: TimeCheck = no_time_limit, medications: PatientData | None = None,
                patient_id: str | None = None) -> DraftOrders:
    """What the drafts order; `medications` (draft_medications) resolves a medicationReference."""
    return read_drafts_and_selected(resources, [], knowledge, today, check, medications, patient_id)[0]


def read_drafts_and_selected(
    resources: list[Any], selected: list[Any], knowledge: Knowledge, today: date,
    check: TimeCheck = no_time_limit, medications: PatientData | None = None, patient_id: str | None = None,
) -> tuple[DraftOrders, DraftOrders]:
    """(what every draft orders, what the `selected` ones order), as read_drafts reads each list, with
    each draft read once: `selected` are drafts of `resources` (selected_only), the same objects, as
    order-select reads both lists of one request. With `patient_id` (the hook's context), a draft
    that names no subject is the patient's, and one that names another patient is skipped."""
    drafts, chosen = DraftOrders(), DraftOrders()
    picked = {id(d) for d in selected}
    screen = ConceptScreen(knowledge, medications or PatientData(), check)
    withdrawn = frozenset(knowledge.rule.record_status.draft_not_ordered)
    tests = frozenset(knowledge.rule.orders.duplicate_test_concepts)
    for n, raw in enumerate(resources, 1):
        if n % RECORDS_PER_CHECK == 0:
            check()
        into = (drafts, chosen) if id(raw) in picked else (drafts,)
        if not isinstance(raw, dict):
            for d in into:
                d.skipped += 1
            continue
        sent_as = raw.get("resourceType")  # an older draft is named by its own type: the EHR knows no other
        raw = as_r4_order(raw)
        rtype = raw.get("resourceType")
        if not isinstance(rtype, str) or rtype not in ORDER_TYPES:
            continue
        state = raw.get("status")
        if raw.get("doNotPerform") is True or (isinstance(state, str) and state.strip().lower() in withdrawn):
            continue  # an order not to do something, or one withdrawn: nothing is being ordered
        if patient_id is not None and (named := patient_of(raw.get("subject"))) is not None and named != patient_id:
            for d in into:  # another patient's order among this patient's drafts: never read as hers
                d.skipped += 1
            continue
        # a draft is a draft: a client that leaves out the required status, intent or subject loses no order
        raw = {"status": "draft", "intent": "order", **raw}
        if patient_id is not None and "subject" not in raw:
            raw["subject"] = {"reference": f"Patient/{patient_id}"}
        if rtype == "ServiceRequest":
            raw = _with_performer_type(raw, screen)
        hits = screen.concepts(raw, rtype)
        reason_hits = _reason_concepts(raw, screen)
        if _for_another_reason(raw, screen, reason_hits):
            # CK for an infarct, ketorolac for renal colic: treats or investigates no muscle complaint
            hits = {c: how for c, how in hits.items() if c not in screen.k.rule.orders.muscle_order_concepts}
        if not hits and not reason_hits:
            continue
        model: Any = None if fhir_models.has_modifier_extension(raw) else fhir_models.parse(raw, _DRAFT_ELEMENTS)
        if model is None:
            for d in into:
                d.skipped += 1
            continue
        label = record_label(raw, screen, rtype)
        sent_as = sent_as if isinstance(sent_as, str) else rtype
        # a home medicine documented (reportedBoolean, reportedReference): in use, not ordered now
        status = REPORTED if rtype == "MedicationRequest" and reported(raw) else None
        reference = f"{sent_as}/{model.id}" if model.id else None
        # the day a test is for (order-sign's window); a drafted product stays under way as ordered
        due = _due(raw)
        for d in into:
            if reference in d.references:
                continue  # the same draft sent twice (an entry repeated): read once by each list, as patient data is
            if reference is not None:  # and as the R4 type it stands for, as an R4 server's prefetch holds it
                d.references |= {reference, f"{rtype}/{model.id}"}
            for concept, how in hits.items():
                d.by_concept[concept].append(Fact(concept, sent_as, model.id, label, today, True, how, status=status,
                                                  starts=due if concept in tests else None))
            for concept, text in reason_hits.items():
                d.reasons.append(Fact(concept, sent_as, model.id, text, today, True, "code", status=ORDER_REASON))
    return drafts, chosen


def _for_another_reason(raw: dict[str, Any], screen: ConceptScreen, reason_hits: dict[str, str]) -> bool:
    """Whether every reason the order gives is coded in a standard terminology (no catch-all code
    such as R52 'Pain, unspecified') and none names the complaint or a symptom that travels with it
    (cramp, weakness, fatigue) or a muscle disorder (rule.json orders.complaintReasonConcepts): the
    order is for that, an ankle sprain or influenza as much as an infarct."""
    reasons = items(raw.get("reasonCode"))
    rule = screen.k.rule
    complaint = {*rule.trigger.concepts, *rule.symptoms.concepts, *rule.orders.complaint_reason_concepts}
    if not reasons or not complaint.isdisjoint(reason_hits):
        return False
    return all(isinstance(r, dict) and screen.is_standard(r, "Condition") for r in reasons)


def _reason_concepts(raw: dict[str, Any], screen: ConceptScreen) -> dict[str, str]:
    """Complaints named as the order's reason, read as Conditions (coded, then text)."""
    found: dict[str, str] = {}
    for reason in items(raw.get("reasonCode")):
        if not isinstance(reason, dict):
            continue
        own_text: str = reason["text"] if isinstance(reason.get("text"), str) else ""
        displays = [c["display"] for c in items(reason.get("coding")) if isinstance(c, dict) and isinstance(c.get("display"), str) and c["display"]]
        text = own_text or (displays[0] if displays else screen.k.wording.phrases["reasonOnOrder"])
        for concept in screen.coded(reason, "Condition") or screen.text([own_text], "Condition"):
            found[concept] = text
    return found
