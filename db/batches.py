"""What a valid batch is, for both doors: its size limit, and each item checked as one event plus key.

REST's `POST /api/events/batch` reports every problem; GraphQL's `recordEvents` the first. Both find
them here, in the same order: items in input order, and within an item the event before its key.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from db.idempotency import InvalidIdempotencyKey, KeyedEvent
from db.validation import InvalidEvent, NewEvent, PayloadShapeError

Item = TypeVar("Item")

# The name a problem with an item's idempotency key is reported under (a door may rename it).
IDEMPOTENCY_KEY_FIELD = "idempotency_key"


class BatchTooLarge(ValueError):
    """More events than one request may carry."""


def check_batch_size(count: int, limit: int) -> None:
    if count > limit:
        raise BatchTooLarge(f"A batch may hold at most {limit} events; this one holds {count}.")


@dataclass(frozen=True, slots=True)
class ItemProblem:
    """One reason an item is refused; `field` None means the item as a whole."""

    index: int
    field: str | None
    reason: str


def check_items(
    items: Sequence[Item],
    event_of: Callable[[Item], NewEvent],
    key_of: Callable[[Item], str | None],
) -> tuple[list[KeyedEvent], list[ItemProblem]]:
    """The items as events with their keys, or every problem found (then the events are partial)."""
    events: list[KeyedEvent] = []
    problems: list[ItemProblem] = []
    for index, item in enumerate(items):
        found = len(problems)
        event = key = None
        try:
            event = event_of(item)
        except PayloadShapeError as error:
            problems.extend(ItemProblem(index, field or None, text) for field, text in error.errors.items())
        except InvalidEvent as error:
            problems.append(ItemProblem(index, error.field, error.reason))
        try:
            key = key_of(item)
        except InvalidIdempotencyKey as error:
            problems.append(ItemProblem(index, IDEMPOTENCY_KEY_FIELD, str(error)))
        if len(problems) == found and event is not None:
            events.append(KeyedEvent(event, key))
    return events, problems
