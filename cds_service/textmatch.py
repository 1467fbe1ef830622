"""Conservative free-text matching: whole-word terms, cancelled by nearby negation cues."""

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain

from cds_service.list_scope import ListScope, Spans, list_separator_pattern
from cds_service.text_patterns import (
    bare_answer_pattern,
    bracket_answer_pattern,
    joined,
    phrase_pattern,
    query_mark_pattern,
    relative_patterns,
    term_pattern,
    word_sequence_pattern,
)
from cds_service.text_signs import MINUS_AFTER, MINUS_BEFORE, PLUS, signs_as_words
from cds_service.text_words import (
    CONTEXT_CHARS,
    SHORT_CONTEXT_CHARS,
    PhraseSet,
    has_phrase,
    words_after,
    words_before,
    words_of,
)

_JOINED = re.compile(r"[/-]")
_NAME_CHARS = 5  # a hyphen joins two names when both have this many letters: not "pre-", "post-", "flu-"


def _parts(word: str) -> list[str]:
    """A word's parts: split at each slash, and at hyphens that join names ("guaifenesin-codeine"),
    not prefixes or short words ("pre-replacement", "post-injection", "flu-vaccine")."""
    out = []
    for piece in word.split("/"):
        pieces = piece.split("-")
        out += pieces if len(pieces) > 1 and all(len(p) >= _NAME_CHARS for p in pieces) else [piece]
    return [p for p in out if p]

TimeCheck = Callable[[], None]
"""Raises when the call's time is up; long work calls it now and then (limits.time_limit)."""


def no_time_limit() -> None:
    """The check for work with no deadline (the `evaluate` command, tests)."""


# A term set out as a question with its answer, as review-of-systems templates write it:
# "Myalgia: negative", "Muscle pain? No", "Fatigue - absent".
# A dash without spaces marks an answer only before a whole negative answer ("Pins and needles—none",
# "Myalgia--denies any", read as a minus sign by bare_answer_pattern): in prose it joins a clause
# ("Muscle aches—not getting better" is a complaint).
_ANSWER_MARK = re.compile(
    r"[ \t]*[:?][ \t]*|[ \t]+[-–—][ \t]+|[ \t]*(?:[-–—]|--)?[ \t]*(?=minus-answer )"
)  # "Myalgias (-)" too
_NOT_ANSWERED, _ANSWERED_NO_DIAGNOSIS, _ANSWERED_NO = 0, 1, 2  # TextMatcher._answer
_ANSWER_MARKS = (":", "?", "-", "–", "—")  # a bare answer follows one of these (bare_answer_pattern)
_DASH_ANSWER = re.compile(r"[ \t]+[-–—][ \t]+")
_PIECE_CHARS = 16_000  # the longest text scanned at once: tens of milliseconds at worst
_MENTIONS_PER_CHECK = 256  # a few milliseconds of the slowest (every mention negated) text


