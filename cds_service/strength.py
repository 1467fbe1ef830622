"""ProductStrengths: how much of an ingredient a product's name says it holds, against a floor.

RxNorm writes a multivitamin as its ingredient list ("… / cyanocobalamin 0.006 MG / …"), so a
name can mention B12 without being B12 replacement. A concept with `textMinimumStrength` in
cards/concepts.json is not read from a product name whose every stated strength of it is below
that floor, nor, with `textMaximumStrength`, above that ceiling (hydroxocobalamin 5 g is the cyanide
antidote, no B12 replacement); a name that states none is read as before.
"""

import math
import re
from dataclasses import dataclass, field

from cds_service.lab_text import number

# mass units as product names write them, in milligrams (SI facts, not clinical knowledge)
_MG_PER_UNIT = {"g": 1000.0, "gm": 1000.0, "gram": 1000.0, "grams": 1000.0, "mg": 1.0, "milligram": 1.0, "milligrams": 1.0,
                "mcg": 0.001, "ug": 0.001, "µg": 0.001, "μg": 0.001, "microgram": 0.001, "micrograms": 0.001}
_AMOUNT = r"(?P<amount>\d+(?:[.,]\d+)?)\s*(?P<unit>" + "|".join(sorted(map(re.escape, _MG_PER_UNIT), key=len, reverse=True)) + r")(?![a-zµμ])"


def _milligrams(amount: str, unit: str) -> float:
    """An amount as a label writes it (1,000 mcg; 0,5 mg), read as lab values are, in mg."""
    value = number(amount)
    return (math.nan if value is None else value) * _MG_PER_UNIT[unit]  # nan: outside no range, stated as none


@dataclass(frozen=True)
class StrengthFloor:
    """One concept's floor (and ceiling): its names (the concept's text terms) each followed by an amount."""

    pattern: re.Pattern[str]
    minimum_mg: float
    maximum_mg: float = math.inf

    @classmethod
    def build(cls, terms: list[str], minimum_mg: float, maximum_mg: float = math.inf) -> "StrengthFloor":
        names = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
        # a bracket between name and strength, as Epic writes 'vitamin B-12 (CYANOCOBALAMIN) 25 mcg tablet'
        bracket = r"(?:\s*\([^()]{1,40}\))?"
        return cls(re.compile(rf"(?<![\w-])(?P<name>{names}){bracket}\s+{_AMOUNT}", re.IGNORECASE), minimum_mg, maximum_mg)

    def outside(self, names: list[str]) -> bool:
        """Every strength the names state is under the floor or over the ceiling (and at least one is stated)."""
        amounts = [_milligrams(m["amount"], m["unit"].lower()) for name in names for m in self.pattern.finditer(name)]
        return bool(amounts) and all(a < self.minimum_mg or a > self.maximum_mg for a in amounts)

    def stated(self, names: list[str]) -> dict[str, float]:
        """The strength each name the product is called by states, in mg ('atorvastatin 40 MG' ->
        {'atorvastatin': 40.0}); the highest where one is stated twice."""
        out: dict[str, float] = {}
        for name in names:
            for m in self.pattern.finditer(name):
                term = m["name"].lower()
                out[term] = max(out.get(term, 0.0), _milligrams(m["amount"], m["unit"].lower()))
        return out


@dataclass(frozen=True)
class ProductStrengths:
    floors: dict[str, StrengthFloor]
    # the names of the medicines whose dose raise is read (a confounder's recentDoseRaise)
    doses: dict[str, StrengthFloor] = field(default_factory=dict)

    def out_of_range(self, concepts: set[str], names: list[str]) -> set[str]:
        """Those of `concepts` the product's names state only below their floor or over their ceiling."""
        return {c for c in concepts if (floor := self.floors.get(c)) is not None and floor.outside(names)}
