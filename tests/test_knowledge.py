"""Knowledge files load, cross-check, and fail loudly naming the file and field."""

import json
import shutil
from pathlib import Path

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
        assert len(variant.summary) <= 140


def test_deliberately_broken_rule_names_file_and_field(tmp_path: Path) -> None:
    cards = _copy_cards(tmp_path)
    shutil.copy(BROKEN / "rule.json", cards / "rule.json")
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(cards)
    assert err.value.file == "rule.json"
    assert "trigger" in err.value.field


def test_summary_over_140_characters_is_refused(tmp_path: Path) -> None:
    cards = _copy_cards(tmp_path)
    wording = json.loads((cards / "wording.json").read_text())
    wording["variants"]["test-b12"]["summary"] = "x" * 141
    (cards / "wording.json").write_text(json.dumps(wording))
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(cards)
    assert err.value.file == "wording.json" and err.value.field == "variants.test-b12.summary"


def test_unknown_concept_reference_is_refused(tmp_path: Path) -> None:
    cards = _copy_cards(tmp_path)
    rule = json.loads((cards / "rule.json").read_text())
    rule["symptoms"]["concepts"].append("hiccups")
    (cards / "rule.json").write_text(json.dumps(rule))
    with pytest.raises(KnowledgeError, match="hiccups"):
        load_knowledge(cards)


def test_threshold_in_a_non_canonical_unit_is_refused(tmp_path: Path) -> None:
    cards = _copy_cards(tmp_path)
    rule = json.loads((cards / "rule.json").read_text())
    rule["labSigns"][1]["unit"] = "g/L"
    (cards / "rule.json").write_text(json.dumps(rule))
    with pytest.raises(KnowledgeError, match="g/dL"):
        load_knowledge(cards)


def test_valueset_without_display_is_refused(tmp_path: Path) -> None:
    cards = _copy_cards(tmp_path)
    vs = json.loads((cards / "valuesets" / "myalgia.json").read_text())
    del vs["compose"]["include"][0]["concept"][0]["display"]
    (cards / "valuesets" / "myalgia.json").write_text(json.dumps(vs))
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(cards)
    assert err.value.file == "valuesets/myalgia.json" and "display" in str(err.value)


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


def test_wording_missing_a_key_the_card_reads_is_refused(tmp_path: Path) -> None:
    cards = _copy_cards(tmp_path)
    wording = json.loads((cards / "wording.json").read_text())
    del wording["notRedundant"]["noTherapy"]
    (cards / "wording.json").write_text(json.dumps(wording))
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(cards)
    assert err.value.file == "wording.json" and "notRedundant" in err.value.field and "noTherapy" in str(err.value)


def test_override_reason_not_in_the_list_is_refused(tmp_path: Path) -> None:
    cards = _copy_cards(tmp_path)
    wording = json.loads((cards / "wording.json").read_text())
    wording["variants"]["duplicate-order"]["overrideReasons"].append("felt-like-it")
    (cards / "wording.json").write_text(json.dumps(wording))
    with pytest.raises(KnowledgeError, match="felt-like-it") as err:
        load_knowledge(cards)
    assert err.value.file == "wording.json"


def test_a_card_without_override_reasons_is_refused(tmp_path: Path) -> None:
    cards = _copy_cards(tmp_path)
    wording = json.loads((cards / "wording.json").read_text())
    del wording["variants"]["untreated-low"]["overrideReasons"]
    (cards / "wording.json").write_text(json.dumps(wording))
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(cards)
    assert err.value.field == "variants.untreated-low.overrideReasons"


def test_wording_without_a_card_variant_is_refused(tmp_path: Path) -> None:
    cards = _copy_cards(tmp_path)
    wording = json.loads((cards / "wording.json").read_text())
    del wording["variants"]["test-active-b12"]
    (cards / "wording.json").write_text(json.dumps(wording))
    with pytest.raises(KnowledgeError, match="test-active-b12") as err:
        load_knowledge(cards)
    assert err.value.field == "variants"


def test_a_result_concept_without_bands_is_refused(tmp_path: Path) -> None:
    cards = _copy_cards(tmp_path)
    rule = json.loads((cards / "rule.json").read_text())
    del rule["b12Result"]["bands"]["holotc-result"]
    (cards / "rule.json").write_text(json.dumps(rule))
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(cards)
    assert err.value.file == "rule.json" and err.value.field == "b12Result.bands.holotc-result"


def test_result_bands_in_a_non_canonical_unit_are_refused(tmp_path: Path) -> None:
    cards = _copy_cards(tmp_path)
    rule = json.loads((cards / "rule.json").read_text())
    rule["b12Result"]["bands"]["b12-result"]["unit"] = "pmol/L"
    (cards / "rule.json").write_text(json.dumps(rule))
    with pytest.raises(KnowledgeError, match="pg/mL"):
        load_knowledge(cards)


def test_wording_without_a_service_description_is_refused(tmp_path: Path) -> None:
    cards = _copy_cards(tmp_path)
    wording = json.loads((cards / "wording.json").read_text())
    del wording["services"]["b12-myalgia-order-sign"]
    (cards / "wording.json").write_text(json.dumps(wording))
    with pytest.raises(KnowledgeError, match="b12-myalgia-order-sign") as err:
        load_knowledge(cards)
    assert err.value.field == "services"
