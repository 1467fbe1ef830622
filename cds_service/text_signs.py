"""Signs written in place of words, read as the words they stand for: the (-) and (+) of a
review-of-systems list (the question mark against a word: text_patterns.query_mark_pattern)."""

import re

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
