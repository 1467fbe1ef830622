"""Conservative free-text matching and negation."""

import pytest

from cds_service.knowledge import Knowledge


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Muscle aches for months, worse in the evening", {"myalgia"}),
        ("MYALGIA", {"myalgia"}),
        ("Patient denies muscle aches", set()),
        ("No muscle pain. Tired all the time", set()),
        ("muscle pain resolved", set()),
        ("history of muscle pain", set()),
        ("Denies fever but reports muscle aches", {"myalgia"}),
        ("Family history of myalgia", set()),
        ("myalgic encephalomyelitis", set()),
        ("not on metformin", set()),
        # review-of-systems form: the term as a question, then its answer
        ("Myalgia: negative", set()),
        ("Muscle pain? No", set()),
        ("ROS: fever: no. myalgia: denies. fatigue: yes", set()),
        ("Muscle aches - absent", set()),
        ("Myalgia: none", set()),
        ("Myalgia: yes, for three months", {"myalgia"}),
        ("Muscle pain? Yes", {"myalgia"}),
        ("Myalgia: widespread, worse in the evening", {"myalgia"}),
        ("Myalgia - mild", {"myalgia"}),
    ],
)
def test_myalgia_mentions(knowledge: Knowledge, text: str, expected: set[str]) -> None:
    assert knowledge.text.find(text) & {"myalgia", "metformin"} == expected


def test_medication_names_match_inside_product_text(knowledge: Knowledge) -> None:
    assert "metformin" in knowledge.text.find("Janumet (sitagliptin and metformin) 50/1000 mg")
    assert "b12-therapy" in knowledge.text.find("Hydroxocobalamin 1 MG/ML Injectable Solution")
    assert "b12-therapy" not in knowledge.text.find("cyanocobalaminx")


@pytest.mark.parametrize(("text", "expected"), [
    ("Fatigue: absent. Pins and needles: yes", {"paresthesia"}),
    ("fatigue? no; tingling? no", set()),
    ("Tiredness: present", {"fatigue"}),
    ("Tired all the time since the summer", {"fatigue"}),
    ("feels tired after night shifts", set()),  # 'tired' alone is too common to count
])
def test_question_and_answer_form_for_other_symptoms(knowledge: Knowledge, text: str, expected: set[str]) -> None:
    assert knowledge.text.find(text) & {"fatigue", "paresthesia"} == expected
