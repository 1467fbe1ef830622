"""The regular expressions the text matcher is built from: terms and their joiners, cue phrases,
a bare negative answer after a question, and a relative named beside a mention."""

import re


def bare_answer_pattern(negative_answers: list[str]) -> re.Pattern[str] | None:
    """A negative answer (a word or a phrase of the list: "no", "denies any", "0/10") standing alone
    between a question's mark (a colon, question mark or dash) and a comma, semicolon, full stop or
    the end: "Fever - no, myalgia - yes", "Pins and needles—none". Read as the
    minus sign after an item, it answers the item before it and is no cue over the items after it,
    as "no" opening a list would be. With no mark ("fever no, myalgia yes") it is left as it is:
    "Myalgias are absent" and "Celiac disease: tTG negative" hold such a word after no question."""
    words = [a for a in negative_answers if re.fullmatch(r"[a-z0-9/]+(?: [a-z0-9/]+)*", a.lower().strip())]
    if not words:
        return None
    answers = _alternation(words, space=r"[ \t]+")
    return re.compile(rf"(?P<mark>(?<=[a-z0-9])[ \t]*(?:[:?–—]|--?)[ \t]*)\b(?:{answers})\b(?=[ \t]*(?:[,;.\n]|$))")


def bracket_answer_pattern(negative_answers: list[str]) -> re.Pattern[str] | None:
    """A negative answer written whole in brackets right after a word ("Tingling (denies)", "Myalgia
    (no)", "Fatigue (pt denies)"): read as the minus sign after an item, "(-)", it answers that item
    only. "(denies fever)" is no such answer: it is about something else."""
    if not any(a.strip() for a in negative_answers):
        return None
    answers = _alternation(negative_answers, space=r"[ \t]+")
    return re.compile(rf"(?<=[a-z0-9])[ \t]*\([ \t]*(?:{answers})[ \t]*\)")


def relative_patterns(relatives: list[str], qualifiers: list[str]) -> tuple[re.Pattern[str], re.Pattern[str]] | None:
    """Patterns for a relative named right after a mention ("Coeliac disease (mother)", "Pernicious
    anaemia in her sister", "B12 deficiency - father", "Pernicious anaemia, mother") and right before one, at the start of its
    line or item ("Mother: pernicious anaemia", "FH: sister coeliac disease"). After a mention the
    relative must close its phrase: "Dementia (daughter concerned)" names an informant, not the patient."""
    if not relatives:
        return None

    spaced = r"[ \t]+"  # a space in a relative's name matches any run of spaces
    kinds, people = _alternation(qualifiers, space=spaced), _alternation(relatives, space=spaced)
    qualified = rf"(?:(?:{kinds})[ \t]+){{0,3}}" if qualifiers else ""
    named = rf"{qualified}(?:{people})(?:'s)?(?![a-z0-9'-])"
    after = re.compile(
        rf"(?:[ \t]*[(\[][ \t]*(?:in[ \t]+)?|[ \t]*[:,\-–—][ \t]*|[ \t]+in[ \t]+){named}"
        rf"(?=[ \t]*(?:$|[)\],;.:/&+\n(]|and(?![a-z0-9])|aged?(?![a-z0-9])|\d))")
    # "Mother: pernicious anaemia", and the relative as the subject with a history too long for a
    # cue's window of words ("Father has a 10 yr hx of Crohn's", "Brother diagnosed with coeliac disease")
    history = (r"(?:(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|many|several|long)[ \t-]*"
               r"(?:years?|yrs?|months?|mos?)[ \t-]+(?:history[ \t]+of|hx[ \t]+of|hx|h/o)[ \t]+)")
    verbs = r"(?:(?:has|had|have|with|was|is|also|recently|been|diagnosed|dx|a|an|longstanding|long-standing)[ \t]+)"
    relatives_named = rf"{named}(?:[ \t]+(?:and|&)[ \t]+{named})*"  # "Mother and sister have ..."
    before = re.compile(rf"(?:^|(?<=[\n;,.(\[:]))[ \t]*{relatives_named}(?:[ \t]*[:\-–—(][ \t]*|[ \t]+{verbs}*{history}?)$")
    return after, before


def word_sequence_pattern(phrases: tuple[tuple[str, ...], ...]) -> re.Pattern[str]:
    """Occurrences of any of the phrases, given as words, with anything but a word between them (as
    words_of reads them), in lowered text; matched where a word starts."""
    between = r"[^a-z0-9'/-]+"
    alternatives = "|".join(between.join(map(re.escape, p)) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?:{alternatives})(?![a-z0-9'/-])")


def _alternation(phrases: list[str], space: str = r"\ ") -> str:
    """The phrases as regex alternatives, longest first (so a longer phrase wins where both match),
    each space written as `space`."""
    spelled = sorted({p.lower().strip() for p in phrases if p.strip()}, key=len, reverse=True)
    return "|".join(re.escape(p).replace(r"\ ", space) for p in spelled)


def query_mark_pattern(answers: list[str]) -> re.Pattern[str]:
    """A question mark written against a word queries it, as "query" does ("?coeliac", "Tiredness
    ?anaemia"); against an answer ("Muscle pain ?no", "Fatigue ?yes") it still asks the question the
    answer answers, so `answers` (text-matching.json's negative and positive answers) are left alone."""
    spared = rf"(?!(?:{_alternation(answers)})(?![a-z0-9'/-]))" if any(a.strip() for a in answers) else ""
    return re.compile(rf"(?<![a-z0-9])\?(?=[a-z]){spared}")


def phrase_pattern(phrases: list[str]) -> re.Pattern[str]:
    """Whole-word occurrences of any of the phrases, in lowered text."""
    return re.compile(rf"(?<![a-z0-9])(?:{_alternation(phrases)})(?![a-z0-9])")


# The punctuation that joins two names in one test's name, as catalogues write a combined test:
# 'B12/FOLATE', 'B12 / Folate', 'B12 & folate', 'B12+FOLATE', 'B12, folate', 'FOLATE,B12'. A joiner
# written in a term or in an exclusion phrase that holds one stands for any of them, spaced or not,
# so one term ('b12 & folate') reads every spelling and one exclusion ('b12/folate workup') cancels
# every spelling of that phrase. Only terms and those phrases are read so: the words around a
# mention keep their own reading ('h/o', 'w/o' and '/7' are cues; commas and slashes part the
# items of a negated list: 'denies fever, myalgia'), and a term without a joiner needs none: a
# space in a term is no joiner ('muscle pain' is not read in 'calf muscle, pain on walking').
_JOINER = re.compile(r"[ \t]*[/+&,][ \t]*")


def joined(phrase: str) -> str:
    """The one spelling of a term or a mention of it: each joiner written '/', with no spaces."""
    return _JOINER.sub("/", phrase)


def term_pattern(phrases: list[str]) -> re.Pattern[str]:
    """Whole-word occurrences of any of the terms (or phrases holding one) in lowered text, each
    joiner in them matching any joiner, spaced or not."""
    canonical = sorted({joined(p.lower().strip()) for p in phrases}, key=len, reverse=True)
    alternatives = "|".join(_JOINER.pattern.join(map(re.escape, p.split("/"))) for p in canonical)
    return re.compile(rf"(?<![a-z0-9])(?:{alternatives})(?![a-z0-9])")
