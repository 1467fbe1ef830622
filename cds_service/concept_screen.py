"""Which concepts a raw resource names, by code first and by text as a fallback: cheap and before
any validation, so the records of a chart that name nothing are never parsed."""

from datetime import date
from typing import Any, Literal

from cds_service.fhir_shapes import items
from cds_service.knowledge import GENERIC, STANDARD, Knowledge
from cds_service.patient_data import PatientData, reference_parts
from cds_service.textmatch import TimeCheck, no_time_limit

TEXTS_PER_CHECK = 1024  # reading this many short names costs a few milliseconds


def codings_of(concept: Any) -> list[tuple[str, str, str]]:
    """(system, code, display) from a raw CodeableConcept dict; tolerant of junk."""
    if not isinstance(concept, dict):
        return []
    out = []
    for coding in items(concept.get("coding")):
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            system, display = coding.get("system"), coding.get("display")  # text only: str() of a value
            out.append((system if isinstance(system, str) else "", coding["code"],  # nested ~1000 deep recurses
                        display if isinstance(display, str) else str(display) if type(display) in (int, float) else ""))
    return out


def texts_of(concept: Any) -> list[str]:
    if not isinstance(concept, dict):
        return []
    texts = [concept["text"]] if isinstance(concept.get("text"), str) else []
    texts += [c[2] for c in codings_of(concept) if c[2]]
    return texts


_NO_CONCEPTS: frozenset[str] = frozenset()
# types read by name when their standard code names no concept (as medications are): orders, picked
# from catalogues of local orderables that EHRs send with a standard translation
_NAMED_BESIDE_CODES = frozenset({"ServiceRequest"})


