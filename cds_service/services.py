"""The CDS services this plugin offers: ids, hooks, wording for discovery and prefetch templates."""

from dataclasses import dataclass, replace

from cds_service.contract import SERVICE_HOOKS
from cds_service.knowledge import Knowledge
from cds_service.observation_reader import NEGATIVE_ANSWER
from cds_service.prefetch import CHECK_KEYS, ESSENTIAL_KEYS
from cds_service.protocol import ServiceDescription
from cds_service.valueset import ICD10CM, codes_of

PATIENT = "{{context.patientId}}"


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: str
    title: str
    description: str
    prefetch: dict[str, str]  # the searches the service runs itself for a key left out
    declared: dict[str, str] | None = None  # the templates discovery lists, when not those
    # keys read only for the card's advice (whether replacement is under way): fetched when left
    # out, but their loss costs no 412, as the card then says what it could not check
    advisory: frozenset[str] = frozenset()

    def needs(self, key: str) -> bool:
        """Whether the service cannot answer safely without `key` (a 412 when it cannot be had)."""
        return key in ESSENTIAL_KEYS and key not in self.advisory

    def describe(self) -> ServiceDescription:
        return ServiceDescription(
            hook=self.hook, id=self.id, title=self.title,
            description=self.description, prefetch=self.declared if self.declared is not None else self.prefetch,
        )


def _token_list(k: Knowledge, concepts: list[str], icd10: bool | None = None) -> str:
    """`system|code,system|code` for a FHIR token search that ORs every code of the concepts; only
    the ICD-10-CM codes (`icd10` True), or all but them (False)."""
    sets = [k.valuesets[v] for v in (k.concepts[c].value_set for c in concepts) if v]
    return ",".join(f"{system}|{code}" for system, code in codes_of(sets)
                    if icd10 is None or (system == ICD10CM) == icd10)


def _concepts_for(k: Knowledge, resource_type: str) -> list[str]:
    """Concepts coded in `resource_type`.code (answers such as "No" or "Pregnant" are values, not codes
    to search: their question's code is)."""
    return sorted(
        c.id for c in k.concepts.values()
        if resource_type in c.applies_to and c.value_set and c.id != NEGATIVE_ANSWER and c.answer_of is None
        and not c.history_question  # read only to be left out: never asked for
    )


def _since(parameter: str, days: int, date_tokens: bool) -> str:
    """A search's date bound, `&date=ge{{today() - N days}}`; none without date tokens (CDS Hooks 2.0
    defines only context tokens: a client that fills no others would leave the key out)."""
    return f"&{parameter}=ge{{{{today() - {days} days}}}}" if date_tokens else ""


def prefetch_templates(k: Knowledge, date_tokens: bool = True) -> dict[str, str]:
    """FHIR searches for everything the rule reads, generated from the value sets so they never drift.
    Without `date_tokens` the bounded searches ask for every date: the rule reads each finding only
    inside its own look-back, a diet or family history (a lasting state) at any date."""
    lookback = k.rule.prefetch.observation_lookback_days
    therapy = k.rule.suppressors
    status = k.rule.record_status
    # past courses too: the start of long-term use, and B12 given after a low result
    medication_status = ",".join(status.medication_active + status.medication_past + status.medication_renewal_only)
    statement_status = ",".join(status.medication_statement_active + status.medication_statement_past)
    return {
        "patient": f"Patient/{PATIENT}",
        "conditions": f"Condition?patient={PATIENT}",
        # Observations are coded in LOINC and SNOMED CT; the few coded in ICD-10-CM, a classification
        # of diagnoses, go in a search of their own: together one search ran to 8.7 KB as a GET URL,
        # past the 8 KB most servers accept (IIS: 2 KB); apart they are 3.5 and 5.3 KB.
        "observations": (
            f"Observation?patient={PATIENT}&code={_token_list(k, _concepts_for(k, 'Observation'), icd10=False)}"
            + _since("date", lookback, date_tokens)
        ),
        "observationsIcd10": (
            f"Observation?patient={PATIENT}&code={_token_list(k, _concepts_for(k, 'Observation'), icd10=True)}"
            + _since("date", lookback, date_tokens)
        ),
        "b12Results": (
            f"Observation?patient={PATIENT}"
            f"&code={_token_list(k, k.rule.b12_result.result_concepts + k.rule.b12_result.recent_result_concepts)}"
        ),
        "medications": (
            f"MedicationRequest?patient={PATIENT}&status={medication_status}"
            "&_include=MedicationRequest:medication"
        ),
        # the Medication a statement names by reference (EHRs record patient-reported B12, metformin
        # and PPIs so): without it the statement has no drug, and B12 replacement goes unseen
        "medicationStatements": (
            f"MedicationStatement?patient={PATIENT}&status={statement_status}"
            "&_include=MedicationStatement:medication"
        ),
        # Every dose given in the look-back, whatever its code: EHRs record administrations under the
        # product given (an RxNorm SCD such as a cyanocobalamin injectable solution), which a token
        # search for the listed codes would miss; the rule finds B12 by code, else by the product's name.
        "b12Administrations": (
            f"MedicationAdministration?patient={PATIENT}&_include=MedicationAdministration:medication"
            + _since("effective-time", k.rule.prefetch.administration_lookback_days, date_tokens)
        ),
        "procedures": f"Procedure?patient={PATIENT}&code={_token_list(k, _concepts_for(k, 'Procedure'))}",
        "b12Orders": (
            f"ServiceRequest?patient={PATIENT}&code={_token_list(k, therapy.pending_order_concepts)}"
            f"&status={','.join(status.pending_order_status)}"
        ),
    }


