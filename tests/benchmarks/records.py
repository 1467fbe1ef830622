"""Synthetic patient-view requests of a given size, mostly Observations as real charts are."""

import random
from datetime import date, timedelta
from typing import Any

LAB_CODES = [("718-7", "g/dL", 13.5), ("787-2", "fL", 90.0), ("2345-7", "mg/dL", 95.0),
             ("2160-0", "mg/dL", 1.0), ("6690-2", "10*3/uL", 7.0), ("777-3", "10*3/uL", 250.0),
             ("2951-2", "mmol/L", 140.0), ("2823-3", "mmol/L", 4.2), ("4548-4", "%", 5.6)]


def build_request(n_resources: int, seed: int = 7) -> dict[str, Any]:
    """A request with the pattern (myalgia, fatigue, metformin) plus n-4 other resources."""
    rng = random.Random(seed)
    today = date.today()
    pid = "bench-1"

    def ago(days: int) -> str:
        return (today - timedelta(days=days)).isoformat()

    conditions = [
        {"resourceType": "Condition", "id": "c-myalgia", "subject": {"reference": f"Patient/{pid}"},
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "68962001", "display": "Myalgia"}]},
         "onsetDateTime": ago(10)},
        {"resourceType": "Condition", "id": "c-fatigue", "subject": {"reference": f"Patient/{pid}"},
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "84229001", "display": "Fatigue"}]},
         "onsetDateTime": ago(20)},
    ]
    meds = [{"resourceType": "MedicationRequest", "id": "m-metformin", "status": "active", "intent": "order",
             "subject": {"reference": f"Patient/{pid}"}, "authoredOn": ago(2000),
             "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                       "code": "861007", "display": "Metformin hydrochloride 500 MG Oral Tablet"}]}}]
    observations = []
    for i in range(max(0, n_resources - 4)):
        code, unit, mean = rng.choice(LAB_CODES)
        observations.append({
            "resourceType": "Observation", "id": f"o-{i}", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": ago(rng.randint(1, 700)),
            "valueQuantity": {"value": round(rng.gauss(mean, mean * 0.05), 2), "unit": unit,
                              "system": "http://unitsofmeasure.org", "code": unit},
        })

    def bundle(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset", "total": len(items),
                "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in items]}

    return {
        "hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "fhirServer": "http://fhir.example.org/fhir",
        "context": {"userId": "Practitioner/bench", "patientId": pid},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1950-03-01"},
            "conditions": bundle(conditions), "medications": bundle(meds), "observations": bundle(observations),
        },
    }
