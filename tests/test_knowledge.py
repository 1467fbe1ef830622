"""Knowledge files load, cross-check, and fail loudly naming the file and field."""

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cds_service.knowledge import Knowledge, KnowledgeError, default_cards_dir, load_knowledge

BROKEN = Path(__file__).parent / "broken_cards"


def _copy_cards(tmp_path: Path) -> Path:
    target = tmp_path / "cards"
    shutil.copytree(default_cards_dir(), target)
    return target


def test_shipped_knowledge_loads(knowledge: Knowledge) -> None:
    assert knowledge.version.startswith(knowledge.rule.version)
    assert "myalgia" in knowledge.concepts
    for variant in knowledge.wording.variants.values():
        assert len(variant.summary) < 140


def test_deliberately_broken_rule_names_file_and_field(tmp_path: Path) -> None:
    cards = _copy_cards(tmp_path)
    shutil.copy(BROKEN / "rule.json", cards / "rule.json")
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(cards)
    assert err.value.file == "rule.json"
    assert "trigger" in err.value.field


def test_a_one_word_pseudo_negation_is_refused(tmp_path: Path) -> None:
    """A pseudo-negation is a phrase holding a cue ("no change"); one word would be the cue itself."""
    cards = _copy_cards(tmp_path)
    text = json.loads((cards / "text-matching.json").read_text())
    text["pseudoNegation"].append("no")
    (cards / "text-matching.json").write_text(json.dumps(text))
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(cards)
    assert err.value.file == "text-matching.json" and "pseudoNegation" in str(err.value)


def test_invalid_json_is_refused(tmp_path: Path) -> None:
    cards = _copy_cards(tmp_path)
    (cards / "units.json").write_text("{")
    with pytest.raises(KnowledgeError, match="units.json"):
        load_knowledge(cards)


def test_service_refuses_to_start_with_broken_knowledge(tmp_path: Path) -> None:
    import subprocess
    import sys

    cards = _copy_cards(tmp_path)
    shutil.copy(BROKEN / "rule.json", cards / "rule.json")
    proc = subprocess.run(
        [sys.executable, "-m", "cds_service", "evaluate", "-"], check=False, input=b"{}", capture_output=True,
        env={"CDS_CARDS_DIR": str(cards), "PATH": "/usr/bin:/bin"}, timeout=60,
    )
    assert proc.returncode == 3
    assert b"rule.json" in proc.stderr


def _without(path: list[str | int]) -> Callable[[Any], None]:
    def edit(doc: Any) -> None:
        for step in path[:-1]:
            doc = doc[step]
        del doc[path[-1]]
    return edit


def _setting(path: list[str | int], value: Any) -> Callable[[Any], None]:
    def edit(doc: Any) -> None:
        for step in path[:-1]:
            doc = doc[step]
        if isinstance(doc, list) and path[-1] == "+":
            doc.append(value)
        else:
            doc[path[-1]] = value
    return edit


_PREGNANT_STATUS = next(i for i, c in enumerate(json.loads((Path(__file__).parent.parent / "cards/concepts.json")
                                                              .read_text())["concepts"])
                        if c["id"] == "pregnancy-status-pregnant")

_CONFOUNDERS = [c["id"] for c in json.loads((Path(__file__).parent.parent / "cards/rule.json").read_text())["confounders"]]
_RAISED_CK, _STATIN, _TSH = (_CONFOUNDERS.index(i) for i in ("raised-creatine-kinase", "statin", "abnormal-tsh"))
_RISKS = [r["id"] for r in json.loads((Path(__file__).parent.parent / "cards/rule.json").read_text())["riskFactors"]]
_NITROUS_OXIDE = _RISKS.index("nitrous-oxide")  # a current condition: a resolved one is not current
_SIGNS = [s["id"] for s in json.loads((Path(__file__).parent.parent / "cards/rule.json").read_text())["labSigns"]]
_ANAEMIA, _MMA = (_SIGNS.index(i) for i in ("anaemia", "raised-mma"))

