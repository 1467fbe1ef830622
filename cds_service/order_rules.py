"""The rule at the point of ordering (order-select, order-sign): pure, like assessment.py."""

import copy
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from typing import Literal

from cds_service.assessment import Assessment, assess, deficiency_on_record, out_of_population
from cds_service.contract import OrderCard
from cds_service.courses import on_b12_therapy, open_orders, tests_in_progress, treated_since
from cds_service.draft_orders import DraftOrders
from cds_service.facts import ORDERED_NOW, Fact, PatientFacts
from cds_service.follow_up import follow_up_answered
from cds_service.knowledge import Knowledge
from cds_service.lab_results import b12_band, deciding_b12
from cds_service.pregnancy import low_in_current_pregnancy, orders_active_b12
from cds_service.protocol import Indicator
from cds_service.windows import within


@dataclass(frozen=True)
class OrderAssessment:
    outcome: str
    card: OrderCard | None = None
    indicator: Indicator | None = None
    pattern: Assessment | None = None
    ordered: tuple[Fact, ...] = ()
    earlier: tuple[Fact, ...] = ()
    # what the earlier result calls for instead of a repeat: treatment (low, untreated), MMA
    # (indeterminate), or active B12 (a low total B12 taken in the current pregnancy)
    next_step: Literal["treat", "mma", "active-b12"] | None = None
    # the checks made without data (PatientFacts.unchecked): the card says so rather than "none on file"
    unchecked: frozenset[str] = frozenset()
    # a test offered for removal is a panel that also measures folate or ferritin
    combined_panel: bool = False

    @property
    def fires(self) -> bool:
        return self.card is not None

    @property
    def variant(self) -> str | None:
        """The card definition shown (the patient-view variant when the pattern card fires)."""
        if self.card == "pattern" and self.pattern is not None:
            return self.pattern.variant
        return self.card

    @property
    def criteria(self) -> list[str]:
        out = [f"outcome:{self.outcome}"] + [f"ordered:{f.concept}" for f in self.ordered]
        # the pattern's own outcome is this one's: listed once, as each criterion is (two analgesics, one entry)
        out += [c for c in (self.pattern.criteria if self.pattern else []) if not c.startswith("outcome:")]
        return list(dict.fromkeys(out))


def _with_drafts(facts: PatientFacts, drafted: list[Fact]) -> PatientFacts:
    """The patient's facts plus what the drafts add: the complaints named as an order's reason, and
    B12 replacement ordered in the same order (replacement under way: a low result is being treated)."""
    if not drafted:
        return facts
    merged = copy.copy(facts)
    merged.by_concept = {k: list(v) for k, v in facts.by_concept.items()}
    for fact in drafted:
        merged.by_concept.setdefault(fact.concept, []).append(fact)
    return merged


def order_select_cannot_fire(selected: DraftOrders, all_drafts: DraftOrders, k: Knowledge) -> str | None:
    """Why the drafts alone rule out an order-select card (the patient's record cannot change it), or None."""
    orders = k.rule.orders
    if all_drafts.of(orders.b12_test_concepts):
        return "draft-has-b12-test"
    if not selected.ordered(orders.b12_product_concepts) and not selected.ordered(orders.muscle_order_concepts):
        return "unrelated-order"
    return None


def order_sign_cannot_fire(drafts: DraftOrders, k: Knowledge) -> str | None:
    """Why the drafts alone rule out an order-sign card, or None."""
    return None if drafts.of(k.rule.orders.duplicate_test_concepts) else "no-b12-test"


