"""Whether a mention is an item of the negated list a cue opens ("Negative for fever, chills and
myalgias"), each stretch of a list read once however many of its items are terms."""

import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from cds_service.text_patterns import phrase_pattern
from cds_service.text_words import words_of


def list_separator_pattern(join_words: list[str]) -> re.Pattern[str]:
    """What parts a list's items: a comma, slash, ampersand or plus, and `join_words` ("and", "or")."""
    words = phrase_pattern(join_words).pattern if any(w.strip() for w in join_words) else ""
    return re.compile(rf"[,/&+]|{words}" if words else r"[,/&+]")


# a review-of-systems list rarely runs past a dozen items (about 200 characters): reading at most
# this far back from each mention keeps a text of nothing but list items linear
_LIST_CHARS = 320


class ListScope:
    """Whether a term is an item of the list a negation cue opens: every item before it is a few
    words ('fever, joint swelling and myalgias') with none of `breaks` ('has', 'reports': a new
    statement), and the term begins its own item. An item's words are counted by `item_words`,
    which leaves out pseudo-negations ('no change in appetite' is one word). Mentions come in order,
    so each stretch of the list is read once, however many of its items are terms."""

    def __init__(self, text: str, separator: re.Pattern[str], breaks: frozenset[str],
                 item_words: Callable[[list[str]], list[str]], longest_item: int = 3) -> None:
        """`longest_item`: the most words an item may have ("weight loss", "shortness of breath")."""
        self.text, self.separator, self.breaks = text, separator, breaks
        self.item_words, self.longest_item = item_words, longest_item
        self.cue, self.until, self.intact = -1, 0, False

    def holds(self, cue: tuple[int, int], start: int) -> bool:
        if start - cue[1] > _LIST_CHARS:
            return False
        if cue[0] != self.cue or start < self.until:  # a new list: read from its cue
            self.cue, self.until, self.intact = cue[0], cue[1], True
        if not self.intact:
            return False
        *items, last = self.separator.split(self.text[self.until:start])
        def short(words: list[str]) -> bool:
            return len(words) <= self.longest_item and self.breaks.isdisjoint(words)

        # leaving pseudo-negations out only shortens an item: read them only for an item too long without
        if not all(short(w) or short(self.item_words(w)) for w in map(words_of, items)):
            self.intact = False  # a long or statement item: no term after it is in the list
            return False
        self.until = start - len(last)  # the term's own item is read with the next stretch
        return not words_of(last)


@dataclass(frozen=True)
class Spans:
    """Where a pattern occurs in a text, found once: the last occurrence before a point, in log time."""

    spans: list[tuple[int, int]]
    ends: list[int]

    @classmethod
    def of(cls, pattern: re.Pattern[str] | None, text: str,
           keep: Callable[[tuple[int, int]], bool] = lambda span: True) -> "Spans":
        spans = [span for m in pattern.finditer(text) if keep(span := m.span())] if pattern is not None else []
        return cls(spans, [e for _, e in spans])

    def last_before(self, point: int) -> tuple[int, int] | None:
        """The last occurrence that ends at or before `point`."""
        i = bisect_right(self.ends, point)
        return self.spans[i - 1] if i else None
