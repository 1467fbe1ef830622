"""The fixed contract other tools call the service by (DESIGN.md): its service ids and their hooks,
and the names of the cards it can return (wording in cards/wording.json is keyed by them)."""

from typing import Literal, get_args

SERVICE_HOOKS: dict[str, str] = {
    "b12-myalgia-patient-view": "patient-view",
    "b12-myalgia-order-select": "order-select",
    "b12-myalgia-order-sign": "order-sign",
}
HOOK_SERVICES: dict[str, str] = {hook: sid for sid, hook in SERVICE_HOOKS.items()}

# the cards of the pattern rule (patient-view, and order-select when the pattern fires)
PatternVariant = Literal[
    "test-b12", "test-active-b12", "test-mma", "test-mma-after-nitrous-oxide", "test-mma-after-normal-b12",
    "untreated-low", "untreated-mma", "untreated-raised-mma", "untreated-raised-mma-after-nitrous-oxide",
    "lapsed-treatment", "diagnosed-deficiency",
]
# the cards of the ordering rules; "pattern" shows the pattern rule's card
OrderCard = Literal[
    "pattern", "measure-before-treat", "measure-active-before-treat", "duplicate-result", "duplicate-order",
    "duplicate-in-draft",
]
CARD_VARIANTS: tuple[str, ...] = get_args(PatternVariant) + tuple(c for c in get_args(OrderCard) if c != "pattern")