# (file, edit, the field the error names, a word the error says)
REFUSED = {
    "resolved-counted-for-a-current-condition": ("rule.json", _setting(["riskFactors", _NITROUS_OXIDE, "countsResolved"], True),
                                                 f"riskFactors.{_NITROUS_OXIDE}", "history only"),
    "post-window-zero": ("text-matching.json", _setting(["postWindowWords"], 0), "postWindowWords", "greater than or equal to 1"),
    "stopped-not-read": ("rule.json", _setting(["recordStatus", "therapyStopped", "+"], "cancelled"),
                         "recordStatus.therapyStopped", "stopped"),
    "on-hold-not-active": ("rule.json", _setting(["recordStatus", "therapyOnHold", "+"], "suspended"),
                           "recordStatus.therapyOnHold", "on-hold"),
    "summary-of-140": ("wording.json", _setting(["variants", "test-b12", "summary"], "x" * 140),  # spec: <140
                         "variants.test-b12.summary", ""),
    "unknown-concept": ("rule.json", _setting(["symptoms", "concepts", "+"], "hiccups"), "", "hiccups"),
    "threshold-unit": ("rule.json", _setting(["labSigns", 1, "unit"], "g/L"), "", "g/dL"),
    "valueset-display": ("valuesets/myalgia.json", _without(["compose", "include", 0, "concept", 0, "display"]),
                         "", "display"),
    "wording-key": ("wording.json", _without(["notRedundant", "noTherapy"]), "notRedundant", "noTherapy"),
    "phrase-typo": ("wording.json", _setting(["phrases", "orderedNoww"], "Ordered now"), "phrases", "orderedNoww"),
    "phrase-key": ("wording.json", _without(["phrases", "orderedNow"]), "phrases", "orderedNow"),
    "unknown-override-reason": ("wording.json",
                                _setting(["variants", "duplicate-order", "overrideReasons", "+"], "felt-like-it"),
                                "", "felt-like-it"),
    "no-override-reasons": ("wording.json", _without(["variants", "untreated-low", "overrideReasons"]),
                            "variants.untreated-low.overrideReasons", ""),
    "missing-variant": ("wording.json", _without(["variants", "test-active-b12"]), "variants", "test-active-b12"),
    "missing-service": ("wording.json", _without(["services", "b12-myalgia-order-sign"]), "services",
                        "b12-myalgia-order-sign"),
    "missing-bands": ("rule.json", _without(["b12Result", "bands", "holotc-result"]),
                      "b12Result.bands.holotc-result", ""),
    "bands-unit": ("rule.json", _setting(["b12Result", "bands", "b12-result", "unit"], "pmol/L"), "", "pg/mL"),
    "is-a-searched-without-codes": ("valuesets/viral-illness.json", _without(["compose", "include", 2]),
                                    "compose.include", "is-a J10 needs its codes listed"),
    "candidate-unit-unknown": ("units.json", _setting(["labs", "b12-result", "candidateUnits", "+"], "mg/dL"),
                               "labs.b12-result", "mg/dL"),
    "candidate-units-without-bands": ("units.json", _setting(["labs", "tsh", "candidateUnits"], ["mIU/L"]),
                                      "labs.tsh.candidateUnits", "b12Result.bands"),
    "unit-case-clash": ("units.json", _setting(["labs", "b12-result", "factors", "PG/ML"], 2),
                        "labs.b12-result.factors", "differ only in case"),
    "prefetch-window-too-short": ("rule.json", _setting(["prefetch", "observationLookbackDays"], 300),
                                  "prefetch.observationLookbackDays", "365"),
    "administration-window-too-short": ("rule.json", _setting(["prefetch", "administrationLookbackDays"], 180),
                                        "prefetch.administrationLookbackDays", "maintenanceWindowDays (365)"),
    "threshold-without-unknown-sex": ("rule.json", _without(["labSigns", 1, "valueBySex", "unknown"]),
                                      "labSigns.1.valueBySex", "unknown"),
    "confounder-threshold-without-unknown-sex": ("rule.json", _without(["confounders", _RAISED_CK, "valueBySex", "unknown"]),
                                                 f"confounders.{_RAISED_CK}.valueBySex", "unknown"),
    "confounder-with-two-thresholds": ("rule.json", _setting(["confounders", _TSH, "valueBySex"], {"unknown": 4.5}),
                                       f"confounders.{_TSH}", "exactly one of value, valueBySex"),
    "supersedes-an-unknown-confounder": ("rule.json", _setting(["confounders", _RAISED_CK, "supersedes"], ["raised-ck"]),
                                         f"confounders.{_RAISED_CK}.supersedes", "raised-ck"),
    "supersedes-itself": ("rule.json", _setting(["confounders", _RAISED_CK, "supersedes"], ["raised-creatine-kinase"]),
                          f"confounders.{_RAISED_CK}.supersedes", "raised-creatine-kinase"),
    "check-by-an-unknown-lab": ("rule.json", _setting(["confounders", _STATIN, "checkedBy", "lab"], "ck"),
                                f"confounders.{_STATIN}.checkedBy.lab", "'ck'"),
    "check-on-a-lab": ("rule.json", _setting(["confounders", _TSH, "checkedBy"],
                                             {"lab": "tsh", "lookbackDays": 90, "advice": "Checked.", "listedAdvice": "Listed."}),
                       f"confounders.{_TSH}.checkedBy", "only a medication"),
    "check-beyond-prefetch": ("rule.json", _setting(["confounders", _STATIN, "checkedBy", "lookbackDays"], 800),
                              "prefetch.observationLookbackDays", "checkedBy.lookbackDays (800)"),
    "lab-limit-on-a-medication": ("rule.json", _setting(["confounders", _STATIN, "labUpperLimit"], {"times": 1, "plausible": [100, 600]}),
                                  f"confounders.{_STATIN}.labUpperLimit", "only a lab confounder"),
    "lab-limit-upside-down": ("rule.json", _setting(["confounders", _RAISED_CK, "labUpperLimit", "plausible"], [600, 100]),
                              f"confounders.{_RAISED_CK}.labUpperLimit.plausible", "lowest, highest"),
    "lab-limit-below": ("rule.json", _setting(["confounders", _RAISED_CK, "comparator"], "<"),
                        f"confounders.{_RAISED_CK}.labUpperLimit", "comparator '>'"),
    "sign-lab-limit-below": ("rule.json", _setting(["labSigns", _ANAEMIA, "labUpperLimit"], {"times": 1, "plausible": [10, 14]}),
                             f"labSigns.{_ANAEMIA}.labUpperLimit", "comparator '>'"),
    "sign-lab-limit-upside-down": ("rule.json", _setting(["labSigns", _MMA, "labUpperLimit", "plausible"], [0.6, 0.2]),
                                   f"labSigns.{_MMA}.labUpperLimit.plausible", "lowest, highest"),
    "sign-lab-limit-not-positive": ("rule.json", _setting(["labSigns", _MMA, "labUpperLimit", "plausible"], [0, 0.6]),
                                    f"labSigns.{_MMA}.labUpperLimit.plausible", "above 0"),
    "sign-lab-limit-times-zero": ("rule.json", _setting(["labSigns", _MMA, "labUpperLimit", "times"], 0),
                                  f"labSigns.{_MMA}.labUpperLimit.times", "greater than 0"),
    "sign-lab-limit-low-flag": ("rule.json", _setting(["labSigns", _MMA, "labUpperLimit", "flagCodes", "+"], "l"),
                                f"labSigns.{_MMA}.labUpperLimit.flagCodes", "a low flag never makes a result raised: ['L']"),
    "sign-lab-limit-unknown-field": ("rule.json", _setting(["labSigns", _MMA, "labUpperLimit", "plausibel"], [0.2, 0.6]),
                                     f"labSigns.{_MMA}.labUpperLimit", "Extra inputs"),
    "lab-limit-low-flag": ("rule.json", _setting(["confounders", _TSH, "labUpperLimit", "flagCodes", "+"], "LL"),
                           f"confounders.{_TSH}.labUpperLimit.flagCodes", "low flag"),
    "follow-up-not-a-sign": ("rule.json", _setting(["b12Result", "indeterminateFollowUp"], "raised-mmx"),
                             "b12Result.indeterminateFollowUp", ""),
    "pregnant-status-not-an-answer": ("rule.json", _setting(["pregnancy", "pregnantStatusConcepts", "+"], "pregnancy"),
                                      "pregnancy.pregnantStatusConcepts.1", "answer concept"),
    "not-pregnant-status-unknown": ("rule.json", _setting(["pregnancy", "notPregnantStatusConcepts", 0], "not-pregnat"),
                                    "pregnancy.notPregnantStatusConcepts.0", "not-pregnat"),
    "pregnancy-window-beyond-prefetch": ("rule.json", _setting(["pregnancy", "lookbackDays"], 800),
                                         "prefetch.observationLookbackDays", "pregnancy.lookbackDays (800)"),
    "answer-of-an-answer": ("concepts.json", _setting(["concepts", _PREGNANT_STATUS, "answerOf"],
                                                      "pregnancy-status-not-pregnant"),
                            f"concepts.{_PREGNANT_STATUS}.answerOf", "not an answer"),
    "answer-on-a-condition": ("concepts.json", _setting(["concepts", _PREGNANT_STATUS, "appliesTo"], ["Condition"]),
                              f"concepts.{_PREGNANT_STATUS}", "Observation only"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_broken_knowledge_is_refused_naming_file_and_field(tmp_path: Path, case: str) -> None:
    name, edit, field, word = REFUSED[case]
    cards = _copy_cards(tmp_path)
    doc = json.loads((cards / name).read_text())
    edit(doc)
    (cards / name).write_text(json.dumps(doc))
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(cards)
    assert err.value.file == name
    assert field in err.value.field
    assert word in str(err.value)


def test_coding_lookup_answers_listed_is_a_and_unknown_codes_and_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    codings = load_knowledge().codings
    icd = "http://hl7.org/fhir/sid/icd-10-cm"
    assert codings["Condition", "http://snomed.info/sct", "68962001"] == (("myalgia",), True)
    assert codings["Condition", "urn:oid:2.16.840.1.113883.6.90", "m79.1"] == codings["Condition", icd, "M79.1"]
    assert "viral-illness" in codings["Observation", icd, "J10.1"][0]  # listed
    assert "viral-illness" in codings["Condition", icd, "J11.9X"][0]  # only by is-a
    assert codings["Observation", "http://loinc.org", "2345-7"] == ((), True)  # a standard code the rule does not know
    assert codings["Observation", "urn:local", "x"] == ((), False)
    limit = len(codings) + 5
    monkeypatch.setattr("cds_service.knowledge._MEMO_LIMIT", limit)
    for i in range(50):
        assert codings["Observation", "urn:local", f"hostile-{i}"] == ((), False)  # answered, not kept
    assert len(codings) == limit


def test_every_threshold_and_confounder_names_its_source(knowledge: Knowledge) -> None:
    """A clinician reviewing cards/ can trace each number and each 'also consider' to its evidence."""
    rule = knowledge.rule
    assert [s.id for s in rule.lab_signs if not s.source] == []
    assert [c.id for c in rule.confounders if not c.source] == []
    assert [c for c, bands in rule.b12_result.bands.items() if not bands.source] == []
    assert [r.id for r in rule.risk_factors if not r.source] == []


@pytest.mark.parametrize(("strength", "problem"), [
    ({"milligrams": 0}, "greater than 0"), ({"milligrams": 0.05, "unit": "mg"}, "Extra inputs"),
])
def test_a_minimum_strength_must_be_a_positive_number_of_milligrams(tmp_path: Path, strength: dict[str, Any],
                                                                    problem: str) -> None:
    cards = _copy_cards(tmp_path)
    concepts = json.loads((cards / "concepts.json").read_text())
    [therapy] = [c for c in concepts["concepts"] if c["id"] == "b12-therapy"]
    therapy["textMinimumStrength"] = strength
    (cards / "concepts.json").write_text(json.dumps(concepts))
    with pytest.raises(KnowledgeError, match=problem) as err:
        load_knowledge(cards)
    assert err.value.file == "concepts.json" and "textMinimumStrength" in err.value.field


def test_a_maximum_strength_must_lie_above_the_minimum(tmp_path: Path) -> None:
    cards = _copy_cards(tmp_path)
    concepts = json.loads((cards / "concepts.json").read_text())
    [therapy] = [c for c in concepts["concepts"] if c["id"] == "b12-therapy"]
    therapy["textMaximumStrength"] = {"milligrams": 0.01}
    (cards / "concepts.json").write_text(json.dumps(concepts))
    with pytest.raises(KnowledgeError, match="above textMinimumStrength") as err:
        load_knowledge(cards)
    assert err.value.field.endswith("textMaximumStrength")


def test_a_minimum_strength_needs_the_names_to_find_it_by(tmp_path: Path) -> None:
    cards = _copy_cards(tmp_path)
    concepts = json.loads((cards / "concepts.json").read_text())
    [metformin] = [c for c in concepts["concepts"] if c["id"] == "metformin"]
    metformin["textMinimumStrength"], metformin["textTerms"] = {"milligrams": 100}, []
    (cards / "concepts.json").write_text(json.dumps(concepts))
    with pytest.raises(KnowledgeError, match="needs textTerms") as err:
        load_knowledge(cards)
    assert err.value.field.endswith("textMinimumStrength")


def test_the_text_windows_are_read_from_cards(tmp_path: Path) -> None:
    """A list item's length is knowledge a reviewer may change: at three words "pain in the muscles
    of the legs" is no list item, so the myalgia after it is a new statement; at eight it is one item
    of the negated list, and the myalgia is negated with it."""
    text = "Negative for fever, pain in the muscles of the legs and myalgia"
    assert "myalgia" in load_knowledge().text.find(text)  # seven words: no list item, a new statement
    cards = _copy_cards(tmp_path)
    doc = json.loads((cards / "text-matching.json").read_text())
    doc["listItemWords"] = 8
    (cards / "text-matching.json").write_text(json.dumps(doc))
    assert "myalgia" not in load_knowledge(cards).text.find(text)


def test_the_words_that_part_a_list_are_read_from_cards(tmp_path: Path) -> None:
    """'or' parts the items of a negated list because text-matching.json lists it: without it, "chills
    or myalgias" is one item the myalgia does not begin, and the cue is too far back to reach it."""
    text = "Denies fever, night sweats, weight loss, chills or myalgias"
    assert "myalgia" not in load_knowledge().text.find(text)
    cards = _copy_cards(tmp_path)
    doc = json.loads((cards / "text-matching.json").read_text())
    doc["listJoinWords"] = [w for w in doc["listJoinWords"] if w != "or"]
    (cards / "text-matching.json").write_text(json.dumps(doc))
    assert "myalgia" in load_knowledge(cards).text.find(text)


def test_the_answers_a_question_mark_spares_are_read_from_cards(tmp_path: Path) -> None:
    """A question mark queries the word after it ('?coeliac') unless that word is an answer in
    text-matching.json, negative or positive ('Muscle pain ?yes' sets out the answer)."""
    assert load_knowledge().text.normalised("muscle pain ?yes, ?coeliac") == "muscle pain ?yes, query coeliac"
    cards = _copy_cards(tmp_path)
    doc = json.loads((cards / "text-matching.json").read_text())
    doc["positiveAnswers"] = [w for w in doc["positiveAnswers"] if w != "yes"]
    doc["negativeAnswers"].append("not sure")
    (cards / "text-matching.json").write_text(json.dumps(doc))
    changed = load_knowledge(cards).text
    assert changed.normalised("muscle pain ?yes, ?coeliac") == "muscle pain query yes, query coeliac"
    # an answer of more than one word is spared too, and, a negative one standing alone, read as the minus sign
    assert changed.normalised("fatigue ?not sure") == "fatigue ?minus-answer "
