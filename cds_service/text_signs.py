"""Signs written in place of words, read as the words they stand for: the (-) and (+) of a
review-of-systems list, and a question mark against a word ("?coeliac")."""

import re


def query_mark_pattern(answers: list[str]) -> re.Pattern[str]:
    """A question mark written against a word queries it, as "query" does ("?coeliac", "Tiredness
    ?anaemia"); against an answer ("Muscle pain ?no", "Fatigue ?yes") it still asks the question the
    answer answers, so `answers` (text-matching.json's negative and positive answers) are left alone."""
    words = sorted({a.lower().strip() for a in answers if a.strip()}, key=len, reverse=True)
    spared = rf"(?!(?:{'|'.join(map(re.escape, words))})(?![a-z0-9'/-]))" if words else ""
    return re.compile(rf"(?<![a-z0-9])\?(?=[a-z]){spared}")


# Review-of-systems signs, read as words. A text writes them before its items or after them, and
# its first sign tells which. Before: a minus sign opens a negated list, as "negative for" does
# ("(-) fever, chills, myalgias"; one with no word after it answers the item before it). After:
# each minus sign answers the item before it ("Fever (-) Myalgia (+) Fatigue (+)"). A plus sign
# starts a new statement.
_SIGN = re.compile(r"\(\s*([+-])\s*\)(?=(\s*[a-z0-9])?)")
MINUS_BEFORE, MINUS_AFTER, PLUS = "minus-sign", "minus-answer", "plus-sign"


def signs_as_words(text: str) -> str:
    first = _SIGN.search(text) if "(" in text else None
    if first is None:
        return text
    signs_follow_items = bool(re.search(r"[a-z0-9]\s*$", text[: first.start()]))

    def word(m: re.Match[str]) -> str:
        if m.group(1) == "+":
            return f" {PLUS} "
        return f" {MINUS_BEFORE} " if m.group(2) and not signs_follow_items else f" {MINUS_AFTER} "

    return _SIGN.sub(word, text)
