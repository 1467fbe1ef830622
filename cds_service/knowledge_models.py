"""Pydantic models of the knowledge files in cards/ (their format, version 1)."""

from functools import cached_property
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from cds_service.contract import CARD_VARIANTS, SERVICE_HOOKS
from cds_service.patient_data import ResourceType
from cds_service.protocol import SUMMARY_MAX
from cds_service.valueset import loose_uri


class _Knowledge(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class _File(_Knowledge):
    format_version: Literal[1]
    about: str = ""


class StrengthLimit(_Knowledge):
    """A product whose name states less (a minimum) or more (a maximum) than this of the concept per
    unit is not it."""

    milligrams: float = Field(gt=0)
    remark: str = ""


class ConceptDef(_Knowledge):
    id: str
    label: str
    value_set: str | None = None
    applies_to: list[ResourceType]
    text_terms: list[str] = Field(default_factory=list)
    text_pre_negation: list[str] = Field(default_factory=list)
    # words that mean the mention is something else: anywhere in the same text (a multivitamin
    # product that lists B12 among its ingredients), or, for a phrase that holds one of the terms
    # ("on exertion"), only the mention inside it
    text_exclusions: list[str] = Field(default_factory=list)
    # concepts that, found on the same record, make a match of this one in its text no match: the
    # record is the other thing ("Cyanocobalamin (Vitamin B-12)" is a B12 test, not an injection)
    text_yields_to: list[str] = Field(default_factory=list)
    text_minimum_strength: StrengthLimit | None = None
    # more than this per unit is something else (hydroxocobalamin 5 g is the cyanide antidote)
    text_maximum_strength: StrengthLimit | None = None
    # a diagnosis, not a symptom: a relative named beside a mention makes it the relative's ("Coeliac
    # disease (mother)"), and a negative answer after it excludes it ("Celiac disease: tTG negative")
    text_diagnosis: bool = False
    # a symptom a relative named beside makes the relative's, as for a diagnosis ("Mother: myalgia");
    # not for symptoms relatives report for the patient ("Memory problems (daughter)")
    text_relative_cancels: bool = False
    # read from a MedicationRequest only when it reports a medicine taken (reportedBoolean,
    # reportedReference), never from an order: nitrous oxide ordered is medical use
    reported_use_only: bool = False
    # a code that names no particular thing ("Patient referral"): not a finding; a record coded only
    # with such codes is read by its text, as one with no standard code is
    generic_code: bool = False
    # a question about the past or about relatives (history of past illness, family history): its
    # answer is no current finding of the patient, so an Observation so coded is not read
    history_question: bool = False
    # an answer concept: read only from the value (valueCodeableConcept) of an Observation whose code
    # names this question concept ("Pregnant" answering "Pregnancy status"), never from a code or alone
    answer_of: str | None = None
    # a lasting disorder (a neuropathy, cognitive impairment): recorded as an encounter diagnosis
    # whose status stays active, it is current however old the visit, as on the problem list
    persistent: bool = False
    remark: str = ""


class ConceptsFile(_File):
    concepts: list[ConceptDef]


class LabUnits(_Knowledge):
    canonical_unit: str
    factors: dict[str, float]
    # how clinicians write the canonical unit when it differs from its UCUM code (m[IU]/L: mIU/L)
    display_unit: str | None = None
    # the unit a result sent with none is read in, for a lab reported in one unit only (MCV in fL)
    unit_when_absent: str | None = None
    # the units a lab reported in several reports this test in (B12: pg/mL, pmol/L): a result sent with
    # no unit is banded only when every one of them puts it in the same band (rule.json b12Result.bands)
    candidate_units: list[str] = Field(default_factory=list)
    # the values this test can report, in the canonical unit: one outside (a B12 of 150 "ng/mL", a
    # unit mislabelled) is shown and never compared
    plausible_range: tuple[float, float] | None = None
    remark: str = ""

    def plausible(self, value: float) -> bool:
        return self.plausible_range is None or self.plausible_range[0] <= value <= self.plausible_range[1]

    @model_validator(mode="after")
    def _candidates_are_known_units(self) -> "LabUnits":
        if self.plausible_range is not None and not 0 <= self.plausible_range[0] < self.plausible_range[1]:
            raise ValueError("plausibleRange is [lowest, highest], lowest at least 0")
        unknown = [u for u in self.candidate_units if u not in self.factors]
        if unknown:
            raise ValueError(f"candidateUnits {unknown} are not among the factors")
        if self.candidate_units and self.unit_when_absent:
            raise ValueError("a lab has either one unitWhenAbsent or several candidateUnits, not both")
        return self

    def unitless_values(self, value: float) -> tuple[float, ...]:
        """A value sent with no unit in the canonical unit, read in each candidate unit."""
        return tuple(value * self.factors[u] for u in self.candidate_units)

    @property
    def shown(self) -> str:
        return self.display_unit or self.canonical_unit

    @field_validator("factors")
    @classmethod
    def _no_case_clash(cls, factors: dict[str, float]) -> dict[str, float]:
        folded: dict[str, float] = {}
        for unit, factor in factors.items():
            if folded.setdefault(unit.casefold(), factor) != factor:
                raise ValueError(f"units {unit!r} and another spelling differ only in case but not in factor")
        return factors

    @cached_property
    def _folded(self) -> dict[str, float]:
        return {unit.casefold(): factor for unit, factor in self.factors.items()}

    def factor(self, unit: str | None) -> float | None:
        """The factor to the canonical unit; case-insensitive, since UCUM writes the litre `l` or `L`
        and free-text units vary in case (pg/ml, PMOL/L)."""
        if not (unit and unit.strip()):
            unit = self.unit_when_absent
        return self._folded.get((unit or "").strip().casefold())


class ValueText(_Knowledge):
    """How a lab result sent as text is read beyond a number and a unit."""

    # words (and signs other than <, <=, >=, >) that write a comparator: "less than" 50 pg/mL
    comparator_words: dict[str, Literal["<", "<=", ">=", ">"]] = Field(default_factory=dict)
    # marks a lab prints beside a value that say only "look at this" (no direction): "145 pg/mL *"
    marks: list[str] = Field(default_factory=list)
    remark: str = ""


class UnitsFile(_File):
    labs: dict[str, LabUnits]
    value_text: ValueText = Field(default_factory=ValueText)


class TextMatchingFile(_File):
    window_words: int = Field(ge=1, le=20)
    # how many words after a mention a post-cue reaches ("Myalgia resolved"); a time phrase's words
    # passed over on the way ("for about 3 weeks"); the most words a list item may have
    post_window_words: int = Field(ge=1, le=10)
    timing_words: int = Field(ge=0, le=20)
    list_item_words: int = Field(ge=1, le=10)
    pre_negation: list[str]
    post_negation: list[str]
    clause_breaks: list[str]
    negative_answers: list[str]
    positive_answers: list[str]
    list_join_words: list[str]
    list_negation: list[str] = Field(default_factory=list)
    list_breaks: list[str] = Field(default_factory=list)
    statement_words: list[str] = Field(default_factory=list)
    abbreviations: list[str] = Field(default_factory=list)
    pseudo_negation: list[str] = Field(default_factory=list)
    lead_words: list[str] = Field(default_factory=list)
    cue_qualifiers: list[str] = Field(default_factory=list)
    time_words: list[str] = Field(default_factory=list)
    relatives: list[str] = Field(default_factory=list)
    relative_qualifiers: list[str] = Field(default_factory=list)

    @field_validator("pseudo_negation")
    @classmethod
    def _pseudo_phrases_are_phrases(cls, value: list[str]) -> list[str]:
        """A pseudo-negation holds a cue and more ("no change"): a single word would be the cue itself."""
        short = [p for p in value if len(p.split()) < 2]
        if short:
            raise ValueError(f"pseudoNegation entries need at least two words: {short}")
        return value


class Population(_Knowledge):
    min_age_years: int = Field(ge=0)
    # a chart opened after death (a review, an audit) asks for no test
    exclude_deceased: bool = True
    remark: str = ""


class RecordStatus(_Knowledge):
    condition_clinical_active: list[str]
    condition_clinical_ignored: list[str]
    condition_verification_ignored: list[str]
    # clinical statuses a recorded abatement date still ends (FHIR con-4: an abated condition is not active)
    condition_abatement_date_ends: list[str] = Field(default_factory=list)
    # a diagnosis only suspected: read as a complaint or sign, never as a risk factor
    condition_verification_suspected: list[str] = Field(default_factory=list)
    observation_status: list[str]
    # a lab Observation with one of these has no result yet: the test is in progress
    observation_in_progress: list[str]
    # interim results (FHIR preliminary): a value they report is read; with none (no number, no flag)
    # the test is in progress, as a registered one is; on a tie in time a result not interim wins
    observation_interim: list[str] = Field(default_factory=list)
    # a status that says the source does not know the status (FHIR unknown): read as a test that
    # reported no result, never as a result nor silently dropped
    observation_status_unknown: list[str]
    medication_active: list[str]
    medication_statement_active: list[str]
    # statements of a medicine to be taken later (intended): no use yet, never read
    medication_statement_planned: list[str] = Field(default_factory=list)
    # orders and statements kept as past courses (never active): B12 given after a low result,
    # and the earlier courses a long-term medicine is counted from
    medication_past: list[str]
    # the same for statements: a stopped statement says the patient took it, then stopped
    medication_statement_past: list[str]
    # a statement in the STU3 shape says in `taken` whether the medicine is taken: only these values
    # are (n, unk and na are R4's not-taken and unknown); absent (R4), the status alone decides
    medication_statement_taken: list[str] = Field(default_factory=lambda: ["y"])
    # orders read only as an earlier course of a medicine still taken (a dose change stops the old
    # order and starts a new one): never current use, never a dose given
    medication_renewal_only: list[str] = Field(default_factory=list)
    # MedicationRequest intents that are no prescription (a suggestion, one option of several)
    medication_intent_ignored: list[str] = Field(default_factory=list)
    # MedicationRequest intents that plan a medicine not yet started: never B12 replacement under
    # way unless the request reports a medicine taken (reportedBoolean, reportedReference)
    medication_intent_planned: list[str] = Field(default_factory=list)
    # a Condition status given only in words (a local coding's display, the text): the words, as a
    # code is written (lower case, hyphens), -> the HL7 code they mean ("in-remission": remission)
    condition_status_words: dict[str, str] = Field(default_factory=dict)
    # Condition categories that record one visit, whose clinicalStatus is never updated after it
    # (Cerner accepts only active): judged by their dates, never by that status
    condition_dated_only_categories: list[str] = Field(default_factory=list)
    # the same for a ServiceRequest on record: a proposed test is no pending order
    order_intent_ignored: list[str] = Field(default_factory=list)
    # a past course that ended at most renewal_gap_days before the next began, or with no end
    # recorded began at most renewal_start_gap_days before it, is a renewal of it
    renewal_gap_days: int = Field(ge=0)
    renewal_start_gap_days: int = Field(ge=0)
    # a long-term course (one with a minimum duration) that ended at most this long ago is still
    # current use: the renewal may not be written yet, and the stores it depleted are not refilled
    current_use_grace_days: int = Field(ge=0, default=0)
    administration_counted: list[str]
    procedure_counted: list[str]
    pending_order_status: list[str]
    # a draft order (order-select, order-sign) with one of these is withdrawn: nothing is being
    # ordered (R4's codes with DSTU2's and STU3's for the same: an older draft keeps its status)
    draft_not_ordered: list[str]
    # B12 replacement orders paused (MedicationRequest status): no replacement under way, no dose given
    therapy_on_hold: list[str] = Field(default_factory=list)
    # B12 replacement orders halted after doses began (stopped): past courses, as completed ones are
    therapy_stopped: list[str] = Field(default_factory=list)
    remark: str = ""

    @cached_property
    def therapy_record_statuses(self) -> dict[str, frozenset[str]]:
        """By medicine resource type, the statuses under which a record could be B12 replacement in use
        or given (current and past courses, doses given)."""
        return {
            "MedicationRequest": frozenset((*self.medication_active, *self.medication_past, *self.therapy_stopped))
            - set(self.therapy_on_hold),
            "MedicationStatement": frozenset((*self.medication_statement_active, *self.medication_statement_past)),
            "MedicationAdministration": frozenset(self.administration_counted),
        }


class ConceptWindow(_Knowledge):
    concepts: list[str]
    lookback_days: int = Field(ge=1)
    remark: str = ""


class LabUpperLimit(_Knowledge):
    """A lab sign or lab confounder read against the lab's own upper reference limit
    (Observation.referenceRange.high) when the result carries one: reference limits are
    assay-dependent, and the range printed beside the result is the one the clinician reads it by."""

    times: float = Field(gt=0)  # the threshold: this many times the lab's upper limit
    # the limits believed, in the lab's canonical unit: one outside (a typo, a range in another unit
    # sent unlabelled) is not, and the rule's own threshold (value or valueBySex) stands
    plausible: tuple[float, float]
    # flags (Observation.interpretation, lowFlags' code systems) that make a result cross even below
    # the typical threshold when the lab sent no range it could be read against
    flag_codes: list[str] = Field(default_factory=list)
    remark: str = ""

    @cached_property
    def flag_code_set(self) -> frozenset[str]:
        """The flag codes upper case, as Fact.flags holds them."""
        return frozenset(code.upper() for code in self.flag_codes)


class LabThreshold(_Knowledge):
    id: str
    label: str
    lab: str
    comparator: Literal["<", ">"]
    unit: str
    lookback_days: int = Field(ge=1)
    value: float | None = None
    value_by_sex: dict[Literal["male", "female", "other", "unknown", "pregnant"], float] | None = None
    # raised above the lab's own upper limit when the result gives a plausible one (an MMA's limit runs 0.27-0.45)
    lab_upper_limit: LabUpperLimit | None = None
    source: str = ""
    remark: str = ""


class ResultBands(_Knowledge):
    """How one kind of B12 result reads: deficient below, indeterminate between, normal above."""

    unit: str
    deficient_below: float
    normal_above: float
    # the lab's low flag reads as deficient up to this value (None: whatever the value); a result
    # above it flagged low contradicts its own flag, and its value is read instead
    flag_believed_up_to: float | None = None
    source: str = ""
    remark: str = ""


def flag_words(text: str) -> str:
    """An interpretation's text as its words: lower case, hyphens as spaces ('Below low-normal')."""
    return " ".join(text.lower().replace("-", " ").split())


class LabFlags(_Knowledge):
    """Observation.interpretation codes that mark a result as below the lab's own reference range."""

    systems: list[str]
    low: list[str]
    # the codes that say the lab found the result inside its range: shown beside a value this rule
    # reads as deficient (the lab's lower limit is its own), never read to lift the band
    normal: list[str] = Field(default_factory=list)
    # an interpretation sent as text only, by its words (lower case, hyphens as spaces): the flag code it means
    text_flags: dict[str, str] = Field(default_factory=dict)
    remark: str = ""

    @cached_property
    def text_flag_codes(self) -> dict[str, str]:
        """textFlags by their words as interpretation text is read (lower case, hyphens as spaces)."""
        return {flag_words(text): code for text, code in self.text_flags.items()}

    @cached_property
    def low_codes(self) -> frozenset[str]:
        """The low flags, upper case: the code systems write every flag so, and a hand-typed "l" means L."""
        return frozenset(code.upper() for code in self.low)

    @cached_property
    def normal_codes(self) -> frozenset[str]:
        return frozenset(code.upper() for code in self.normal)

    @cached_property
    def loose_systems(self) -> frozenset[str]:
        """The systems as hand-typed spellings of them agree: no https, no trailing slash."""
        return frozenset(loose_uri(s) for s in self.systems)


class B12Result(_Knowledge):
    # results read for their value (banded); each needs its bands
    result_concepts: list[str]
    # a lab's low flag reads as deficient over this rule's cut-offs (assay-dependent), up to each band's flagBelievedUpTo
    low_flags: LabFlags
    # results that make a new test redundant when recent
    recent_result_concepts: list[str]
    # of results taken the same day, which decides: the first of these present (active B12, the more
    # specific test, over total B12)
    same_day_precedence: list[str]
    bands: dict[str, ResultBands]
    # the lab sign (an id in labSigns) whose result, taken after an indeterminate B12, answers it
    indeterminate_follow_up: str
    # a normal B12 beside neurological signs or macrocytic anaemia is discordant: ask for that follow-up
    discordant_normal_follow_up: bool = False
    # confounders (ids) beside which a raised follow-up says less (kidney failure raises MMA): a
    # treatment review resting on it is a warning, not critical
    follow_up_less_specific_with: list[str] = Field(default_factory=list)
    remark: str = ""


class RiskFactor(_Knowledge):
    id: str
    kind: Literal["age", "medication", "condition", "history"]
    label: str
    concept: str | None = None
    min_age_years: int | None = None
    min_duration_days: int | None = None
    # shown on the card beside the risk factor, when it changes how to test
    advice: str = ""
    # serum B12 can look normal with this risk factor (nitrous oxide): a normal or recent result
    # does not silence the card, which asks for methylmalonic acid instead
    serum_b12_unreliable: bool = False
    # a history factor whose record stays true once made (an operation done): read when the record
    # is marked resolved, inactive or in remission too
    counts_resolved: bool = False
    source: str = ""
    remark: str = ""

    @model_validator(mode="after")
    def _resolved_only_for_history(self) -> "RiskFactor":
        if self.counts_resolved and self.kind != "history":
            raise ValueError(f"risk factor {self.id}: countsResolved applies to kind history only (a current condition that has resolved is not current)")
        return self


class Suppressors(_Knowledge):
    recent_result_days: int = Field(ge=0)
    normal_result_days: int = Field(ge=0)
    therapy_administration_days: int = Field(ge=0)
    # an established injection series (maintenance): this many doses in the window, the latest recent
    maintenance_doses: int = Field(ge=2)
    maintenance_window_days: int = Field(ge=1)
    maintenance_latest_days: int = Field(ge=1)
    maintenance_min_span_days: int = Field(ge=0)
    # an open order older than this is lapsed: it no longer silences the card (undated ones still do)
    pending_order_days: int = Field(ge=1)
    pending_order_concepts: list[str]
    # the results that fulfil an order of each test concept: a result dated on or after an order
    # means it was done, though EHRs often leave a resulted order active
    order_results: dict[str, list[str]]
    therapy_concepts: list[str]
    remark: str = ""


class UntreatedLow(_Knowledge):
    enabled: bool
    lookback_days: int = Field(ge=1)
    # a B12 deficiency diagnosed on record (orders.establishedDeficiencyConcepts), none current: review treatment
    diagnosis_review: bool = False
    # a normal B12 (or active B12) taken after that diagnosis outdates it: history, not a review
    diagnosis_outdated_by_normal: bool = False
    remark: str = ""


class ConfounderCheck(_Knowledge):
    """A lab that answers a confounder's advice: a result since the medicine began, inside the
    look-back, is shown in the advice's place (a creatine kinase on a statin)."""

    lab: str
    lookback_days: int = Field(ge=1)
    advice: str  # in place of the confounder's advice when the result is shown on its line
    listed_advice: str  # when the result is listed below as a confounder of its own (a raised CK)


class Confounder(_Knowledge):
    id: str
    # pregnancy: read as the pregnancy rule reads it (dated in its window, or active and undated)
    kind: Literal["medication", "condition", "lab", "recent", "pregnancy"]
    label: str
    advice: str
    # in place of the advice on a treatment-review card, which asks for no test (pregnancy: no "the test is")
    review_advice: str | None = None
    downgrade: bool
    concept: str | None = None
    recent_start_days: int | None = None
    # a medicine whose dose was raised inside recentStartDays is a recent start too (its names' strengths)
    recent_dose_raise: bool = False
    within_days: int | None = None
    # recent kind: an event that began more than this many days after the complaint explains nothing of it
    max_days_after_complaint: int | None = None
    lab: str | None = None
    comparator: Literal["<", ">"] | None = None
    value: float | None = None
    value_by_sex: dict[Literal["male", "female", "other", "unknown", "pregnant"], float] | None = None
    unit: str | None = None
    lookback_days: int | None = None
    checked_by: ConfounderCheck | None = None
    lab_upper_limit: LabUpperLimit | None = None
    # confounders this one replaces on the card when both hold (a higher tier of the same lab; the
    # value beside the coded diagnosis it stands for)
    supersedes: list[str] = Field(default_factory=list)
    source: str = ""
    remark: str = ""


class IndicatorRule(_Knowledge):
    # signs that make a warning critical: neurological or cognitive ones, or macrocytic anaemia
    # (a recorded diagnosis, or every lab sign in criticalLabSignsAll); the summary says which
    critical_neurological: list[str]
    critical_anaemia_diagnoses: list[str]
    critical_lab_signs_all: list[str]
    # a sign that stands for another in criticalLabSignsAll (a recorded anaemia for a low Hb)
    stands_for: dict[str, str] = Field(default_factory=dict)
    # evidence that makes a card critical with or without a risk factor (an earlier low B12 never treated)
    critical_without_risk_factor: list[Literal["earlier-low-b12"]] = Field(default_factory=list)
    # critical features that make a card a warning with no risk factor (macrocytic anaemia: BSH); the
    # rule line wording.json criteria.warning-without-risk-factor names it, so it is the only one allowed
    warning_without_risk_factor: list[Literal["macrocytic-anaemia"]] = Field(default_factory=list)
    remark: str = ""


class OrderRule(_Knowledge):
    muscle_order_concepts: list[str]
    b12_product_concepts: list[str]
    b12_test_concepts: list[str]
    duplicate_test_concepts: list[str]
    # panels that measure B12 with folate or ferritin: kept over a B12-only test in the same order,
    # and a duplicate warning says removing one removes the rest too
    combined_test_concepts: list[str] = Field(default_factory=list)
    # the follow-up NG239 advises after an indeterminate result (MMA), as an order
    follow_up_order_concepts: list[str]
    # the level tests that measure active B12: a low total B12 in pregnancy does not make them redundant
    active_b12_test_concepts: list[str] = Field(default_factory=list)
    level_on_file_days: int = Field(ge=1)
    # pending orders in these statuses are not signed yet: at signing no duplicate (they may be the
    # very order being signed, stored by the EHR under another id)
    unsigned_status: list[str]
    # a deficiency already diagnosed: a B12 product then restarts or continues treatment, no "measure first"
    established_deficiency_concepts: list[str] = Field(default_factory=list)
    # conditions after which B12 is given for life whatever the level (gastrectomy, bariatric surgery):
    # read whenever recorded, resolved too; no "measure first" for a product ordered beside them
    lifelong_replacement_concepts: list[str] = Field(default_factory=list)
    # diagnoses that stay made when marked resolved (pernicious anaemia, treated for life)
    lifelong_deficiency_concepts: list[str] = Field(default_factory=list)
    # an order's reason coded as one of these names a muscle complaint (a CK for statin myopathy):
    # beside the complaint and its symptoms, no reason that holds the card back
    complaint_reason_concepts: list[str] = Field(default_factory=list)
    remark: str = ""


class PregnancyRule(_Knowledge):
    concept: str
    lookback_days: int = Field(ge=1)
    # total B12 falls in pregnancy: the first test offered is active B12 (variant test-active-b12)
    order_active_b12: bool
    # results a pregnancy makes unreliable when low: such a low result is no untreated deficiency
    # and no reason to stay silent; the card shows it and asks for active B12
    low_unreliable_concepts: list[str] = Field(default_factory=list)
    # pregnancy status Observations (answer concepts): "Pregnant" counts as a current pregnancy, the
    # latest dated "Not pregnant" ends every pregnancy dated before it; both read inside lookbackDays
    pregnant_status_concepts: list[str] = Field(default_factory=list)
    not_pregnant_status_concepts: list[str] = Field(default_factory=list)
    # past this age a pregnancy record is an error in the chart, not a pregnancy: not read
    max_age_years: int | None = Field(default=None, ge=1)
    remark: str = ""


class PrefetchRule(_Knowledge):
    observation_lookback_days: int = Field(ge=1)
    administration_lookback_days: int = Field(ge=1)
    remark: str = ""


class RuleFile(_File):
    id: str
    version: str
    title: str
    population: Population
    record_status: RecordStatus
    trigger: ConceptWindow
    symptoms: ConceptWindow
    lab_signs: list[LabThreshold]
    b12_result: B12Result
    risk_factors: list[RiskFactor]
    suppressors: Suppressors
    untreated_low: UntreatedLow
    confounders: list[Confounder]
    indicator: IndicatorRule
    orders: OrderRule
    pregnancy: PregnancyRule
    prefetch: PrefetchRule

    def lab_sign(self, sign_id: str) -> LabThreshold:
        """A lab sign by id (ids are checked at load, so it exists)."""
        return next(s for s in self.lab_signs if s.id == sign_id)

    @property
    def follow_up_sign(self) -> LabThreshold:
        """The lab sign of the follow-up NG239 advises after an indeterminate B12 (raised MMA)."""
        return self.lab_sign(self.b12_result.indeterminate_follow_up)

    @cached_property
    def lab_lookbacks(self) -> dict[str, int]:
        """Each lab a sign or a confounder reads, with the longest look-back any of them reads it in."""
        windows: dict[str, int] = {}
        for lab, days in [*((s.lab, s.lookback_days) for s in self.lab_signs),
                          *((c.lab, c.lookback_days) for c in self.confounders if c.kind == "lab" and c.lab and c.lookback_days)]:
            windows[lab] = max(days, windows.get(lab, 0))
        return windows


class CodingDef(_Knowledge):
    system: str
    code: str
    display: str


class VariantWording(_Knowledge):
    """How one card reads: its summary, intro, suggestion and override reasons."""

    summary: str = Field(max_length=SUMMARY_MAX)
    # the summary of a critical card, when urgency should show in the one line every EHR displays
    summary_critical: str | None = Field(default=None, max_length=SUMMARY_MAX)
    # the summary of a card made critical by an earlier low B12 never treated (no risk factor needed)
    summary_untreated_low: str | None = Field(default=None, max_length=SUMMARY_MAX)
    # a duplicate warning whose earlier result is low and untreated: the summary leads with that
    summary_treat: str | None = Field(default=None, max_length=SUMMARY_MAX)
    # a treatment-review card whose B12 replacement records were not all sent: its summary cannot say
    # none was given (the detail opens with therapyUncheckedFirst)
    summary_therapy_unchecked: str | None = Field(default=None, max_length=SUMMARY_MAX)
    # the same for a critical card: naming what made it critical ({critical}), as summaryCritical does
    summary_therapy_unchecked_critical: str | None = Field(default=None, max_length=SUMMARY_MAX)
    intro: str
    suggestion_label: str | None = None
    order: CodingDef | None = None
    # False when the order is not for the muscle complaint (measure before treating): no myalgia reason
    order_reason_is_complaint: bool = True
    # the reason an order that is not for the complaint states, as text (a lab requisition needs one)
    order_reason_text: str | None = None
    # codes from the wording's overrideReasons: the reasons that make sense for this card
    override_reasons: list[str] = Field(min_length=1)


class SourceDef(_Knowledge):
    label: str
    url: str
    topic: CodingDef | None = None


class LinkDef(_Knowledge):
    label: str
    url: str
    type: Literal["absolute", "smart"]


class ServiceWording(_Knowledge):
    title: str
    description: str


class ResultWording(_Knowledge):
    """How a lab result reads on a card when it has no value, a censored value or the lab's low flag."""

    no_value: str
    # a value whose unit the rule cannot convert (or that has none): shown, never compared
    unconverted: str
    no_unit: str
    # a value sent with no unit that every candidate unit puts in one band: "{value}", "{units}"
    no_unit_same_band: str
    unit_from_range: str
    no_unit_never_normal: str
    # a value sent with no unit, read in the lab's unitWhenAbsent: "{value}", "{unit}"
    unit_assumed: str
    # a value reported in another unit than the rule's: "{reported} ({converted})"
    converted: str
    flagged_low: str
    # a normal flag on a value this rule reads as deficient: shown, so the clinician sees both readings
    flagged_normal: str
    # a low flag above the band's flagBelievedUpTo, shown and not read: "{flag}", "{threshold}"
    flag_not_read: str
    # a value outside its lab's plausibleRange: "{value}", "{low}", "{high}", "{unit}"
    implausible: str
    # the sign an earlier low B12 becomes when it no longer calls for treatment review
    earlier_low: str
    treated_low: str
    low_in_pregnancy: str
    censored: dict[Literal["<", "<=", ">=", ">"], str]


class WordingFile(_File):
    source: SourceDef
    # discovery's title and description per service id (ids and hooks are the fixed contract)
    services: dict[str, ServiceWording]
    variants: dict[str, VariantWording]  # one per card the service returns (contract.CARD_VARIANTS), checked at load
    headings: dict[str, str]
    not_redundant: dict[str, str]
    # short pieces of card text the code assembles (labels, dates, counts)
    phrases: dict[str, str]
    # a FHIR status code as the card writes it ("on-hold": "on hold"); one not listed is shown as sent
    status_words: dict[str, str] = Field(default_factory=dict)
    result: ResultWording
    # a medicine whose current order renews earlier courses: when its use began
    medicine_since: str
    # a past course with a recorded end
    course_ended: str
    # a condition marked resolved (or abated), as the record says
    condition_resolved: str
    criteria: dict[
        Literal[
            "info", "info-explained", "warning", "warning-without-risk-factor", "critical", "critical-untreated-low", "untreated-low", "untreated-mma", "untreated-raised-mma",
            "untreated-raised-mma-after-nitrous-oxide", "lapsed-treatment", "diagnosed-deficiency", "measure-before-treat",
            "duplicate",
            "duplicate-in-draft",
        ],
        str,
    ]
    links: list[LinkDef]
    override_reasons: list[CodingDef]
    order_category: CodingDef
    order_reason: CodingDef
    order_select_intro: str
    order_reason_source: str  # where a complaint named as a draft order's reason comes from
    remove_duplicate_label: str
    # each removal named by the test it removes ("Remove Cobalamin [Mass/volume] ... from this order")
    remove_draft_action: str = "Remove {test} from this order"

    @field_validator("services", "headings", "not_redundant", "phrases", "variants")
    @classmethod
    def _all_keys(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return _require_keys(value, REQUIRED_KEYS[str(info.field_name)])

    @model_validator(mode="after")
    def _critical_summaries_fit(self) -> "WordingFile":
        """A critical summary names the critical feature ({critical}): under 140 characters with any."""
        features = [self.phrases[k] for k in ("criticalNeurological", "criticalMacrocyticAnaemia", "criticalBoth")]
        for name, variant in self.variants.items():
            for field, template in (("summaryCritical", variant.summary_critical),
                                    ("summaryTherapyUncheckedCritical", variant.summary_therapy_unchecked_critical)):
                if template is None:
                    continue
                if "{critical}" not in template:
                    raise ValueError(f"variants.{name}.{field}: must name the feature with {{critical}}")
                longest = max(len(template.replace("{critical}", f)) for f in features)
                if longest > SUMMARY_MAX:
                    raise ValueError(
                        f"variants.{name}.{field}: {longest} characters with the longest feature (max {SUMMARY_MAX})"
                    )
        return self

    @model_validator(mode="after")
    def _override_reasons_defined(self) -> "WordingFile":
        defined = [c.code for c in self.override_reasons]
        if len(set(defined)) != len(defined):
            raise ValueError("overrideReasons: a code is listed twice")
        for name, variant in self.variants.items():
            unknown = [c for c in variant.override_reasons if c not in defined]
            if unknown:
                raise ValueError(f"variants.{name}.overrideReasons: not in overrideReasons: {', '.join(unknown)}")
        return self

    @cached_property
    def _override_reasons_by_code(self) -> dict[str, CodingDef]:
        return {c.code: c for c in self.override_reasons}

    def override_reasons_for(self, variant: VariantWording) -> list[CodingDef]:
        return [self._override_reasons_by_code[code] for code in variant.override_reasons]


_V = TypeVar("_V")
# The keys the renderers read; a wording file without one would fail at the first card, not at start.
HEADINGS = ("complaint", "signs", "riskFactors", "confounders", "notRedundant", "criteria", "earlier", "sameOrder",
            "latestB12", "caveats", "treatmentSince", "diagnosis", "latestTreatment", "notYetRiskFactors", "heldTreatment")
NOT_REDUNDANT = (
    "noRecentResult", "lastResult", "noResultOnRecord", "undatedResult", "noResult", "unknownStatusResult", "noRecentLevel", "newRiskSinceNormal", "noTherapy",
    "pastTherapy", "heldTherapy", "earlierTherapy", "noFollowUpSince", "noRecentMma", "lowTotalInPregnancy", "discordantNormal", "ageNotChecked", "unreadableRecords", "implausibleResult", "noPendingOrder", "lapsedOrder", "lapsedOrderDue", "resultsNotChecked", "therapyNotChecked", "ordersNotChecked",
)
PHRASES = ("indeterminateB12", "indeterminateOrLowB12", "age", "startedBefore", "startedDayBefore", "startedSameDay", "checkedResult", "checkedOrdered", "checkedListed", "checkedListedLow", "notYetLongTerm", "aboveLabLimit", "timesLabLimit", "flaggedHigh", "raisedBefore", "raisedDayBefore", "raisedSameDay", "undated", "matchedInText", "andMore", "deficientBelow", "flagOverCutOff", "duplicateSampleIntro", "bandDeficient", "bandIndeterminate", "bandNormal",
           "orderAction", "orderedNow", "combinedPanel", "sampleNoResult", "orderDue", "reasonOnOrder", "nextStepTreat", "nextStepTreatUntreated", "nextStepMma", "replaceWithMma", "nextStepActiveB12", "replaceWithActiveB12",
           "measuredSince", "criticalNeurological", "criticalMacrocyticAnaemia", "criticalBoth", "criticalUntreatedLow", "resultOn", "therapyUncheckedFirst")
REQUIRED_KEYS = {"services": tuple(SERVICE_HOOKS), "headings": HEADINGS, "not_redundant": NOT_REDUNDANT, "phrases": PHRASES,
                 "variants": CARD_VARIANTS}


def _require_keys(value: dict[str, _V], keys: tuple[str, ...]) -> dict[str, _V]:
    """Exactly these keys: a missing one would fail at the first card, an unknown one (a typo) is never read."""
    missing = [k for k in keys if k not in value]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    unknown = [k for k in value if k not in keys]
    if unknown:
        raise ValueError(f"unknown {', '.join(unknown)} (the code reads only {', '.join(keys)})")
    return value
