"""Loads, validates and compiles the clinical knowledge in cards/ once, at start."""

import hashlib
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cds_service.knowledge_models import (
    ConceptDef,
    ConceptsFile,
    LabFlags,
    LabUnits,
    LabUpperLimit,
    RuleFile,
    TextMatchingFile,
    UnitsFile,
    WordingFile,
)
from cds_service.lab_text import LabTextReader
from cds_service.strength import ProductStrengths, StrengthFloor
from cds_service.textmatch import TextMatcher
from cds_service.valueset import (
    NOT_SEARCHED_SYSTEMS,
    STANDARD_SYSTEMS,
    ValueSet,
    ValueSetError,
    canonical_code,
    canonical_system,
    compile_valueset,
)

_Model = TypeVar("_Model", bound=BaseModel)
_MEMO_LIMIT = 100_000

# Resource types the prefetch templates search by code. A FHIR token search cannot ask is-a, so a
# value set read from these must list the codes under each of its is-a filters too.
CODE_SEARCHED_TYPES = frozenset({"Observation", "Procedure", "ServiceRequest"})


class KnowledgeError(Exception):
    """A knowledge file is missing or wrong; the message names the file and the field."""

    def __init__(self, file: str, field: str, problem: str) -> None:
        super().__init__(f"{file}: {field}: {problem}")
        self.file, self.field, self.problem = file, field, problem


NON_STANDARD, STANDARD, GENERIC = 0, 1, 2  # what a coding's system and code say of its record's text