def _pregnancy_observations(k: Knowledge, date_tokens: bool) -> str:
    """The Observations that say whether the patient is pregnant now: the questions whose answers the
    pregnancy rule reads (pregnancy status), and the pregnancy concept when it is read from one."""
    rule = k.rule.pregnancy
    answers = rule.pregnant_status_concepts + rule.not_pregnant_status_concepts
    questions = {q for q in (k.concepts[a].answer_of for a in answers) if q is not None}
    if "Observation" in k.concepts[rule.concept].applies_to:
        questions.add(rule.concept)
    return (f"Observation?patient={PATIENT}&code={_token_list(k, sorted(questions))}"
            + _since("date", rule.lookback_days, date_tokens))


def service_definitions(k: Knowledge, date_tokens: bool = True) -> dict[str, ServiceDefinition]:
    """The services. Without `date_tokens` (Settings.prefetch_date_tokens) discovery declares its
    searches with no date bound, for a client that fills only CDS Hooks 2.0's tokens, while the
    service's own fetches keep theirs (it fills them itself): a long record then pages no further
    than it must, and the rule reads each finding inside its own look-back either way."""
    dated = _service_definitions(k, True)
    if date_tokens:
        return dated
    undated = _service_definitions(k, False)
    return {sid: replace(s, declared=undated[sid].prefetch) for sid, s in dated.items()}


def _service_definitions(k: Knowledge, date_tokens: bool) -> dict[str, ServiceDefinition]:
    prefetch = prefetch_templates(k, date_tokens)
    order_prefetch = {
        key: prefetch[key]
        for key in ("patient", "conditions", "observations", "observationsIcd10", "medications", "medicationStatements",
                    "b12Administrations", "procedures", "b12Orders", "b12Results")
    }
    # conditions and observations: only for a current pregnancy (a pregnancy Condition, or a pregnancy
    # status Observation), in which a low total B12 makes no active B12 test redundant; so its
    # observations are the pregnancy status answers of the pregnancy window only, not every sign and lab
    sign_prefetch = {key: prefetch[key] for key in ("patient", "conditions", "b12Results", "b12Orders")}
    sign_prefetch["observations"] = _pregnancy_observations(k, date_tokens)
    # the B12 replacement on record: a recent low result is then no call to treat (advisory: the
    # duplicate-test check itself needs none of it)
    sign_prefetch |= {key: prefetch[key] for key in CHECK_KEYS["therapy"]}
    words = k.wording.services
    by_hook = {"patient-view": prefetch, "order-select": order_prefetch, "order-sign": sign_prefetch}
    services = [
        ServiceDefinition(id=sid, hook=hook, title=words[sid].title, description=words[sid].description,
                          prefetch=by_hook[hook],
                          advisory=frozenset(CHECK_KEYS["therapy"]) if hook == "order-sign" else frozenset())
        for sid, hook in SERVICE_HOOKS.items()
    ]
    return {s.id: s for s in services}
