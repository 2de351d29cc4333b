"""Read replicas: their pools, and which one may serve a read now, measured against the primary.

How current a replica is, is measured against the primary's WAL, not the replica's clock. Every
check interval (100-250 ms) a monitor asks the primary for `pg_current_wal_lsn()`, noting the
monotonic time just before asking, and each replica for `pg_last_wal_replay_lsn()`. A replica that
has replayed up to a sample's position holds everything the primary had committed when that sample
was taken (a commit is written before it is acknowledged), so it may serve reads that tolerate
REPLICA_MAX_LAG_MS of staleness until that sample's time plus the lag (`Replica.usable_until`).
This is right in the two cases where replica-side measures mislead:
- an idle primary: nothing new to replay, the positions are equal, the lag is ~0 (replay
  timestamps would say "hours behind": the last transaction replayed is hours old);
- paused (or stuck) replay while the primary writes: the replica's position stops, the samples it
  has reached grow old, and it is skipped once the oldest write it lacks is REPLICA_MAX_LAG_MS old
  (receive == replay comparisons would call it current when the WAL receiver is stuck too).
The write position, not `pg_current_wal_insert_lsn()`: after a segment switch (pg_basebackup
makes one) an idle primary's insert position stays past the new page's header, a place replay
never reports, so an idle replica would look behind forever.
`usable_until` is a deadline, not a verdict, so the bound holds between checks whatever happens: a
monitor that stops hearing from a replica (or from the primary) simply stops extending it. A read
sees at most REPLICA_MAX_LAG_MS of staleness plus the time the read itself takes.

The reads themselves, and the primary taking over when a replica fails under one, are in
db.replica_reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncpg

from db.engine import CONNECTION_ERRORS, FairPool, open_pool
from db.replica_reads import replica_read
from db.urls import as_libpq_url, masked_url

if TYPE_CHECKING:
    from db.engine import Database

log = logging.getLogger(__name__)


# A monitor query that takes longer than this counts as a failure (the replica is then skipped).
CHECK_TIMEOUT_S = 1.0
# How often a replica (or primary) that did not answer is tried again.
RETRY_INTERVAL_S = 1.0

PRIMARY_POSITION = "SELECT pg_current_wal_lsn()"
REPLICA_POSITION = "SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn() AS replayed"
SYSTEM_IDENTIFIER = "SELECT system_identifier FROM pg_control_system()"


def check_interval_s(max_lag_ms: int) -> float:
    """How often the lag is measured: a quarter of the allowed lag, between 100 and 250 ms."""
    return min(max(max_lag_ms / 4000, 0.1), 0.25)


@dataclass(eq=False)
class Replica:
    """One replica: its pool, and until when (monotonic time) reads may use it."""

    url: str
    pool: asyncpg.Pool
    connections: FairPool = field(init=False)  # how reads take the pool's connections
    usable_until: float = 0.0
    # The last measured lag in seconds (None until measured, or while it does not answer), and why
    # it is not used, for the log and the metrics.
    lag_s: float | None = None
    problem: str | None = "not checked yet"

    def __post_init__(self) -> None:
        self.connections = FairPool(self.pool)

    @property
    def name(self) -> str:
        """The URL with any password masked: how logs and metrics name it."""
        return masked_url(self.url)


@dataclass
class WalSamples:
    """The primary's WAL positions, each with the monotonic time just before it was read."""

    keep_s: float
    samples: deque[tuple[float, int]] = field(default_factory=deque)

    def add(self, taken_at: float, position: int) -> None:
        self.samples.append((taken_at, position))
        # An older sample could only prove a replica current until taken_at + max lag, now past.
        while len(self.samples) > 1 and self.samples[0][0] < taken_at - self.keep_s:
            self.samples.popleft()

    def current_as_of(self, replayed: int) -> float | None:
        """The latest time at which the primary had nothing beyond `replayed`; None if not sampled."""
        for taken_at, position in reversed(self.samples):
            if position <= replayed:
                return taken_at
        return None