class ConceptScreen:
    """Finds which concepts a raw resource names, by code first and by text as a fallback."""

    def __init__(self, knowledge: Knowledge, data: PatientData, check: TimeCheck = no_time_limit,
                 today: date | None = None) -> None:
        self.k = knowledge
        self.data = data
        self.check = check
        self.today = today  # the clinic's date, when the readers need it (an end still to come has not ended)

    def coded(self, concept: Any, rtype: str) -> frozenset[str]:
        return self._coded(concept, rtype)[0]

    def _coded(self, concept: Any, rtype: str) -> tuple[frozenset[str], bool]:
        """(concepts named by the codings, whether a coding in a standard terminology speaks for the
        record: not when one of its codes is generic, as an EHR's translation of a catch-all code
        such as F18.10 into SNOMED CT 'Inhalant abuse' names the substance no better)."""
        found = _NO_CONCEPTS  # most codings name nothing: no set is built for them
        kinds = 0  # bit 1: a standard coding, bit 2: a generic one
        if not isinstance(concept, dict):
            return found, False
        codings = self.k.codings
        for coding in items(concept.get("coding")):
            if isinstance(coding, dict):
                code, system = coding.get("code"), coding.get("system")
                if isinstance(code, str) and (system is None or isinstance(system, str)):
                    hit, kind = codings[rtype, system or "", code]
                    if hit:
                        found = found.union(hit)
                    kinds |= kind
        return found, kinds == STANDARD

    def is_standard(self, concept: Any, rtype: str) -> bool:
        """Whether a coding in a standard terminology speaks for the CodeableConcept (none generic)."""
        return self._coded(concept, rtype)[1]

    def generic(self, concept: Any, rtype: str) -> bool:
        """Whether a coding of the CodeableConcept is a catch-all code ('Patient referral')."""
        return isinstance(concept, dict) and any(
            self.k.codings[rtype, system, code][1] == GENERIC for system, code, _ in codings_of(concept))

    def _own_names(self, concept: Any, rtype: str) -> list[str]:
        """A CodeableConcept's text and the displays of its codings outside the standard terminologies."""
        if not isinstance(concept, dict):
            return []
        names = [concept["text"]] if isinstance(concept.get("text"), str) else []
        return names + [display for system, code, display in codings_of(concept)
                        if display and self.k.codings[rtype, system, code][1] != STANDARD]

    def answering(self, found: frozenset[str], question: frozenset[str]) -> frozenset[str]:
        """`found` without the answer concepts whose question is not in `question` ("Pregnant" as the
        answer to "Pregnancy status", not to "Pregnancy intention" nor as the result of a pregnancy
        test; with none, every answer goes: an answer is read as a value, never as a record's own code)."""
        answers = self.k.answers
        if answers and not found.isdisjoint(answers):
            return frozenset(c for c in found if c not in answers or answers[c] in question)
        return found

    def text(self, texts: list[str], rtype: str, one_name: bool = False) -> set[str]:
        """Concepts the texts mention. With `one_name` they are names of one thing (a code's text and
        its codings' displays): a word that makes it something else in any of them holds for all, so
        'Multivitamin' as the text cancels the cyanocobalamin in the coding's ingredient list."""
        matcher = self.k.text_by_type.get(rtype)  # the terms of concepts read from this type only
        if matcher is None:
            return set()
        found: set[str] = set()
        for n, t in enumerate(texts, 1):
            if n % TEXTS_PER_CHECK == 0:  # a record can carry 100,000 names (codings' displays)
                self.check()
            found |= matcher.find(t, self.check)
        if one_name and found and len(texts) > 1:
            for n, t in enumerate(texts, 1):
                if n % TEXTS_PER_CHECK == 0:
                    self.check()
                found -= matcher.excluded(t)
        return found

    def medication_concept(self, raw: dict[str, Any]) -> Any:
        """The medicine's CodeableConcept: given inline, or the code of the Medication referenced
        (contained, or included in the search); else the reference's display as its text, as EHRs
        name the product there when the Medication itself was not sent."""
        if "medicationCodeableConcept" in raw:
            return raw["medicationCodeableConcept"]
        reference = raw.get("medicationReference")
        if not isinstance(reference, dict):
            return None
        ref, display = reference.get("reference"), reference.get("display")
        medication: Any = None
        if isinstance(ref, str) and ref.startswith("#"):
            medication = next((c for c in items(raw.get("contained"))
                               if isinstance(c, dict) and c.get("id") == ref[1:]), None)
        elif isinstance(ref, str):
            medication = self.data.medications.get(reference_parts(ref)[-1])
        code = medication.get("code") if isinstance(medication, dict) else None
        if code is None and isinstance(medication, dict):
            code = _ingredients_concept(medication)
        if isinstance(display, str) and display.strip():
            if code is None:
                return {"text": display}
            if isinstance(code, dict) and not texts_of(code):  # a code alone ("197807"): the display names it
                return {**code, "text": display}
        return code

    def laboratory(self, raw: dict[str, Any], coded: frozenset[str]) -> bool:
        """A lab result (a lab the rule reads, or category laboratory): its notes and text value are
        the laboratory's comment or result ("B12 deficiency can present with fatigue, paresthesia"),
        never the patient's symptoms."""
        if not coded.isdisjoint(self.k.units):
            return True
        return any(isinstance(coding, dict) and coding.get("code") == "laboratory"
                   for category in items(raw.get("category")) if isinstance(category, dict)
                   for coding in items(category.get("coding")))

    def concepts(self, raw: dict[str, Any], rtype: str) -> dict[str, Literal["code", "text"]]:
        medication = rtype.startswith("Medication")
        named = medication or rtype in _NAMED_BESIDE_CODES
        main = self.medication_concept(raw) if medication else raw.get("code")
        coded, standard = self._coded(main, rtype)
        if not coded and standard and not named and "valueString" not in raw and (
            rtype != "Observation" or "valueCodeableConcept" not in raw
        ):
            return {}  # most of a chart, found early: a standard code the rule does not know, no answer text
        if coded and not coded.isdisjoint(self.k.history_questions):
            return {}  # "History of past illness: Influenza" is no illness now, nor a relative's the patient's
        coded = self.answering(coded, frozenset())  # an answer ("Pregnant") is no code: only a value
        value = raw.get("valueCodeableConcept") if rtype == "Observation" else None
        value_coded, value_standard = self._coded(value, rtype) if value is not None else (_NO_CONCEPTS, False)
        if value_coded:
            coded |= self.answering(value_coded, coded)
        # A record coded in a standard terminology speaks through its code; its text is read only
        # when it has none. Medications and orders are the exception: products arrive under SCD/SBD
        # codes no value set can list in full, and an order under its orderable's name with a standard
        # translation beside it (SNOMED CT 'Erythrocyte sedimentation rate measurement' beside 'SED
        # RATE'), so their names are the documented fallback.
        read_text = not coded and (not standard or named)
        # A note speaks about its record: on a record coded as something the rule does not know (say
        # hypertension) it is that condition's context, not a complaint. A valueString is an answer
        # (a chief complaint, a symptom question) and is always read.
        read_notes = not standard or bool(coded)
        extra_texts = (
            None if medication or (("note" not in raw or not read_notes) and "valueString" not in raw)
            or (rtype == "Observation" and self.laboratory(raw, coded))
            else _free_texts(raw, read_notes)
        )
        if not coded and value is not None and not value_standard and not self.laboratory(raw, coded):
            # an answer given in words ("Chief complaint": {"text": "Muscle aches"}; substance use:
            # "Nitrous oxide") is read as a valueString is, unless a standard code speaks for it
            extra_texts = [*(extra_texts or []), *texts_of(value)[:1]]
        if not coded and not read_text and not extra_texts:
            return {}  # most of a chart: a standard code the rule does not know, and no free text
        # an order beside its standard translation is read by its own name (its text, a local code's
        # display); with none, by the standard code's display ('Referral to physiotherapy')
        names = (self._own_names(main, rtype) if standard and not medication else []) or texts_of(main)
        main_text = self.text(names, rtype, one_name=True) if read_text else set()
        if main_text and medication:  # a multivitamin's ingredient list names B12 at a few micrograms
            main_text -= self.k.strengths.out_of_range(main_text, names)
        texts = self.text(extra_texts, rtype) - coded if extra_texts else set()
        if not coded and not main_text and not texts:
            return {}
        result: dict[str, Literal["code", "text"]] = dict.fromkeys(coded, "code")
        result.update(dict.fromkeys((main_text | texts) - coded, "text"))
        yielding = [c for c, how in result.items() if how == "text" and not result.keys().isdisjoint(self.k.concepts[c].text_yields_to)]
        for concept in yielding:
            del result[concept]
        return result