def assess_order_select(
    facts: PatientFacts, selected: DraftOrders, all_drafts: DraftOrders, k: Knowledge, today: date
) -> OrderAssessment:
    rule = k.rule
    ruled_out = order_select_cannot_fire(selected, all_drafts, k)
    if ruled_out:
        return OrderAssessment(ruled_out)
    products = selected.ordered(rule.orders.b12_product_concepts)
    if products:
        if out_of_population(facts, k, today):  # as the pattern card: NG239 covers over-16s, and the living
            return OrderAssessment("out-of-population", ordered=tuple(products))
        if on_b12_therapy(facts, k, today):
            return OrderAssessment("already-on-b12-therapy", ordered=tuple(products))
        if deficiency_on_record(facts, k) is not None:
            return OrderAssessment("deficiency-on-record", ordered=tuple(products))
        suspected = rule.record_status.condition_verification_suspected
        if any(f.verification not in suspected for c in rule.orders.lifelong_replacement_concepts
               for f in (*facts.of(c), *facts.ended.get(c, []))):
            return OrderAssessment("lifelong-replacement-indicated", ordered=tuple(products))
        results = rule.b12_result.result_concepts + rule.b12_result.recent_result_concepts
        if any(within(f, rule.orders.level_on_file_days, today) for c in results for f in facts.of(c)):
            return OrderAssessment("b12-level-on-file", ordered=tuple(products))
        if open_orders(facts, rule.suppressors.pending_order_concepts, k, today) or tests_in_progress(
            facts, rule.b12_result.recent_result_concepts, k, today
        ):
            return OrderAssessment("b12-test-pending", ordered=tuple(products))
        card: OrderCard = "measure-active-before-treat" if orders_active_b12(facts, k, today) else "measure-before-treat"
        # an older level is no current value, but the clinician should see it (a low one never treated above all)
        last = deciding_b12([f for c in results for f in facts.of(c) if f.resource_type == "Observation"],
                            rule.b12_result.same_day_precedence, rule.b12_result.bands)
        return OrderAssessment("card", card, Indicator.WARNING, ordered=tuple(products), earlier=(last,) if last else (),
                               unchecked=facts.unchecked)
    muscle = selected.ordered(rule.orders.muscle_order_concepts)
    # B12 in the drafts, selected or not (ordered now, an injection ordered as a procedure, or taken at
    # home and documented), is replacement under way, read as the first therapy concept; a lab a
    # confounder asks for (a CK beside a statin) drafted now is that advice taken
    checks = [cf.checked_by.lab for cf in rule.confounders if cf.checked_by is not None]
    therapy = rule.suppressors.therapy_concepts
    drafted = [*selected.reasons,
               *(f if f.concept in therapy else replace(f, concept=therapy[0]) for f in all_drafts.of(rule.orders.b12_product_concepts)),
               *(replace(f, status=ORDERED_NOW) for f in all_drafts.of(checks))]
    pattern = assess(_with_drafts(facts, drafted), k, today)
    if not pattern.fires:
        return OrderAssessment(f"pattern:{pattern.outcome}", ordered=tuple(muscle), pattern=pattern)
    return OrderAssessment("card", "pattern", pattern.indicator, pattern, ordered=tuple(muscle))