class ReplicaSet:
    """The replicas, their lag monitor, and the choice of one for each read."""

    def __init__(
        self,
        primary_url: str,
        replicas: Sequence[Replica],
        *,
        max_lag_ms: int,
        acquire_timeout_s: float,
        connect_timeout_s: float,
    ) -> None:
        self.primary_url = primary_url
        self.replicas = list(replicas)
        self.max_lag_s = max_lag_ms / 1000
        self.interval_s = check_interval_s(max_lag_ms)
        self.acquire_timeout_s = acquire_timeout_s
        self.connect_timeout_s = min(connect_timeout_s, CHECK_TIMEOUT_S)
        self.wal = WalSamples(keep_s=self.max_lag_s + self.interval_s)
        self._system_identifier: int | None = None
        self._next = 0
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def open(
        cls,
        primary_url: str,
        urls: Sequence[str],
        *,
        max_lag_ms: int,
        min_size: int,
        max_size: int,
        statement_timeout_ms: int,
        connect_timeout_s: float,
        acquire_timeout_s: float,
    ) -> ReplicaSet:
        """A pool on each replica; one that cannot be reached now gets a pool that connects on use."""

        async def pool_of(url: str, min_size: int) -> asyncpg.Pool:
            return await open_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                statement_timeout_ms=statement_timeout_ms,
                connect_timeout_s=connect_timeout_s,
            )

        replicas: list[Replica] = []
        try:
            for url in urls:
                try:
                    pool = await pool_of(url, min_size)
                except (*CONNECTION_ERRORS, asyncpg.PostgresError) as error:
                    log.warning(
                        "read replica %s does not answer (%s): skipped until it does",
                        masked_url(url),
                        error,
                    )
                    pool = await pool_of(url, 0)  # connects when first used
                replicas.append(Replica(as_libpq_url(url), pool))
        except BaseException:
            await asyncio.gather(*(replica.pool.close() for replica in replicas))
            raise
        return cls(
            primary_url,
            replicas,
            max_lag_ms=max_lag_ms,
            acquire_timeout_s=acquire_timeout_s,
            connect_timeout_s=connect_timeout_s,
        )

    def start(self) -> None:
        """Start measuring: until the first measurement, every read goes to the primary."""
        self._tasks = [asyncio.create_task(self._sample_primary(), name="replica-monitor-primary")]
        self._tasks += [
            asyncio.create_task(self._watch(replica), name=f"replica-monitor-{index}")
            for index, replica in enumerate(self.replicas)
        ]

    async def stop_monitor(self) -> None:
        """Stop measuring: the replicas stay in use only until their deadlines pass."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def close(self) -> None:
        """Stop the monitor and close the replicas' pools."""
        await self.stop_monitor()
        await asyncio.gather(*(replica.pool.close() for replica in self.replicas))

    # --- choosing ---

    def pick(self) -> Replica | None:
        """A replica current enough for a read now (taking turns among them), or None: the primary."""
        now = time.monotonic()
        count = len(self.replicas)
        for offset in range(count):
            index = (self._next + offset) % count
            replica = self.replicas[index]
            if replica.usable_until > now:
                self._next = index + 1
                return replica
        return None

    def in_use(self) -> list[Replica]:
        """The replicas reads may go to now."""
        now = time.monotonic()
        return [replica for replica in self.replicas if replica.usable_until > now]

    async def failed(self, replica: Replica, error: BaseException) -> None:
        """`replica` lost a connection under a read: skipped until the monitor hears from it again."""
        if replica.usable_until:
            log.warning("read replica %s failed a read (%r): reads go elsewhere", replica.name, error)
        replica.usable_until = 0.0
        replica.problem = f"failed a read: {error!r}"
        if not isinstance(error, TimeoutError):
            # Its other pooled connections are likely dead too: replace them rather than fail on each.
            await replica.pool.expire_connections()

    def read(
        self, database: Database, *, explicit_transaction: bool
    ) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """A connection on a current replica (or the primary) for a read; see Database.replica_read."""
        return replica_read(self, database, explicit_transaction=explicit_transaction)

    # --- measuring ---

    async def _sample_primary(self) -> None:
        connection: asyncpg.Connection | None = None
        healthy = True
        while True:
            try:
                if connection is None:
                    connection = await self._connect(self.primary_url)
                    if self._system_identifier is None:
                        self._system_identifier = await _system_identifier(connection)
                taken_at = time.monotonic()
                position = await connection.fetchval(PRIMARY_POSITION, timeout=CHECK_TIMEOUT_S)
                self.wal.add(taken_at, position)
                healthy = True
                await asyncio.sleep(self.interval_s)
            except asyncio.CancelledError:
                await _close(connection)
                raise
            except Exception as error:
                # No new sample: the replicas' deadlines stop moving and lapse within the max lag,
                # so reads go to the primary, as they would without replicas.
                if healthy:
                    log.warning("replica monitor cannot read the primary's WAL position: %r", error)
                healthy = False
                await _close(connection)
                connection = None
                await asyncio.sleep(RETRY_INTERVAL_S)

    async def _watch(self, replica: Replica) -> None:
        connection: asyncpg.Connection | None = None
        same_cluster: bool | None = None  # unknown until both identifiers are
        while True:
            try:
                if connection is None:
                    connection = await self._connect(replica.url)
                    same_cluster = None
                if same_cluster is None:
                    same_cluster = await self._same_cluster(connection)
                if same_cluster is False:
                    self._set_problem(
                        replica, "is a standby of another cluster (its system identifier differs)"
                    )
                    await asyncio.sleep(RETRY_INTERVAL_S)
                    continue
                row = await connection.fetchrow(REPLICA_POSITION, timeout=CHECK_TIMEOUT_S)
                self._measured(replica, row["standby"], row["replayed"])
                await asyncio.sleep(self.interval_s)
            except asyncio.CancelledError:
                await _close(connection)
                raise
            except Exception as error:
                self._set_problem(replica, f"does not answer: {error!r}")
                await _close(connection)
                connection = None
                await asyncio.sleep(RETRY_INTERVAL_S)

    def _measured(self, replica: Replica, standby: bool, replayed: int | None) -> None:
        if not standby or replayed is None:
            self._set_problem(replica, "is not a standby (promoted, or not a replica at all)")
            return
        if not self.wal.samples:
            return  # the primary's position is not known yet (starting, or it does not answer)
        current_as_of = self.wal.current_as_of(replayed)
        now = time.monotonic()
        if current_as_of is None:
            # Behind every position kept. Those go back the whole allowed lag, except just after
            # start-up: then the lag is not known yet, and not worth a warning.
            replica.lag_s = None
            if self.wal.samples[0][0] <= now - self.max_lag_s:
                self._set_problem(replica, f"lags by more than {self.max_lag_s * 1000:.0f} ms")
            else:
                replica.usable_until = 0.0
            return
        replica.lag_s = max(now - current_as_of, 0.0)
        replica.usable_until = current_as_of + self.max_lag_s
        if replica.usable_until > now:
            if replica.problem is not None:
                log.info("read replica %s is in use (lag %.0f ms)", replica.name, replica.lag_s * 1000)
            replica.problem = None
        else:
            self._set_problem(replica, f"lags by more than {self.max_lag_s * 1000:.0f} ms")

    def _set_problem(self, replica: Replica, problem: str) -> None:
        replica.usable_until = 0.0
        if problem != replica.problem:
            log.warning("read replica %s %s: reads go elsewhere", replica.name, problem)
        replica.problem = problem

    async def _connect(self, url: str) -> asyncpg.Connection:
        return await asyncpg.connect(
            as_libpq_url(url),
            timeout=self.connect_timeout_s,
            server_settings={"application_name": "activity-service replica monitor"},
        )

    async def _same_cluster(self, connection: asyncpg.Connection) -> bool | None:
        """Whether the replica replicates our primary (None: the primary's is not known, yet or at all).

        A standby of another cluster has WAL positions that mean nothing against our primary's.
        Without the privilege to read the replica's identifier, it is trusted.
        """
        ours = self._system_identifier
        if ours is None:
            return None
        theirs = await _system_identifier(connection)
        return theirs is None or theirs == ours


async def _system_identifier(connection: asyncpg.Connection) -> int | None:
    try:
        return await connection.fetchval(SYSTEM_IDENTIFIER, timeout=CHECK_TIMEOUT_S)
    except asyncpg.InsufficientPrivilegeError:
        return None  # not ours to know; the check is skipped


async def _close(connection: asyncpg.Connection | None) -> None:
    if connection is not None:
        with suppress(Exception):
            await asyncio.wait_for(connection.close(), CHECK_TIMEOUT_S)
        if not connection.is_closed():
            connection.terminate()
