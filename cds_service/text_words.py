"""Words as the text matcher reads them: the word pattern, the words of a clause either side of a
mention (read from a bounded stretch, so a long text costs time in proportion to its length), and
cue phrases looked up by their words."""

import re
from dataclasses import dataclass

WORD = re.compile(r"[a-z0-9'/-]+")
# At most this much text either side of a mention is read for its cues and answer (the cue window
# is a few words, but one "word" can be a long slash list: "No fever/chills/…/myalgia"), so a long
# text without clause breaks costs time in proportion to its length. A word cut at the edge is dropped.
CONTEXT_CHARS = 1024
SHORT_CONTEXT_CHARS = 96


def words_before(text: str, start: int, clause_start: int, wanted: int) -> list[str]:
    """The last `wanted` words of the clause before `start`, read from at most CONTEXT_CHARS back
    (a short stretch first: usually enough, and what keeps negated lists cheap)."""
    for span in (SHORT_CONTEXT_CHARS, CONTEXT_CHARS):
        lo = max(clause_start, start - span)
        words = words_of(text[lo:start])
        if lo > clause_start and WORD.match(text[lo - 1]):
            words = words[1:]  # cut mid-word
        if lo == clause_start or len(words) >= wanted:
            break
    return words[-wanted:]


def words_after(text: str, end: int, clause_end: int, wanted: int) -> list[str]:
    """The first `wanted` words of the clause after `end`, read up to CONTEXT_CHARS on."""
    for span in (SHORT_CONTEXT_CHARS, CONTEXT_CHARS):
        hi = min(clause_end, end + span)
        words = words_of(text[end:hi])
        if hi < clause_end and WORD.match(text[hi]):
            words = words[:-1]  # cut mid-word
        if hi == clause_end or len(words) >= wanted:
            break
    return words[:wanted]


def words_of(text: str) -> list[str]:
    return WORD.findall(text)


def has_phrase(words: list[str], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(tuple(words[i : i + n]) == phrase for i in range(len(words) - n + 1))


@dataclass(frozen=True)
class PhraseSet:
    """Cue phrases as one set per length: a window of words is looked up once per position and
    length, not once per cue (a negated list is read cue window by cue window)."""

    phrases: frozenset[tuple[str, ...]]
    lengths: tuple[int, ...]

    @classmethod
    def of(cls, phrases: tuple[tuple[str, ...], ...]) -> "PhraseSet":
        return cls(frozenset(phrases), tuple(sorted({len(p) for p in phrases})))

    def ends(self, words: list[str]) -> bool:
        """Whether `words` end with one of the phrases."""
        return any(tuple(words[-n:]) in self.phrases for n in self.lengths if n <= len(words))

    def starts(self, words: list[str]) -> bool:
        """Whether `words` start with one of the phrases."""
        return any(tuple(words[:n]) in self.phrases for n in self.lengths if n <= len(words))

    def within(self, words: list[str]) -> bool:
        """Whether any phrase occurs in `words`."""
        phrases = self.phrases
        return any(tuple(words[i : i + n]) in phrases for n in self.lengths for i in range(len(words) - n + 1))
