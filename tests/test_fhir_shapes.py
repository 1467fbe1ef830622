"""Orders in DSTU2 and STU3 shapes read as the R4 orders they stand for (fhir_shapes.as_r4_order)."""

from typing import Any

import pytest

from cds_service.fhir_shapes import as_r4_order

B12 = {"coding": [{"system": "http://loinc.org", "code": "2132-9"}]}


def test_a_dstu2_diagnostic_order_is_dated_by_its_requested_event() -> None:
    order = {"resourceType": "DiagnosticOrder", "id": "d1", "status": "requested", "subject": {"reference": "Patient/p"},
             "event": [{"status": "received", "dateTime": "2026-01-05"}, {"status": "requested", "dateTime": "2026-01-03"}],
             "item": [{"code": B12}]}
    r4 = as_r4_order(order)
    assert (r4["resourceType"], r4["status"], r4["intent"], r4["authoredOn"], r4["code"]) == \
        ("ServiceRequest", "active", "order", "2026-01-03", B12)
    unlabelled = {**order, "event": [{"dateTime": "2026-02-01"}, {"dateTime": "2026-01-20"}]}
    assert as_r4_order(unlabelled)["authoredOn"] == "2026-01-20"  # no requested event: the earliest


@pytest.mark.parametrize(("status", "expected"), [
    ("proposed", ("draft", "proposal")), ("planned", ("draft", "plan")), ("suspended", ("on-hold", "order")),
    ("rejected", ("revoked", "order")), ("in-progress", ("active", "order")), ("completed", ("completed", "order")),
])
def test_older_statuses_as_r4_writes_them(status: str, expected: tuple[str, str]) -> None:
    r4 = as_r4_order({"resourceType": "DiagnosticOrder", "status": status, "item": [{"code": B12}]})
    assert (r4["status"], r4["intent"]) == expected


def test_an_order_with_no_status_gets_none() -> None:
    """R4 refuses an order with no status: a record sent so is not read as pending (a draft gets its own default)."""
    assert "status" not in as_r4_order({"resourceType": "ProcedureRequest", "code": B12})


def test_dstu2_dates_of_a_procedure_request_and_a_referral() -> None:
    procedure = as_r4_order({"resourceType": "ProcedureRequest", "status": "active", "code": B12,
                             "orderedOn": "2026-03-01", "scheduledDateTime": "2026-03-10"})
    assert (procedure["authoredOn"], procedure["occurrenceDateTime"]) == ("2026-03-01", "2026-03-10")
    referral = as_r4_order({"resourceType": "ReferralRequest", "status": "active", "dateSent": "2026-04-01",
                            "specialty": {"text": "Rheumatology"}})
    assert (referral["authoredOn"], referral["code"]) == ("2026-04-01", {"text": "Rheumatology"})


def test_a_dstu2_medication_order_keeps_its_end_and_only_r4_dosing() -> None:
    order: dict[str, Any] = {
        "resourceType": "MedicationOrder", "id": "m1", "status": "completed", "patient": {"reference": "Patient/p"},
        "dateWritten": "2026-01-01", "dateEnded": "2026-06-01", "medicationCodeableConcept": {"text": "Hydroxocobalamin"},
        "dosageInstruction": [{"text": "1 mg IM", "doseQuantity": {"value": 1},
                               "timing": {"repeat": {"frequency": 1, "period": 3, "periodUnits": "mo", "count": 4}}}],
    }
    r4 = as_r4_order(order)
    assert (r4["resourceType"], r4["subject"], r4["authoredOn"], r4["intent"]) == \
        ("MedicationRequest", {"reference": "Patient/p"}, "2026-01-01", "order")
    assert r4["dispenseRequest"] == {"validityPeriod": {"end": "2026-06-01"}}
    assert r4["dosageInstruction"] == [{"text": "1 mg IM", "timing": {"repeat": {"count": 4}}}]
    ended = {**order, "dispenseRequest": {"validityPeriod": {"start": "2026-01-01", "end": "2026-05-01"}}}
    assert as_r4_order(ended)["dispenseRequest"]["validityPeriod"] == {"start": "2026-01-01", "end": "2026-05-01"}


def test_any_other_resource_is_left_as_it_is() -> None:
    for raw in ({"resourceType": "Observation", "status": "final"}, {"resourceType": {"nested": 1}}, {}):
        assert as_r4_order(raw) is raw
