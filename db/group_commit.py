"""Group commit: concurrent single-event writes share one INSERT and one COMMIT.

Each caller of `GroupCommitter.record` gets its own stored event back, and only once the
transaction holding it has committed. One background task per process writes the queued events:

- While a batch is being written, new events queue up and go together in the next one ("commit
  when the previous commit finishes"); a batch holds at most `max_rows` events.
- A lone request is written at once. Only when other requests are waiting too (or the previous
  batch held several: the load is concurrent) does the writer hold a batch open for up to
  `max_wait_s` after its first event arrived, to gather more. This is PostgreSQL's own
  commit_delay/commit_siblings rule: delay a commit only when others are likely to join it. The
  window closes early once as many events are waiting as the previous batch held, when that batch
  held several and committed: the callers it answered are the companions to expect.
- A row the database refuses (a constraint, say) fails only its own caller: the batch is split in
  halves and each written on its own, recursively, so its neighbours still commit.
- A lost connection, an unreachable server or a statement timeout answers every caller of that
  batch with DatabaseUnavailable: whether it committed is unknown, so nobody is told it did.
- `stop()` writes whatever is queued at once (no more waiting) before the pool may close.

With `max_rows` 1 or `max_wait_s` 0 there is no batching at all: each caller writes its own
event in its own transaction, as before this module existed.
"""

import asyncio
import copy
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg

from db.engine import Database, DatabaseUnavailable
from db.repository import insert_event, insert_events
from db.validation import NewEvent

log = logging.getLogger(__name__)

# SQLSTATE classes a single row's values can cause (22 data exception, 23 integrity constraint,
# 54 program limit, P0 raised by a trigger): worth splitting the batch to find the row. Anything
# else (permissions, disk full, read-only server) would fail every half alike.
_ROW_ERROR_CLASSES = ("22", "23", "54", "P0")


@dataclass(slots=True)
class GroupCommitStats:
    """What the writer has done since it started (for tests and operators)."""

    statements: int = 0  # INSERT statements sent, split retries included
    batches_committed: int = 0
    events_committed: int = 0


@dataclass(slots=True)
class _Waiting:
    event: NewEvent
    answer: asyncio.Future[asyncpg.Record]
    arrived_at: float  # loop time


@dataclass(slots=True)
class _Queue:
    items: deque[_Waiting] = field(default_factory=deque)
    not_empty: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when a batch is full or the writer is stopping: whoever holds a window open stops waiting.
    flush_now: asyncio.Event = field(default_factory=asyncio.Event)