def _ingredients_concept(medication: dict[str, Any]) -> Any:
    """A Medication with no code, defined by its ingredients (FHIR R4 Medication.code is optional;
    compounded products are sent so): one ingredient stands for the product's code; several are
    read as a product name listing them ("Cyanocobalamin / Folic acid"), so the rules for a
    combination product's name (multivitamin, strength) apply as they do to any other."""
    items_ = [i.get("itemCodeableConcept") for i in items(medication.get("ingredient")) if isinstance(i, dict)]
    concepts_ = [c for c in items_ if isinstance(c, dict)]
    if len(concepts_) == 1:
        return concepts_[0]
    names = [t for c in concepts_ for t in texts_of(c)[:1]]
    return {"text": " / ".join(names)} if names else None


def _free_texts(raw: dict[str, Any], notes_too: bool) -> list[str]:
    """The free text beside a record's code: its valueString, and its notes when `notes_too`."""
    notes, value = raw.get("note") if notes_too else None, raw.get("valueString")
    texts = [n["text"] for n in items(notes) if isinstance(n, dict) and isinstance(n.get("text"), str)]
    if isinstance(value, str):
        texts.append(value)
    return texts


def record_label(raw: dict[str, Any], screen: ConceptScreen, rtype: str) -> str:
    """What the record calls itself: the concept's text, else a coding display, else the display
    cards/ gives its code, else its type. An Observation that answers a question ("Symptom", "Chief
    complaint") is shown with its answer."""
    concept = screen.medication_concept(raw) if rtype.startswith("Medication") else raw.get("code")
    texts = texts_of(concept)
    named = (screen.k.code_display(system, code) for system, code, _ in codings_of(concept))
    label = texts[0] if texts else next((d for d in named if d), rtype)
    if rtype == "Observation":
        answers = texts_of(raw.get("valueCodeableConcept"))
        answer = answers[0] if answers else raw.get("valueString")
        if isinstance(answer, str) and answer.strip() and answer.strip() != label:
            return f"{label}: {answer.strip()}" if texts else answer.strip()
    return label