@dataclass(frozen=True)
class TextMatcher:
    """Finds concept mentions in free text; built once from cards/ at start."""

    pattern: re.Pattern[str] | None
    term_concepts: dict[str, tuple[str, ...]]  # by the term's joined spelling (joined): read with concepts_of
    pre_negation: tuple[tuple[str, ...], ...]
    concept_pre_negation: dict[str, tuple[tuple[str, ...], ...]]
    post_negation: tuple[tuple[str, ...], ...]
    clause_break: re.Pattern[str]
    window_words: int
    post_window_words: int = 3  # words after a mention a post-cue reaches
    timing_words: int = 6  # words of a time phrase passed over ("for about 3 weeks in 2019")
    list_item_words: int = 3  # the most words of a list item ("shortness of breath")
    negative_answers: frozenset[tuple[str, ...]] = frozenset()
    # words anywhere in the text that make every mention something else (a multivitamin's name)
    concept_exclusions: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    # phrases that hold one of the concept's terms ("on exertion"): they cancel only the mention inside them
    local_exclusions: dict[str, re.Pattern[str]] = field(default_factory=dict)
    # cues that negate every item of the list after them ("Negative for fever, chills and myalgias"),
    # and words that make an item a new statement instead ("has", "reports")
    list_negation: re.Pattern[str] | None = None
    list_breaks: frozenset[str] = frozenset()
    # words that open a new statement ("No fever, reports muscle aches"): a cue before one does
    # not reach past it, unless the cue negates the statement itself ("no reports of", "denies c/o")
    statement_words: frozenset[str] = frozenset()
    # abbreviations whose full stop does not end a clause ("Neg. for myalgia")
    abbreviation: re.Pattern[str] | None = None
    # a list cue followed by a colon ("Denies: fever, myalgias"): that colon does not end the clause
    list_colon: re.Pattern[str] | None = None
    # phrases that hold a cue but negate nothing ("no change in", "no obvious cause for"): a cue
    # inside one does not count before a term, nor as an answer's first words
    pseudo_negation: tuple[tuple[str, ...], ...] = ()
    # words that may stand between a term and its cue at the start of an answer or a later item
    # ("Myalgia - now resolved", "Fatigue: symptoms resolved"), and words after such a cue that keep
    # it about the term before ("Dizziness, resolved with fluids")
    lead_words: frozenset[str] = frozenset()
    cue_qualifiers: frozenset[str] = frozenset()
    # words of a time phrase ("3 weeks ago", "in 2019"), passed over after a term before its cue
    time_words: frozenset[str] = frozenset()
    # diagnoses: a cue anywhere in the first words of its answer excludes one ("Celiac disease: tTG
    # negative"), where after a symptom the answer must open with the cue ("Myalgia - PMR excluded")
    diagnosis_concepts: frozenset[str] = frozenset()
    # diagnoses and the symptoms a relative named beside makes the relative's (found by the patterns
    # of relative_patterns, after and before a mention): "Mother: myalgia", "Coeliac disease (mother)"
    relative_concepts: frozenset[str] = frozenset()
    # a one-word negative answer right after a question's mark and before a comma ("Fever: no, ...")
    bare_answer: re.Pattern[str] | None = None
    # a whole negative answer in brackets right after a word ("Tingling (denies)"), read as "(-)"
    bracket_answer: re.Pattern[str] | None = None
    # a question mark against a word other than an answer ("?coeliac"), read as "query"
    query_mark: re.Pattern[str] = field(default_factory=lambda: query_mark_pattern([]))
    # what parts the items of a negated list: punctuation and the words that join items ("and", "or")
    list_separator: re.Pattern[str] = field(default_factory=lambda: list_separator_pattern([]))
    relative_named: tuple[re.Pattern[str], re.Pattern[str]] | None = None
    # the cues above compiled for lookup: post-negation, general pre-negation, and each concept's own
    post_cues: PhraseSet = field(init=False)
    general_pre_cues: PhraseSet = field(init=False)
    own_pre_cues: dict[str, PhraseSet] = field(init=False)
    pseudo_cues: PhraseSet = field(init=False)
    pseudo_starts: frozenset[tuple[str, ...]] = field(init=False)
    # the pseudo-negations as one pattern, and the terms a list cue begins ('no energy'): what a list cue
    # may open that makes it open no list (_opens_a_list)
    pseudo_pattern: re.Pattern[str] | None = field(init=False)
    list_cue_terms: re.Pattern[str] | None = field(init=False)
    long_post_starts: frozenset[tuple[str, ...]] = field(init=False)  # the first two words of post-cues longer than the window

    def __post_init__(self) -> None:
        set_field = object.__setattr__  # frozen: derived once, here
        set_field(self, "pseudo_cues", PhraseSet.of(self.pseudo_negation))
        set_field(self, "pseudo_starts", frozenset(p[:2] for p in self.pseudo_negation))
        set_field(self, "pseudo_pattern", word_sequence_pattern(self.pseudo_negation) if self.pseudo_negation else None)
        list_negation = self.list_negation
        cue_terms = [t for t in self.term_concepts if list_negation is not None and list_negation.match(t) is not None]
        set_field(self, "list_cue_terms", term_pattern(cue_terms) if cue_terms else None)
        set_field(self, "post_cues", PhraseSet.of(self.post_negation))
        set_field(self, "long_post_starts", frozenset(p[:2] for p in self.post_negation if len(p) > self.post_window_words))
        set_field(self, "general_pre_cues", PhraseSet.of(self.pre_negation))
        set_field(self, "own_pre_cues", {c: PhraseSet.of(own) for c, own in self.concept_pre_negation.items() if own})

    def concepts_of(self, mention: str) -> tuple[str, ...]:
        """The concepts of a term as `pattern` found it in lowered text ('b12 + folate' is the term 'b12 & folate')."""
        found = self.term_concepts.get(mention)
        return found if found is not None else self.term_concepts[joined(mention)]

    def _own_cue_reaches(self, concept: str, lowered: str, clause_start: int, start: int, before: list[str]) -> bool:
        """A concept's own cue ('h/o', 'planned', 'check for') negates a mention in its own comma item, or
        past commas only over items that are themselves mentions read with that cue ('h/o myalgia,
        fatigue'), never over another subject ('h/o hypothyroidism, fatigue x 6 months')."""
        own = self.own_pre_cues.get(concept)
        if own is None or self.pattern is None or not own.within(before):
            return False
        pattern = self.pattern
        *items, last = lowered[max(clause_start, start - CONTEXT_CHARS):start].split(",")
        if own.within(words_of(last)):
            return True
        for item in reversed(items):
            shared = [c for m in pattern.finditer(item) for c in self.concepts_of(m.group(0))
                      if c in self.own_pre_cues and not own.phrases.isdisjoint(self.own_pre_cues[c].phrases)]
            if not shared:
                return False
            words = words_of(item)
            if own.within(words) and any(self.own_pre_cues[c].within(words) for c in shared):
                return True
        return False

    @classmethod
    def build(
        cls,
        terms: dict[str, list[str]],
        pre_negation: list[str],
        post_negation: list[str],
        clause_breaks: list[str],
        window_words: int,
        concept_pre_negation: dict[str, list[str]] | None = None,
        post_window_words: int = 3,
        timing_words: int = 6,
        list_item_words: int = 3,
        negative_answers: list[str] | None = None,
        positive_answers: list[str] | None = None,
        list_join_words: list[str] | None = None,
        concept_exclusions: dict[str, list[str]] | None = None,
        list_negation: list[str] | None = None,
        list_breaks: list[str] | None = None,
        statement_words: list[str] | None = None,
        abbreviations: list[str] | None = None,
        pseudo_negation: list[str] | None = None,
        lead_words: list[str] | None = None,
        cue_qualifiers: list[str] | None = None,
        time_words: list[str] | None = None,
        relatives: list[str] | None = None,
        relative_qualifiers: list[str] | None = None,
        diagnosis_concepts: list[str] | None = None,
        relative_concepts: list[str] | None = None,
    ) -> "TextMatcher":
        term_concepts: dict[str, list[str]] = {}
        for concept, concept_terms in terms.items():
            for term in concept_terms:
                known = term_concepts.setdefault(joined(term.lower().strip()), [])
                if concept not in known:  # 'b12/folate' and 'b12 & folate' are one term
                    known.append(concept)
        pattern = term_pattern(list(term_concepts)) if term_concepts else None
        breaks = "|".join(re.escape(b.lower().strip()) for b in [*clause_breaks, PLUS])
        clause_break = re.compile(rf"[.;:!?\n]|\b(?:{breaks})\b")
        list_cues = [c.lower().strip() for c in list_negation or []] + [MINUS_BEFORE]

        def holds_term(concept: str, cue: str) -> bool:
            return bool(terms.get(concept)) and term_pattern(terms[concept]).search(cue.lower()) is not None

        def phrases(cues: list[str]) -> tuple[tuple[str, ...], ...]:
            return tuple(tuple(words) for c in cues if (words := words_of(c.lower())))

        return cls(
            pattern=pattern,
            term_concepts={t: tuple(c) for t, c in term_concepts.items()},
            pre_negation=phrases(pre_negation),
            concept_pre_negation={
                c: phrases(cues) for c, cues in (concept_pre_negation or {}).items()
            },
            post_negation=phrases(post_negation),
            clause_break=clause_break,
            window_words=window_words,
            post_window_words=post_window_words,
            timing_words=timing_words,
            list_item_words=list_item_words,
            negative_answers=frozenset(phrases(negative_answers or [])),
            concept_exclusions={c: phrases([cue for cue in cues if not holds_term(c, cue)])
                                for c, cues in (concept_exclusions or {}).items()},
            local_exclusions={c: term_pattern(local) for c, cues in (concept_exclusions or {}).items()
                              if (local := [cue for cue in cues if holds_term(c, cue)])},
            list_negation=phrase_pattern(list_cues) if list_cues else None,
            list_breaks=frozenset(w.lower() for w in list_breaks or []),
            statement_words=frozenset(w.lower() for w in statement_words or []),
            # a listed abbreviation's full stop ends nothing when more text follows, in any case
            # ("Neg. for myalgia", "Negative for: Fever, Wt. Loss, Myalgias": title-case lists are common)
            abbreviation=re.compile(
                r"(?<![A-Za-z0-9.])(?:" + "|".join(re.escape(a.lower().rstrip(".")) for a in abbreviations) + r")\.(?= +[a-z0-9])",
                re.IGNORECASE,
            ) if abbreviations else None,
            list_colon=re.compile(phrase_pattern(list_cues).pattern + r"[ \t]*:") if list_cues else None,
            pseudo_negation=phrases(pseudo_negation or []),
            lead_words=frozenset(w.lower() for w in lead_words or []),
            cue_qualifiers=frozenset(w.lower() for w in cue_qualifiers or []),
            time_words=frozenset(w.lower() for w in time_words or []),
            diagnosis_concepts=frozenset(diagnosis_concepts or ()),
            relative_concepts=frozenset(relative_concepts if relative_concepts is not None else diagnosis_concepts or ()),
            bare_answer=bare_answer_pattern(negative_answers or []),
            bracket_answer=bracket_answer_pattern(negative_answers or []),
            query_mark=query_mark_pattern([*(negative_answers or []), *(positive_answers or [])]),
            list_separator=list_separator_pattern(list_join_words or []),
            relative_named=relative_patterns(relatives or [], relative_qualifiers or []),
        )

    def normalised(self, text: str, answers: bool = True) -> str:
        """The text as the matcher reads it (after abbreviations): lower case, review-of-systems signs
        and bare negative answers as words ("Fever - no, myalgia - yes": that "no" answers the fever
        and opens no list over the myalgia), a question mark against a word as "query"."""
        lowered = signs_as_words(text.lower())
        if self.bracket_answer is not None and "(" in lowered:
            lowered = self.bracket_answer.sub(f" {MINUS_AFTER} ", lowered)
        if "?" in lowered:
            lowered = self.query_mark.sub("query ", lowered)
        return self._bare_answers_as_signs(lowered) if answers else lowered

    def _bare_answers_as_signs(self, lowered: str) -> str:
        if self.bare_answer is None or not any(mark in lowered for mark in _ANSWER_MARKS):
            return lowered
        return self.bare_answer.sub(rf"\g<mark>{MINUS_AFTER} ", lowered)

    def excluded(self, text: str) -> frozenset[str]:
        """Concepts a word anywhere in `text` makes something else (a multivitamin's name for B12
        replacement): whole-text exclusions, not the phrases that cancel only the mention inside them."""
        if not self.concept_exclusions or not text:
            return frozenset()
        return self._excluded_in(signs_as_words(text.lower()), self.concept_exclusions)

    @staticmethod
    def _excluded_in(lowered: str, exclusions: Mapping[str, tuple[tuple[str, ...], ...]]) -> frozenset[str]:
        words = words_of(lowered)
        # and the parts of words joined as EHRs name combinations ("guaiFENesin-codeine",
        # "VESTIBULAR/BALANCE"), so a part excludes as a word does
        parts = [p for w in words for p in _parts(w)] if any(_JOINED.search(w) for w in words) else words
        return frozenset(c for c, cues in exclusions.items()
                         if any(has_phrase(words, cue) or (parts is not words and has_phrase(parts, cue)) for cue in cues))

    def is_negative_answer(self, text: str | None) -> bool:
        """A free-text answer that records absence: one of the negative answers in full ("No",
        "none.", "Not present"), or an answer that opens with a negation cue ("No pain", "Denies")."""
        if text is None:
            return False
        words = tuple(words_of(signs_as_words(text.lower())))
        if words[:1] in ((MINUS_AFTER,), (MINUS_BEFORE,)):  # "(-)", "(-) present"
            return True
        if words in self.negative_answers:
            return True
        return self._opens_with_cue(list(words))

    def _opens_with_cue(self, words: list[str]) -> bool:
        """Whether the words open with a negation cue that is no part of a pseudo-negation
        ("No pain" does; "No change", "No better off statin" do not)."""
        return self.general_pre_cues.starts(words) and not self.pseudo_cues.starts(words)

    def _without_pseudo(self, words: list[str]) -> list[str]:
        """The cue window with every pseudo-negation phrase left out."""
        pseudo = self.pseudo_cues
        starts = self.pseudo_starts  # the first two words of each phrase: most windows hold none
        if not any(pair in starts for pair in zip(words, words[1:], strict=False)):
            return words
        kept: list[str] = []
        i = 0
        while i < len(words):
            n = next((n for n in reversed(pseudo.lengths) if tuple(words[i : i + n]) in pseudo.phrases), 0)
            if n == 0:
                kept.append(words[i])
            i += n or 1
        return kept

    def _opens_a_list(self, lowered: str, cue: tuple[int, int]) -> bool:
        """Whether a list cue opens a negated list: not when it begins a term ('No energy, muscle
        aches') or a pseudo-negation that names no term ('No appetite, muscle aches', 'Lost weight
        without trying, myalgia'). A pseudo-negation that names a term still negates it, and the
        list it opens ('Myalgia - no injury or strenuous exercise')."""
        start, end = cue
        term = self.list_cue_terms.match(lowered, start) if self.list_cue_terms is not None else None
        if term is not None and term.end() >= end:
            return False
        pseudo = self.pseudo_pattern.match(lowered, start) if self.pseudo_pattern is not None else None
        return pseudo is None or (self.pattern is not None and self.pattern.search(lowered, start, pseudo.end()) is not None)

    def _answer(self, lowered: str, end: int, break_starts: list[int], ends_text: bool = True) -> int:
        """For a term set out as a question ("Myalgia:", "Muscle pain?"): _ANSWERED_NO when its answer
        records absence (a negative answer, or one that opens with a cue), _ANSWERED_NO_DIAGNOSIS
        when a cue stands later in its first words (it negates a diagnosis only), else _NOT_ANSWERED."""
        mark = _ANSWER_MARK.match(lowered, end)
        if mark is None:
            return _NOT_ANSWERED
        if ends_text and "?" in mark.group(0) and not lowered[mark.end():].strip():  # "Coeliac disease?": asked, never answered
            return _ANSWERED_NO
        i = bisect_left(break_starts, mark.end())
        answer_end = break_starts[i] if i < len(break_starts) else len(lowered)
        if answer_end - mark.end() > CONTEXT_CHARS:  # too long to be one of the short negative answers
            first = words_after(lowered, mark.end(), answer_end, max(self.post_window_words, *self.pseudo_cues.lengths, 0))
            negative = self._opens_with_cue(first)
        else:
            answer = lowered[mark.end() : answer_end]
            first = words_of(answer)
            negative = self.is_negative_answer(answer)
        first = first[:self.post_window_words]
        if negative or self._post_cue_opens(first) is not None:
            return _ANSWERED_NO
        return _ANSWERED_NO_DIAGNOSIS if self.post_cues.within(first) else _NOT_ANSWERED

    def _post_cue_opens(self, words: list[str]) -> list[str] | None:
        """The words after a post-negation cue that opens `words`, past any lead words ("now
        resolved", "symptoms resolved"); None when no cue opens them. "Statin myopathy unlikely"
        opens with no cue: it answers about something else."""
        i = 0
        while i < len(words) and words[i] in self.lead_words:
            i += 1
        rest = words[i:]
        n = next((n for n in reversed(self.post_cues.lengths) if tuple(rest[:n]) in self.post_cues.phrases), 0)
        return rest[n:] if n else None

    def _since_statement(self, before: list[str]) -> list[str]:
        """The cue window from the last word that opens a new statement, when no cue negates that word."""
        if not self.statement_words or self.statement_words.isdisjoint(before):
            return before
        for i in range(len(before) - 1, -1, -1):
            if before[i] in self.statement_words and not self.general_pre_cues.ends(before[:i]):
                return before[i + 1 :]
        return before

    def _post_negated(self, lowered: str, end: int, clause_end: int) -> bool:
        """Whether a cue in the few words after the term negates it. Past a comma a cue must end its
        item, or open it followed by a qualifier: "Myalgia, resolved", "Myalgias, fever, chills denied"
        and "Tingling feet, resolved with B12 injections" negate the first term, but
        "Muscle aches, denied fever" and "Positive for myalgia, negative for fever" open a new
        statement about something else. A cue longer than the window counts when it opens the words
        after the term or makes up an item: "Muscle aches no longer a problem", "Myalgia, no longer an issue"."""
        stretch = lowered[end : min(clause_end, end + CONTEXT_CHARS)]
        if _DASH_ANSWER.match(stretch):  # "Myalgia - PMR excluded": an answer, read by _answer
            return False
        seen, timed = 0, False
        for n, item in enumerate(stretch.split(",")):
            words = words_of(item)
            if n == 0:  # when it happened does not count against the window: "Myalgia in 2019 - resolved"
                counted = [w for w in words if not self._timing(w)]
                timed = len(counted) < len(words)
                window = counted[:self.post_window_words]
                # a cue in the window, or one longer than it opening the words ("no longer a problem")
                if self.post_cues.within(window) or self.post_cues.starts(counted):
                    return True
            else:
                window = words[: self.post_window_words - seen]
                opened = self._post_cue_opens(words)
                # the item is a cue, or opens with one qualified: "Muscle aches 3 weeks ago, now resolved",
                # "Myalgia, no longer an issue", "Dizziness, resolved with fluids"
                if opened is not None and (not opened or opened[0] in self.cue_qualifiers):
                    return True
                # "Myalgias, fever, chills denied"; past a time phrase this reads too far ("Myalgia for 3 weeks, fever resolved")
                if not timed and window == words and self.post_cues.ends(words):
                    return True
            seen += len(window)
            if seen >= self.post_window_words:
                return False
        return False

    def _timing(self, word: str) -> bool:
        """A word of a time phrase after a term ("3 weeks ago", "in 2019", "last year"): not counted
        in the few words a post-negation cue must stand within."""
        return word in self.time_words or word.isdigit()

    def _post_window(self, lowered: str, end: int, clause_end: int) -> list[str]:
        """The words after a term a post-negation cue is looked for in, time phrases left out: the
        window and as many again, where a cue opening a later item may stand ("Fatigue after COVID
        2021, since resolved"); _post_negated decides."""
        words = words_after(lowered, end, clause_end, 2 * self.post_window_words + self.timing_words)
        return [w for w in words if not self._timing(w)][: 2 * self.post_window_words]

    def _relative_named(self, lowered: str, start: int, end: int) -> bool:
        """A relative named right beside the mention at [start, end)."""
        if self.relative_named is None:
            return False
        after, before = self.relative_named
        return after.match(lowered, end) is not None or \
            before.search(lowered, max(0, start - SHORT_CONTEXT_CHARS), start) is not None

    def _inside_exclusion(self, concept: str, lowered: str, start: int, end: int,
                          spans: dict[str, list[tuple[int, int]]]) -> bool:
        """Whether the mention at [start, end) lies inside a phrase that makes it something else."""
        pattern = self.local_exclusions.get(concept)
        if pattern is None:
            return False
        if concept not in spans:
            spans[concept] = [m.span() for m in pattern.finditer(lowered)]
        found = spans[concept]
        i = bisect_right(found, (start, len(lowered)))  # the last phrase starting at or before the mention
        return i > 0 and found[i - 1][1] >= end

    def find(self, text: str, check: TimeCheck = no_time_limit) -> set[str]:
        """Concepts mentioned affirmatively in `text` (a negated mention is no mention); `check` is
        called every few hundred mentions, so a hostile text cannot outlast the call's deadline."""
        if self.pattern is None or not text:
            return set()
        if len(text) <= _PIECE_CHARS:
            return self._find(self.pattern, text, check)[0]
        # one scan of a huge text would outlast any deadline: read it in pieces, as one text (a word
        # in any piece that makes a concept something else holds for the whole; only the last piece
        # ends the text, where a question is left unanswered)
        found: set[str] = set()
        read: list[str] = []
        pieces = list(_pieces(text, _PIECE_CHARS))
        for n, piece in enumerate(pieces, 1):
            check()
            in_piece, lowered = self._find(self.pattern, piece, check, ends_text=n == len(pieces))
            found |= in_piece
            read.append(lowered)
        excluding = {c: self.concept_exclusions[c] for c in found if c in self.concept_exclusions}
        for lowered in read if excluding else ():
            check()
            found -= self._excluded_in(lowered, excluding)
        return found

    def _find(self, pattern: re.Pattern[str], text: str, check: TimeCheck,
              ends_text: bool | None = None) -> tuple[set[str], str]:
        """(concepts mentioned affirmatively, the text as read). With `ends_text` None the text is
        whole and the words that make a concept something else are applied here; as a piece (True or
        False: whether it is the last) the caller applies them over every piece."""
        whole = ends_text is None
        if self.abbreviation is not None and "." in text:  # the full stop becomes a space
            text = self.abbreviation.sub(lambda m: m.group(0)[:-1] + " ", text)
        lowered = self.normalised(text, answers=False)
        mentions = pattern.finditer(lowered)
        first = next(mentions, None)
        if first is None:  # most texts (a product's name, a code's display) name nothing: no more passes
            return set(), lowered
        if self.bare_answer is not None and (answered := self._bare_answers_as_signs(lowered)) != lowered:
            lowered = answered  # a bare answer holds no term: the mentions are found again where they now stand
            mentions = pattern.finditer(lowered)
            first = next(mentions)
        breaks = [m.span() for m in self.clause_break.finditer(lowered)]
        if self.list_colon is not None and ":" in lowered:
            opened = {m.end() - 1 for m in self.list_colon.finditer(lowered)}
            breaks = [b for b in breaks if b[0] not in opened]
        break_starts = [b[0] for b in breaks]
        break_ends = [b[1] for b in breaks]
        found: set[str] = set()
        spans: dict[str, list[tuple[int, int]]] = {}  # local exclusion phrases found, per concept, once
        list_cues = Spans.of(self.list_negation, lowered, lambda cue: self._opens_a_list(lowered, cue))
        in_list = ListScope(lowered, self.list_separator, self.list_breaks, self._without_pseudo, self.list_item_words)
        for n, match in enumerate(chain((first,), mentions), 1):
            if n % _MENTIONS_PER_CHECK == 0:
                check()
            concepts = self.concepts_of(match.group(0))
            if found.issuperset(concepts):
                continue  # already found affirmed: another mention changes nothing
            start, end = match.span()
            i = bisect_right(break_ends, start)
            clause_start = break_ends[i - 1] if i else 0
            j = bisect_left(break_starts, end)
            clause_end = break_starts[j] if j < len(break_starts) else len(lowered)
            cue = list_cues.last_before(start)
            if cue is not None and cue[0] >= clause_start and in_list.holds(cue, start):
                continue  # one item of a negated list (checked first: the cheapest of the negations)
            answer = self._answer(lowered, end, break_starts, ends_text is not False)
            if answer == _ANSWERED_NO:
                continue
            after = self._post_window(lowered, end, clause_end)
            # a cue in the window, or one longer than it opening the window (_post_negated reads it whole)
            if (self.post_cues.within(after) or tuple(after[:2]) in self.long_post_starts) \
                    and self._post_negated(lowered, end, clause_end):
                continue
            before = self._without_pseudo(
                self._since_statement(words_before(lowered, start, clause_start, self.window_words)))
            general = self.general_pre_cues.within(before)
            relative: bool | None = None  # looked for once, when a concept it cancels is named
            for concept in concepts:
                negated = general or self._own_cue_reaches(concept, lowered, clause_start, start, before)
                if not negated and concept in self.relative_concepts:
                    if relative is None:
                        relative = self._relative_named(lowered, start, end)
                    negated = relative or (answer == _ANSWERED_NO_DIAGNOSIS and concept in self.diagnosis_concepts)
                if not negated and not self._inside_exclusion(concept, lowered, start, end, spans):
                    found.add(concept)
        if whole and found and self.concept_exclusions:
            found -= self._excluded_in(lowered, {c: self.concept_exclusions[c] for c in found if c in self.concept_exclusions})
        return found, lowered


def _pieces(text: str, limit: int) -> Iterator[str]:
    """`text` in pieces of at most `limit` characters, each ending at a line end where one lies in
    its second half (no negation, list or answer reaches across one, and no abbreviation ends in
    one), else at a space: a line that long is no clinical note."""
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit) + 1
        if cut <= limit // 2:
            cut = text.rfind(" ", limit // 2, limit)
        if cut <= 0:
            cut = limit
        yield text[:cut]
        text = text[cut:]
    yield text