def assess_order_sign(facts: PatientFacts, drafts: DraftOrders, k: Knowledge, today: date) -> OrderAssessment:
    rule = k.rule
    ruled_out = order_sign_cannot_fire(drafts, k)
    if ruled_out:
        return OrderAssessment(ruled_out)
    combined = {f.reference for f in drafts.of(rule.orders.combined_test_concepts)}
    # the one kept when two stand in one order: in a pregnancy the active B12 (total B12 falls in it,
    # NG239), then a panel that also measures folate or ferritin
    active = {f.reference for f in drafts.of(rule.orders.active_b12_test_concepts)} if orders_active_b12(facts, k, today) else set()
    tests = tuple(sorted(_distinct(drafts.of(rule.orders.duplicate_test_concepts)),
                         key=lambda f: (f.reference not in active, f.reference not in combined)))
    window = rule.suppressors.recent_result_days
    recent = sorted(
        (f for c in rule.b12_result.recent_result_concepts for f in facts.of(c) if within(f, window, today)),
        key=lambda f: f.when or date.min, reverse=True,
    )
    reliable = [f for f in recent if not low_in_current_pregnancy(f, facts, k, today)]
    if drafts.of(rule.orders.active_b12_test_concepts):  # the test a low total B12 in pregnancy calls for
        recent = reliable
    # a test ordered for a later day (occurrence) is drawn then: a result 30 days old is 120 days old by
    # a draw in 90 days, no duplicate (found in the order review); what that result calls for instead
    # (treatment, MMA, an active B12) is said all the same
    drawn = max(today, min((f.starts or today for f in tests), default=today))
    if recent:
        deciding = deciding_b12(reliable or recent, rule.b12_result.same_day_precedence, rule.b12_result.bands) or recent[0]
        next_step = _instead_of_a_repeat(deciding, facts, drafts, k, today)
        if next_step is not None or any(within(f, window, drawn) for f in recent):
            return OrderAssessment("card", "duplicate-result", Indicator.WARNING, ordered=tests, earlier=tuple(recent),
                                   next_step=next_step, combined_panel=any(f.reference in combined for f in tests),
                                   unchecked=facts.unchecked)
    signed = [f for f in open_orders(facts, rule.orders.duplicate_test_concepts, k, today)
              if f.status not in rule.orders.unsigned_status]
    pending = _distinct(
        f for f in (*signed, *tests_in_progress(facts, rule.b12_result.recent_result_concepts, k, today))
        if f.reference not in drafts.references
    )
    if pending:
        return OrderAssessment("card", "duplicate-order", Indicator.WARNING, ordered=tests, earlier=pending,
                               combined_panel=any(f.reference in combined for f in tests))
    if len(tests) > 1:  # the same order holds two B12 level tests: keep the first, offer to drop the rest
        return OrderAssessment("card", "duplicate-in-draft", Indicator.WARNING, ordered=tests[1:], earlier=tests[:1],
                               combined_panel=any(f.reference in combined for f in tests[1:]))
    return OrderAssessment("not-a-duplicate", ordered=tests)


def _instead_of_a_repeat(
    latest: Fact, facts: PatientFacts, drafts: DraftOrders, k: Knowledge, today: date
) -> Literal["treat", "mma", "active-b12"] | None:
    """What NG239 and BSH advise after the latest result, when it is not a repeat: a low result
    with no replacement since (nor under way, nor in this order) calls for treatment, unless it is a total B12 taken in
    the current pregnancy (then active B12); an indeterminate one, for methylmalonic acid, unless
    one is already taken since, pending, registered or in this order."""
    if low_in_current_pregnancy(latest, facts, k, today):
        pending = open_orders(facts, k.rule.orders.active_b12_test_concepts, k, today)
        return None if pending or on_b12_therapy(facts, k, today) else "active-b12"
    band = b12_band(latest, k.rule.b12_result.bands[latest.concept])
    if band == "deficient":
        treated = on_b12_therapy(facts, k, today) or (latest.when is not None and treated_since(facts, k, latest.when, today)) \
            or bool(drafts.of(k.rule.orders.b12_product_concepts))  # replacement in this very order
        return None if treated else "treat"
    if band != "indeterminate" or follow_up_answered(facts, k, latest, today):
        return None
    follow_up = k.rule.orders.follow_up_order_concepts
    lab = k.rule.follow_up_sign.lab
    if drafts.of(follow_up) or open_orders(facts, follow_up, k, today) or tests_in_progress(facts, [lab], k, today):
        return None
    return "mma"


def _distinct(facts: Iterable[Fact]) -> tuple[Fact, ...]:
    """One fact per order (an order can match several codes); unreferenced ones are kept."""
    seen: set[str] = set()
    out = []
    for f in facts:
        if f.reference:
            if f.reference in seen:
                continue
            seen.add(f.reference)
        out.append(f)
    return tuple(out)