class CodingLookup(dict[tuple[str, str, str], tuple[tuple[str, ...], int]]):
    """(resource type, system, code) as sent -> (concepts read from that resource type that the
    coding names, STANDARD when its system is a standard terminology, GENERIC when its code names
    nothing in particular (the record's text then speaks, whatever other codes it carries),
    else NON_STANDARD).

    A dict filled on first use: charts repeat the same few codes thousands of times, and a hit is
    one C-level subscript. Bounded, so hostile input cannot grow it forever."""

    def __init__(
        self, code_index: dict[tuple[str, str], tuple[str, ...]], prefix_index: tuple[tuple[str, str, str], ...],
        applies_to: dict[str, frozenset[str]], generic: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__()
        self.code_index, self.prefix_index, self.applies_to = code_index, prefix_index, applies_to
        self.generic = generic  # concepts of codes that name nothing in particular (ConceptDef.generic_code)

    def __missing__(self, key: tuple[str, str, str]) -> tuple[tuple[str, ...], int]:
        resource_type, system, code = key
        sys = canonical_system(system)
        named = tuple(c for c in self.concepts_for_code(sys, canonical_code(sys, code)) if resource_type in self.applies_to[c])
        generic = any(c in self.generic for c in named)
        concepts = tuple(c for c in named if c not in self.generic) if generic else named
        hit = (concepts, GENERIC if generic else STANDARD if sys in STANDARD_SYSTEMS else NON_STANDARD)
        if len(self) < _MEMO_LIMIT:
            self[key] = hit
        return hit

    def concepts_for_code(self, system: str, code: str) -> tuple[str, ...]:
        """Concept ids whose value set holds (canonical system, canonical code)."""
        direct = self.code_index.get((system, code), ())
        by_prefix = tuple(c for s, p, c in self.prefix_index if s == system and code.startswith(p))
        return direct + by_prefix if by_prefix else direct


@dataclass(frozen=True)
class Knowledge:
    """Everything the engine and the renderer read, compiled for fast lookups."""

    version: str
    concepts: dict[str, ConceptDef]
    valuesets: dict[str, ValueSet]
    units: dict[str, LabUnits]
    rule: RuleFile
    wording: WordingFile
    text: TextMatcher  # every concept's terms, whatever the record type (the text-matching tests read it)
    # per resource type, only the terms of concepts read from it: a term of a concept that is never
    # read from a record does not hide a shorter one that is ('B12 and folate', a test name, holds
    # the 'B12' of a product's name), as one pattern for every concept, longest term first, would
    text_by_type: dict[str, TextMatcher]
    codings: CodingLookup
    strengths: ProductStrengths
    answers: dict[str, str]  # answer concept -> the question concept whose Observation value it is read from
    history_questions: frozenset[str]  # concepts whose Observations answer about the past or relatives
    reported_use_only: frozenset[str]  # concepts read from a MedicationRequest only when it reports use
    # labs read as they stood on a past day (an eGFR when the MMA was taken, b12Result.
    # followUpLessSpecificWith): their results are kept raw and read when asked for (PatientFacts.result_near)
    lab_history: frozenset[str]
    lab_text: LabTextReader  # lab results sent as text (units.json valueText, rule.json lowFlags.textFlags)
    displays: dict[tuple[str, str], str]  # (canonical system, canonical code) -> the first display cards/ gives it

    def code_display(self, system: str, code: str) -> str | None:
        """The display a value set in cards/ gives a code, for a record that names it by code alone
        (labs often arrive with a LOINC code and no display)."""
        sys = canonical_system(system)
        return self.displays.get((sys, canonical_code(sys, code)))


def default_cards_dir() -> Path:
    """cards/ inside an installed wheel, else the checkout's top-level cards/."""
    packaged = Path(str(resources.files("cds_service"))) / "cards"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "cards"


def _read_json(path: Path, root: Path) -> Any:
    name = str(path.relative_to(root))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KnowledgeError(name, "-", "file is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KnowledgeError(name, "-", f"not valid JSON ({exc})") from None


def _parse(model: type[_Model], path: Path, root: Path) -> _Model:
    try:
        return model.model_validate(_read_json(path, root))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "-"
        raise KnowledgeError(str(path.relative_to(root)), field, err["msg"]) from None


def load_knowledge(cards_dir: Path | None = None) -> Knowledge:
    """Read every file in cards/, check the cross-references, compile lookups."""
    root = cards_dir or default_cards_dir()
    if not root.is_dir():
        raise KnowledgeError(str(root), "-", "knowledge directory not found")
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.json")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())

    valuesets: dict[str, ValueSet] = {}
    for path in sorted((root / "valuesets").glob("*.json")):
        try:
            vs = compile_valueset(_read_json(path, root))
        except ValueSetError as exc:
            raise KnowledgeError(str(path.relative_to(root)), "-", str(exc)) from None
        valuesets[vs.id] = vs

    concepts_file = _parse(ConceptsFile, root / "concepts.json", root)
    units = _parse(UnitsFile, root / "units.json", root)
    text_file = _parse(TextMatchingFile, root / "text-matching.json", root)
    rule = _parse(RuleFile, root / "rule.json", root)
    wording = _parse(WordingFile, root / "wording.json", root)

    concepts = {c.id: c for c in concepts_file.concepts}
    for i, concept in enumerate(concepts_file.concepts):
        if concept.value_set is not None and concept.value_set not in valuesets:
            raise KnowledgeError(
                "concepts.json", f"concepts.{i}.valueSet", f"unknown value set {concept.value_set!r}"
            )
        if concept.value_set is None and not concept.text_terms:
            raise KnowledgeError("concepts.json", f"concepts.{i}", "needs valueSet or textTerms")
        for name, limit in (("textMinimumStrength", concept.text_minimum_strength), ("textMaximumStrength", concept.text_maximum_strength)):
            if limit is not None and not concept.text_terms:
                raise KnowledgeError("concepts.json", f"concepts.{i}.{name}", "needs textTerms to find the strength by")
        if (concept.text_minimum_strength is not None and concept.text_maximum_strength is not None
                and concept.text_maximum_strength.milligrams <= concept.text_minimum_strength.milligrams):
            raise KnowledgeError("concepts.json", f"concepts.{i}.textMaximumStrength", "must be above textMinimumStrength")
        unknown = [c for c in concept.text_yields_to if c not in concepts or c == concept.id]
        if unknown:
            raise KnowledgeError("concepts.json", f"concepts.{i}.textYieldsTo", f"{unknown[0]!r} is not another concept's id")
        if concept.answer_of is not None:
            question = concepts.get(concept.answer_of)
            if question is None or question.answer_of is not None or question.value_set is None:
                raise KnowledgeError("concepts.json", f"concepts.{i}.answerOf",
                                     f"{concept.answer_of!r} must be a coded question concept, not an answer")
            if concept.applies_to != ["Observation"] or question.applies_to != ["Observation"] or concept.value_set is None:
                raise KnowledgeError("concepts.json", f"concepts.{i}",
                                     "an answer and its question apply to Observation only; the answer needs a valueSet")
        searched = sorted(CODE_SEARCHED_TYPES.intersection(concept.applies_to))
        if concept.value_set is not None and searched:
            vs = valuesets[concept.value_set]
            for system, prefix in sorted(vs.prefixes):
                if system not in NOT_SEARCHED_SYSTEMS and not any(s == system and c.startswith(prefix) for s, c in vs.codes):
                    raise KnowledgeError(
                        f"valuesets/{vs.id}.json", "compose.include",
                        f"is-a {prefix} needs its codes listed as well: {concept.id} is searched by code "
                        f"in {', '.join(searched)}, and a FHIR search cannot ask is-a",
                    )
    _check_rule(rule, concepts, units.labs)

    code_index: dict[tuple[str, str], list[str]] = {}
    prefix_index: list[tuple[str, str, str]] = []
    for concept in concepts.values():
        if concept.value_set is None:
            continue
        vs = valuesets[concept.value_set]
        for key in vs.codes:
            code_index.setdefault(key, []).append(concept.id)
        prefix_index.extend((s, p, concept.id) for s, p in vs.prefixes)

    def matcher(chosen: list[ConceptDef]) -> TextMatcher:
        return TextMatcher.build(
            terms={c.id: c.text_terms for c in chosen if c.text_terms},
            pre_negation=text_file.pre_negation,
            post_negation=text_file.post_negation,
            clause_breaks=text_file.clause_breaks,
            window_words=text_file.window_words,
            post_window_words=text_file.post_window_words,
            timing_words=text_file.timing_words,
            list_item_words=text_file.list_item_words,
            concept_pre_negation={c.id: c.text_pre_negation for c in chosen},
            concept_exclusions={c.id: c.text_exclusions for c in chosen if c.text_exclusions},
            negative_answers=text_file.negative_answers,
            positive_answers=text_file.positive_answers,
            list_join_words=text_file.list_join_words,
            list_negation=text_file.list_negation,
            list_breaks=text_file.list_breaks,
            statement_words=text_file.statement_words,
            abbreviations=text_file.abbreviations,
            pseudo_negation=text_file.pseudo_negation,
            lead_words=text_file.lead_words,
            cue_qualifiers=text_file.cue_qualifiers,
            time_words=text_file.time_words,
            relatives=text_file.relatives,
            relative_qualifiers=text_file.relative_qualifiers,
            diagnosis_concepts=[c.id for c in chosen if c.text_diagnosis],
            relative_concepts=[c.id for c in chosen if c.text_diagnosis or c.text_relative_cancels],
        )

    read_types = sorted({t for c in concepts.values() if c.text_terms for t in c.applies_to})
    displays: dict[tuple[str, str], str] = {}
    for vs in valuesets.values():
        for r in vs.review:
            if r.display:
                displays.setdefault((r.system, canonical_code(r.system, r.code)), r.display)
    return Knowledge(
        version=f"{rule.version}+{digest.hexdigest()[:12]}",
        concepts=concepts,
        valuesets=valuesets,
        units=units.labs,
        rule=rule,
        wording=wording,
        text=matcher(list(concepts.values())),
        text_by_type={t: matcher([c for c in concepts.values() if t in c.applies_to]) for t in read_types},
        codings=CodingLookup(
            {k: tuple(v) for k, v in code_index.items()}, tuple(prefix_index),
            {c.id: frozenset(c.applies_to) for c in concepts.values()},
            frozenset(c.id for c in concepts.values() if c.generic_code),
        ),
        strengths=ProductStrengths({
            c.id: StrengthFloor.build(c.text_terms, c.text_minimum_strength.milligrams if c.text_minimum_strength else 0.0,
                                      c.text_maximum_strength.milligrams if c.text_maximum_strength else math.inf)
            for c in concepts.values() if c.text_minimum_strength is not None or c.text_maximum_strength is not None
        }, {
            cf.concept: StrengthFloor.build(concepts[cf.concept].text_terms, 0.0)
            for cf in rule.confounders if cf.recent_dose_raise and cf.concept in concepts
        }),
        answers={c.id: c.answer_of for c in concepts.values() if c.answer_of is not None},
        history_questions=frozenset(c.id for c in concepts.values() if c.history_question),
        reported_use_only=frozenset(c.id for c in concepts.values() if c.reported_use_only),
        # the eGFR as it stood when an MMA was taken; the blood count as it stood when a normal B12 was
        lab_history=frozenset([*(cf.lab for cf in rule.confounders if cf.kind == "lab" and cf.lab
                                 and cf.id in rule.b12_result.follow_up_less_specific_with),
                               *(rule.lab_sign(sign).lab for sign in rule.indicator.critical_lab_signs_all)]),
        lab_text=LabTextReader(units.value_text.comparator_words, rule.b12_result.low_flags.text_flag_codes,
                               units.value_text.marks),
        displays=displays,
    )


def _check_lab_upper_limit(field: str, limit: LabUpperLimit | None, comparator: str | None, flags: LabFlags) -> None:
    """A lab's own upper limit is read only for a result above it, within believable limits, and
    only a high flag may stand in for it: a low flag that made a result raised would invert it."""
    if limit is None:
        return
    if comparator != ">":
        raise KnowledgeError("rule.json", field, "only a result above a limit (comparator '>') is read against it")
    if not 0 < limit.plausible[0] < limit.plausible[1]:
        raise KnowledgeError("rule.json", f"{field}.plausible", "give [lowest, highest], both above 0")
    low = sorted(limit.flag_code_set & flags.low_codes)
    if low:
        raise KnowledgeError("rule.json", f"{field}.flagCodes", f"a low flag never makes a result raised: {low}")


def _check_rule(rule: RuleFile, concepts: dict[str, ConceptDef], labs: dict[str, LabUnits]) -> None:
    """Every concept, lab and unit the rule names must exist; units must be canonical."""

    def need_concept(field: str, concept_id: str | None) -> None:
        if concept_id is None or concept_id not in concepts:
            raise KnowledgeError("rule.json", field, f"unknown concept {concept_id!r}")

    def need_lab(field: str, lab: str | None, unit: str | None) -> None:
        if lab is None or lab not in labs:
            raise KnowledgeError("rule.json", field, f"no units defined for lab {lab!r}")
        if unit != labs[lab].canonical_unit:
            raise KnowledgeError(
                "rule.json", field, f"unit {unit!r} must be {labs[lab].canonical_unit!r}"
            )

    status = rule.record_status
    # the B12-only readings refine a status the medicine lists already read: one outside them is never fetched or read
    for name, special, within in (("therapyStopped", status.therapy_stopped, status.medication_renewal_only),
                                  ("therapyOnHold", status.therapy_on_hold, status.medication_active)):
        if not set(special) <= set(within):
            raise KnowledgeError("rule.json", f"recordStatus.{name}", f"every status must also be in {sorted(within)}")
    for i, c in enumerate(rule.trigger.concepts):
        need_concept(f"trigger.concepts.{i}", c)
    for i, c in enumerate(rule.symptoms.concepts):
        need_concept(f"symptoms.concepts.{i}", c)
    for i, sign in enumerate(rule.lab_signs):
        need_lab(f"labSigns.{i}", sign.lab, sign.unit)
        if (sign.value is None) == (sign.value_by_sex is None):
            raise KnowledgeError("rule.json", f"labSigns.{i}", "give exactly one of value, valueBySex")
        if sign.value_by_sex is not None and "unknown" not in sign.value_by_sex:
            raise KnowledgeError("rule.json", f"labSigns.{i}.valueBySex", "needs 'unknown', used when sex is not recorded")
        _check_lab_upper_limit(f"labSigns.{i}.labUpperLimit", sign.lab_upper_limit, sign.comparator, rule.b12_result.low_flags)
    for i, c in enumerate(rule.b12_result.result_concepts + rule.b12_result.recent_result_concepts):
        need_concept(f"b12Result.concepts.{i}", c)
    if sorted(rule.b12_result.same_day_precedence) != sorted(set(rule.b12_result.result_concepts)):
        raise KnowledgeError("rule.json", "b12Result.sameDayPrecedence", "must list each of resultConcepts once")
    for c in rule.b12_result.result_concepts:
        bands = rule.b12_result.bands.get(c)
        if bands is None:
            raise KnowledgeError("rule.json", f"b12Result.bands.{c}", "every result concept needs its bands")
        need_lab(f"b12Result.bands.{c}", c, bands.unit)
        if not bands.deficient_below <= bands.normal_above:
            raise KnowledgeError("rule.json", f"b12Result.bands.{c}", "deficientBelow must not exceed normalAbove")
    for lab_id, lab in labs.items():  # a unitless value is read only by the band its candidate units agree on
        if lab.candidate_units and lab_id not in rule.b12_result.bands:
            raise KnowledgeError("units.json", f"labs.{lab_id}.candidateUnits", "only a lab with b12Result.bands is read by them")
    if rule.b12_result.indeterminate_follow_up not in {sign.id for sign in rule.lab_signs}:
        raise KnowledgeError("rule.json", "b12Result.indeterminateFollowUp", "must be the id of a labSigns entry")
    unknown = set(rule.b12_result.follow_up_less_specific_with) - {cf.id for cf in rule.confounders}
    if unknown:
        raise KnowledgeError("rule.json", "b12Result.followUpLessSpecificWith", f"not a confounder id: {sorted(unknown)}")
    windows = {
        "trigger.lookbackDays": rule.trigger.lookback_days, "symptoms.lookbackDays": rule.symptoms.lookback_days,
        "suppressors.normalResultDays": rule.suppressors.normal_result_days,
        "untreatedLow.lookbackDays": rule.untreated_low.lookback_days,
        "pregnancy.lookbackDays": rule.pregnancy.lookback_days,  # pregnancy status Observations
        **{f"labSigns.{i}.lookbackDays": sign.lookback_days for i, sign in enumerate(rule.lab_signs)},
        **{f"confounders.{i}.lookbackDays": cf.lookback_days for i, cf in enumerate(rule.confounders) if cf.lookback_days},
        **{f"confounders.{i}.checkedBy.lookbackDays": cf.checked_by.lookback_days
           for i, cf in enumerate(rule.confounders) if cf.checked_by},
    }
    for field, days in windows.items():
        if days > rule.prefetch.observation_lookback_days:  # the EHR would never send what the rule reads
            raise KnowledgeError("rule.json", "prefetch.observationLookbackDays", f"shorter than {field} ({days})")
    given_windows = {
        "suppressors.therapyAdministrationDays": rule.suppressors.therapy_administration_days,
        "suppressors.maintenanceWindowDays": rule.suppressors.maintenance_window_days,
        "untreatedLow.lookbackDays": rule.untreated_low.lookback_days,  # B12 given since a current low result
    }
    for field, days in given_windows.items():
        if days > rule.prefetch.administration_lookback_days:
            raise KnowledgeError("rule.json", "prefetch.administrationLookbackDays", f"shorter than {field} ({days})")
    for i, rf in enumerate(rule.risk_factors):
        if rf.kind == "age":
            if rf.min_age_years is None:
                raise KnowledgeError("rule.json", f"riskFactors.{i}.minAgeYears", "required for age")
        else:
            need_concept(f"riskFactors.{i}.concept", rf.concept)
    for i, c in enumerate(rule.suppressors.pending_order_concepts + rule.suppressors.therapy_concepts):
        need_concept(f"suppressors.concepts.{i}", c)
    ordered_tests = {*rule.suppressors.pending_order_concepts, *rule.orders.duplicate_test_concepts,
                     *rule.orders.follow_up_order_concepts, *rule.orders.active_b12_test_concepts}
    if missing := sorted(ordered_tests - set(rule.suppressors.order_results)):
        raise KnowledgeError("rule.json", "suppressors.orderResults", f"no results named for {', '.join(missing)}")
    for order, results in rule.suppressors.order_results.items():
        need_concept(f"suppressors.orderResults.{order}", order)
        for c in results:
            if c not in labs:
                raise KnowledgeError("rule.json", f"suppressors.orderResults.{order}", f"no units defined for lab {c!r}")
    for i, cf in enumerate(rule.confounders):
        if cf.kind == "lab":
            need_lab(f"confounders.{i}", cf.lab, cf.unit)
            if cf.comparator is None or cf.lookback_days is None or (cf.value is None) == (cf.value_by_sex is None):
                raise KnowledgeError("rule.json", f"confounders.{i}",
                                     "lab needs comparator, lookbackDays and exactly one of value, valueBySex")
            if cf.value_by_sex is not None and "unknown" not in cf.value_by_sex:
                raise KnowledgeError("rule.json", f"confounders.{i}.valueBySex", "needs 'unknown', used when sex is not recorded")
            _check_lab_upper_limit(f"confounders.{i}.labUpperLimit", cf.lab_upper_limit, cf.comparator, rule.b12_result.low_flags)
        else:
            need_concept(f"confounders.{i}.concept", cf.concept)
            if cf.lab_upper_limit is not None:
                raise KnowledgeError("rule.json", f"confounders.{i}.labUpperLimit", "only a lab confounder has one")
        unknown_ids = set(cf.supersedes) - {other.id for other in rule.confounders if other.id != cf.id}
        if unknown_ids:
            raise KnowledgeError("rule.json", f"confounders.{i}.supersedes", f"not another confounder's id: {sorted(unknown_ids)}")
        if cf.checked_by is not None:
            if cf.kind not in ("medication", "condition"):
                raise KnowledgeError("rule.json", f"confounders.{i}.checkedBy",
                                     "only a medication (by a lab since it began) or a condition (by a recent lab) is checked")
            if cf.checked_by.lab not in labs:
                raise KnowledgeError("rule.json", f"confounders.{i}.checkedBy.lab", f"no units defined for lab {cf.checked_by.lab!r}")
        if cf.kind == "recent" and cf.within_days is None:
            raise KnowledgeError("rule.json", f"confounders.{i}.withinDays", "required for recent")
        if cf.kind == "pregnancy" and cf.concept != rule.pregnancy.concept:
            raise KnowledgeError("rule.json", f"confounders.{i}.concept", "a pregnancy confounder names pregnancy.concept")
    need_concept("pregnancy.concept", rule.pregnancy.concept)
    status_concepts = {"pregnantStatusConcepts": rule.pregnancy.pregnant_status_concepts,
                       "notPregnantStatusConcepts": rule.pregnancy.not_pregnant_status_concepts}
    for name, status_ids in status_concepts.items():
        for i, c in enumerate(status_ids):
            need_concept(f"pregnancy.{name}.{i}", c)
            if concepts[c].answer_of is None:
                raise KnowledgeError("rule.json", f"pregnancy.{name}.{i}", "must be an answer concept (answerOf)")
    for i, c in enumerate(rule.pregnancy.low_unreliable_concepts):
        if c not in rule.b12_result.result_concepts:
            raise KnowledgeError("rule.json", f"pregnancy.lowUnreliableConcepts.{i}", "must be one of b12Result.resultConcepts")
    orders = rule.orders
    for i, c in enumerate(orders.muscle_order_concepts + orders.b12_product_concepts + orders.b12_test_concepts
                              + orders.duplicate_test_concepts + orders.follow_up_order_concepts
                              + orders.active_b12_test_concepts + orders.established_deficiency_concepts
                              + orders.lifelong_replacement_concepts + orders.lifelong_deficiency_concepts
                              + orders.complaint_reason_concepts):
        need_concept(f"orders.concepts.{i}", c)
    sign_ids = {s.id for s in rule.lab_signs}
    for i, c in enumerate(rule.indicator.critical_neurological):
        need_concept(f"indicator.criticalNeurological.{i}", c)
    for i, c in enumerate(rule.indicator.critical_anaemia_diagnoses):
        need_concept(f"indicator.criticalAnaemiaDiagnoses.{i}", c)
    for i, lab_sign in enumerate(rule.indicator.critical_lab_signs_all):
        if lab_sign not in sign_ids:
            raise KnowledgeError("rule.json", f"indicator.criticalLabSignsAll.{i}", f"unknown lab sign {lab_sign!r}")
    for concept, stands_for in rule.indicator.stands_for.items():
        if concept not in rule.symptoms.concepts or stands_for not in rule.indicator.critical_lab_signs_all:
            raise KnowledgeError("rule.json", f"indicator.standsFor.{concept}",
                                 "must map a symptom concept to a sign in criticalLabSignsAll")