class GroupCommitter:
    """The process's writer of single events. `start()` before use, `stop()` before the pool closes."""

    def __init__(self, database: Database, *, max_rows: int, max_wait_s: float) -> None:
        if max_rows < 1 or max_wait_s < 0:
            raise ValueError("max_rows must be at least 1 and max_wait_s not negative")
        self._database = database
        self._max_rows = max_rows
        self._max_wait_s = max_wait_s
        self.coalescing = max_rows > 1 and max_wait_s > 0
        self.stats = GroupCommitStats()
        # Told (events, seconds its oldest event waited) for each batch written: api.metrics.
        self.on_batch: Callable[[int, float], None] | None = None
        self._queue = _Queue()
        self._previous_batch_rows = 0
        # How many queued events end a held window early: as many as the previous batch held, when
        # it held several (its callers are the likely companions: each sends its next event once
        # answered). Waiting out max_wait for companions that had all arrived already cost 16
        # clients writing in a loop a quarter of their throughput (2026-11-30). The size follows
        # the load up at once (whatever queued during a write goes in the next batch, with no
        # wait) and down after one full wait. Before any batch, after a lone one or a failed one:
        # max_rows.
        self._enough_rows = max_rows
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the background writer (nothing to start when coalescing is off)."""
        if self.coalescing and self._task is None:
            self._task = asyncio.create_task(self._write_forever(), name="group-commit")

    async def stop(self) -> None:
        """Write everything queued now, wait for it to commit, then refuse new events."""
        self._stopping = True
        self._queue.flush_now.set()
        self._queue.not_empty.set()
        if self._task is not None:
            await self._task
        # Only reachable if the writer task died: nobody may wait forever.
        self._fail(list(self._queue.items), DatabaseUnavailable("the event writer has stopped"))
        self._queue.items.clear()

    async def record(self, event: NewEvent) -> asyncpg.Record:
        """Store one event (announcing it on the live feed); return it as stored, once committed."""
        if self._stopping:
            raise DatabaseUnavailable("the server is shutting down")
        if not self.coalescing:
            self.stats.statements += 1
            async with self._database.single_statement() as connection:
                record = await insert_event(connection, event)
            self._committed(1)
            return record
        if self._task is None:
            raise RuntimeError("GroupCommitter.start() was not called")
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[asyncpg.Record] = loop.create_future()
        queue = self._queue
        queue.items.append(_Waiting(event, answer, loop.time()))
        queue.not_empty.set()
        if len(queue.items) >= self._enough_rows:
            queue.flush_now.set()
        # A cancelled caller cancels `answer`: still queued, its event is dropped; already being
        # written, it commits anyway (the client just never hears of it).
        return await answer

    # --- the writer task ---

    async def _write_forever(self) -> None:
        queue = self._queue
        while True:
            if not queue.items:
                if self._stopping:
                    return
                queue.not_empty.clear()
                await queue.not_empty.wait()
                continue
            batch: list[_Waiting] = []
            try:
                await self._hold_window_open()
                batch = self._take_batch()
                if batch:
                    self._previous_batch_rows = len(batch)
                    waited_s = asyncio.get_running_loop().time() - batch[0].arrived_at
                    failure = await self._write(batch)
                    # A lone event says nothing of who else is coming, and callers told the database
                    # is unavailable may not come back soon: after either, only max_rows ends a window.
                    several = len(batch) > 1 and failure is None
                    self._enough_rows = len(batch) if several else self._max_rows
                    if self.on_batch is not None:
                        self.on_batch(len(batch), waited_s)
            except Exception as error:
                # A bug must neither stop the writer nor leave these callers waiting forever.
                log.exception("group commit: unexpected error writing %d events", len(batch))
                self._fail(batch, error)

    async def _hold_window_open(self) -> None:
        """Wait (bounded) for more events when others are likely to come; return at once otherwise."""
        queue = self._queue
        concurrent = len(queue.items) > 1 or self._previous_batch_rows > 1
        if self._stopping or not concurrent or len(queue.items) >= self._enough_rows:
            return
        # The window counts from the oldest waiting event: time spent queued behind the previous
        # batch is part of it, so no event waits more than max_wait plus one write.
        remaining = queue.items[0].arrived_at + self._max_wait_s - asyncio.get_running_loop().time()
        if remaining <= 0:
            return
        queue.flush_now.clear()
        if len(queue.items) >= self._enough_rows or self._stopping:
            return
        try:
            async with asyncio.timeout(remaining):
                await queue.flush_now.wait()
        except TimeoutError:
            pass

    def _take_batch(self) -> list[_Waiting]:
        items = self._queue.items
        batch: list[_Waiting] = []
        while items and len(batch) < self._max_rows:
            waiting = items.popleft()
            if not waiting.answer.done():  # skip callers that gave up before their turn
                batch.append(waiting)
        return batch

    async def _write(self, batch: Sequence[_Waiting]) -> DatabaseUnavailable | None:
        """Insert and commit `batch`, answering each caller; split it to isolate refused rows.

        Returns the DatabaseUnavailable that failed it, if one did, so a split stops trying.
        """
        self.stats.statements += 1
        try:
            # One statement, committing on its own: the event clock's lock is held for no round trip.
            async with self._database.single_statement() as connection:
                if len(batch) == 1:
                    records = [await insert_event(connection, batch[0].event)]
                else:
                    records = await insert_events(connection, [waiting.event for waiting in batch])
        except DatabaseUnavailable as error:
            self._fail(batch, error)
            return error
        except asyncpg.PostgresError as error:
            if len(batch) == 1 or not _may_be_one_rows_fault(error):
                self._fail(batch, error)
                return None
            # Halves keep the arrival order; a single bad row costs about 2·log2(rows) statements.
            middle = len(batch) // 2
            unavailable = await self._write(batch[:middle])
            if unavailable is not None:
                self._fail(batch[middle:], unavailable)
                return unavailable
            return await self._write(batch[middle:])
        self._committed(len(batch))
        for waiting, record in zip(batch, records, strict=True):
            if not waiting.answer.done():
                waiting.answer.set_result(record)
        return None

    def _committed(self, rows: int) -> None:
        self.stats.batches_committed += 1
        self.stats.events_committed += rows

    @staticmethod
    def _fail(batch: Sequence[_Waiting], error: Exception) -> None:
        for waiting in batch:
            if not waiting.answer.done():
                waiting.answer.set_exception(_own_copy(error))


def _own_copy(error: Exception) -> Exception:
    """The error for one caller: each raises (and logs) its own instance, the original as cause.

    One instance re-raised by hundreds of callers at once would have its traceback rewritten
    under each of them.
    """
    try:
        duplicate = copy.copy(error)
    except Exception:
        return error
    duplicate.__cause__ = error
    return duplicate


def _may_be_one_rows_fault(error: asyncpg.PostgresError) -> bool:
    sqlstate = getattr(error, "sqlstate", None) or ""
    return sqlstate[:2] in _ROW_ERROR_CLASSES
