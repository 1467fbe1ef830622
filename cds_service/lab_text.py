"""Lab results sent as text: the number, comparator, unit and flag in "145 pg/mL L", "LOW 145 pg/mL",
"Less than 50 pg/mL" or "145,0 pg/mL". Labs whose interface has no Quantity write results so, and a
result read as words is a result the rule cannot compare: a deficiency missed, or a repeat test asked
for. The words (comparators, flags, marks) are data from cards/; this module only knows the shape.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from cds_service.knowledge_models import flag_words

# FHIR Quantity.comparator codes, as labs write them in text too; words and other signs come from units.json
_SIGNS = ("<=", ">=", "<", ">")
# a number as labs write it: 145, 145.0, 1,234 (thousands), 145,0 (a decimal comma)
_NUMBER = r"\d[\d,]*(?:\.\d+)?"
_THOUSANDS = re.compile(r"[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?")
_DECIMAL_COMMA = re.compile(r"\d+,\d+")
# a unit: one word that opens with no digit or punctuation ("pg/mL", "pmol/L", "µmol/L")
_UNIT = r"[^\s\d.,;:()\[\]][^\s,;:()\[\]]*"
# the lab's reference range beside the result: "(180-914)", "[ref 180 - 914 pg/mL]", "RR: 180-914" at the end;
# the word after the range is its unit, or a flag the lab wrote inside the bracket ("(180-914 low)"), kept
_RANGE = rf"{_NUMBER}\s*[-–]\s*{_NUMBER}"
_RANGE_NAME = r"(?:ref(?:erence)?\.?(?:\s+range)?|rr|nr|normal(?:\s+range)?|range)\s*[:=]?\s*"
_REFERENCE_RANGE = re.compile(
    rf"\s*[(\[]\s*(?:{_RANGE_NAME})?{_RANGE}(?:\s*(?P<inside>{_UNIT}))?\s*[)\]]"
    rf"|\s+{_RANGE_NAME}{_RANGE}(?:\s*(?P<after>{_UNIT}))?\s*$", re.IGNORECASE)
_RESULT_CHARS = 120  # "< 2,000 pg/mL (ref 180 - 914 pg/mL) **" is 37
# punctuation that parts a flag from its result: "148 pg/mL - low", "148 pg/mL, low", "Low: 148 pg/mL"
_SEPARATOR = re.compile(r"\s+[-–—]\s+|,\s+|:\s+")
# a number with letters or marks written onto it, a flag when those name one ("148L", "148*L")
_GLUED = re.compile(rf"(?P<number>(?:[<>≤≥]=?)?{_NUMBER})(?P<flag>[^\s\d.,][^\s]*)")


@dataclass(frozen=True, slots=True)
class TextValue:
    """What a result written as text says."""

    value: float
    unit: str | None
    comparator: str | None
    flag: str | None  # the flag code its words name (lowFlags.textFlags: L, LL, N, H, ...)


def number(text: str) -> float | None:
    """A number as labs write it. A comma before exactly three digits (after a first group of one to
    three digits that is not 0) separates thousands, as US labs write 1,234; any other single comma
    is a decimal comma, as European labs write 145,0 and 0,45."""
    if "," not in text:
        return float(text)
    if _THOUSANDS.fullmatch(text):
        return float(text.replace(",", ""))
    if _DECIMAL_COMMA.fullmatch(text):
        return float(text.replace(",", "."))
    return None


class LabTextReader:
    """Reads a valueString that is a result, compiled once from the knowledge's words."""

    def __init__(self, comparator_words: Mapping[str, str], flags: Mapping[str, str], marks: list[str]) -> None:
        self.flags = flags  # by their words (flag_words), as interpretation text is read
        self.marks = frozenset(marks)
        self._marks = tuple(sorted(self.marks, key=len, reverse=True))  # '**' before '*': no order by hash
        self.words = {" ".join(w.lower().split()): c for w, c in comparator_words.items()}
        spelled = sorted([*_SIGNS, *self.words], key=len, reverse=True)
        comparators = "|".join(r"\s+".join(re.escape(part) for part in c.split()) for c in spelled)
        self._core = re.compile(
            rf"(?P<comparator>{comparators})?\s*(?P<value>{_NUMBER})\s*(?P<unit>{_UNIT})?", re.IGNORECASE)
        # a number or range (comparator optional), at most a unit and a remark in brackets after it:
        # "150-200 pg/mL", "> 2,000 pg/mL (repeated)"; not "2nd specimen hemolyzed" nor "1 tube clotted - QNS"
        self._leading = re.compile(
            rf"(?:(?:{comparators})\s*)?\d[\d,]*(?:\.\d+)?(?:\s*[-–]\s*\d[\d,]*(?:\.\d+)?)?"
            r"(?:\s*[^\s\d.,;:(-][^\s,;:]*)?(?:\s*\(.*\))?\s*$",
            re.IGNORECASE,
        )

    def _flag(self, token: str) -> tuple[bool, str | None]:
        """(whether the token is a flag or a mark, the flag code it names): "L", "(L)", "LOW", "*"."""
        bare = token[1:-1].strip() if len(token) > 2 and token[0] + token[-1] in ("()", "[]") else token
        if bare in self.marks:
            return True, None
        code = self.flag_code(bare)
        return code is not None, code

    def flag_code(self, text: str) -> str | None:
        """The flag code a flag's words name ("Low", "Abnormal low"), a mark after them passed over
        ("Low*", "L!"): the lab drew attention to a flag it already gave."""
        words = flag_words(text)
        for mark in self._marks:
            if len(words) <= len(mark):
                continue
            if words.endswith(mark) and (code := self.flags.get(words[: -len(mark)].rstrip())) is not None:
                return code
            if words.startswith(mark) and (code := self.flags.get(words[len(mark):].lstrip())) is not None:
                return code  # "*L", as some labs print the mark first
        return self.flags.get(words)

    def read(self, text: str) -> TextValue | None:
        """The result the text holds, when it is only a value with at most a comparator, a unit and a
        flag or mark before it, after the unit, or between the number and the unit ("148 L pg/mL",
        written onto the number: "148L", "148 *L"), a flag parted by a dash, comma or colon ("148
        pg/mL - low", "Low: 148 pg/mL"), and the lab's reference range after it ("148 pg/mL
        (180-914)"); else None (words, a range, a remark, or flags that disagree, "250 low normal":
        shown, never compared)."""
        value = self._value(text)
        return value if isinstance(value, TextValue) else None

    def _value(self, text: str) -> TextValue | Literal["disagreeing flags"] | None:
        # the range is the lab's, not a second result; a separator parts a flag, as a space does
        # (only in a text as short as a result is: the patterns' space runs cost more on long ones)
        if len(text) <= _RESULT_CHARS:
            text = _SEPARATOR.sub(" ", _REFERENCE_RANGE.sub(self._range_flag, text.strip()))
        tokens = [part for token in text.split() for part in self._unglued(token)]
        codes: list[str] = []  # in the order written: the first names the flag
        kept: list[str] = []
        for i, token in enumerate(tokens):
            # first, last, or right after the number with at most the unit and a flag after it
            placed = i in (0, len(tokens) - 1) or (i >= len(tokens) - 3 and bool(kept) and kept[-1][-1].isdigit())
            if len(tokens) > 1 and placed and not token[0].isdigit():
                known, code = self._flag(token)
                if known:
                    codes += [code] if code is not None else []
                    continue
            kept.append(token)
        match = self._core.fullmatch(" ".join(kept))
        if match is not None and len({c[0] for c in codes}) > 1:  # low and normal; L and LL agree
            return "disagreeing flags"
        if match is None or (value := number(match["value"])) is None:
            return None
        written = match["comparator"]
        comparator = None if written is None else self.words.get(" ".join(written.lower().split()), written)
        return TextValue(value, match["unit"], comparator, codes[0] if codes else None)

    def _range_flag(self, match: re.Match[str]) -> str:
        """A reference range removed, the flag written inside it kept ("(180-914 low)": low)."""
        word = match["inside"] or match["after"]
        return f" {word}" if word and self._flag(word)[0] else ""

    def _unglued(self, token: str) -> list[str]:
        """A number with a flag written onto it ("148L", "148*L"), or a unit with a mark ("pg/mL*"), as the two tokens it stands for."""
        glued = _GLUED.fullmatch(token)
        if glued is not None and self._flag(glued["flag"])[0]:
            return [glued["number"], glued["flag"]]
        # a mark written onto the unit ("pg/mL*"): the lab drew attention to the result
        for mark in self._marks:
            if len(token) > len(mark) and token.endswith(mark) and not token[0].isdigit():
                return [token[: -len(mark)], mark]
        return [token]

    def holds_number(self, text: str) -> bool:
        """Whether the text reports a number, read or not ("150-200 pg/mL", "> 2,000 pg/mL (repeated)"):
        the test was done. "Test not performed", "QNS" or "2nd specimen hemolyzed" report none."""
        # stripped first: spaces the pattern would share out between \s* runs cost quadratic time
        return self._value(text) is not None or self._leading.match(text.strip()) is not None
