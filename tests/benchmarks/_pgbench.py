"""The database's own figures: pgbench (shipped with the embedded PostgreSQL) on the service's table.

Each statement is the one the service runs for the same request, minus what only the service needs
(the live-feed NOTIFY, transactions around single statements): values come from pgbench variables,
so with `-M prepared` they are bind parameters, as in asyncpg.
"""

import re
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from db.repository import EVENT_COLUMNS
from tests.benchmarks._database import COMPONENTS, EMAIL_DOMAINS
from tests.benchmarks._processes import percentile


def pgbench_binary() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR warning
        import pgserver
    return Path(pgserver.__file__).resolve().parent / "pginstall" / "bin" / "pgbench"


def _array(values: Sequence[str]) -> str:
    quoted = ", ".join("'" + value.replace("'", "''") + "'" for value in values)
    return f"ARRAY[{quoted}]::text[]"


_COMPONENTS = _array(COMPONENTS)
_DOMAINS = _array(EMAIL_DOMAINS)

# Single-row INSERT returning the stored event, as POST /api/events/ does.
INSERT_ONE = f"""\\set c random(1, {len(COMPONENTS)})
\\set u random(0, 9999)
\\set m random(1, 1000000)
INSERT INTO events (component, environment, email, message, data)
VALUES (({_COMPONENTS})[:c::int], 'production', 'user' || :u::int || '@' || ({_DOMAINS})[1 + :u::int % 3],
        'order failed: pgbench request ' || :m::int,
        ('{{"duration_ms": ' || :m::int % 2000 || ', "status": 200}}')::jsonb)
RETURNING {EVENT_COLUMNS};
"""

# The COPY-equivalent: one multi-row INSERT ... SELECT FROM generate_series(1, 1000) per
# transaction (pgbench cannot COPY FROM STDIN). Rows are built by the server, so no bytes travel:
# the database's best case for 1,000 rows.
INSERT_THOUSAND = f"""\\set c random(1, {len(COMPONENTS)})
\\set u random(0, 9999)
INSERT INTO events (component, environment, email, message, data)
SELECT ({_COMPONENTS})[1 + (:c::int + g) % {len(COMPONENTS)}], 'production',
       'user' || (:u::int + g * 7) % 10000 || '@' || ({_DOMAINS})[1 + (:u::int + g) % 3],
       'order failed: pgbench batch row ' || g, ('{{"duration_ms": ' || g || ', "status": 200}}')::jsonb
FROM generate_series(1, 1000) AS g;
"""


def select_script(pairs: Sequence[tuple[str, str]], *, newest_first_limit: int | None) -> str:
    """The filtered SELECT for a random one of `pairs` (as bind parameters, like the service's).

    Without a limit: `GET /api/events/?component=..&email=..` (every match, oldest first). With
    one: GraphQL `events(filter: {component, email}, first: N)`, newest first, N + 1 rows (the extra
    row tells the service whether there is a next page).
    """
    components = _array([component for component, _ in pairs])
    emails = _array([email for _, email in pairs])
    order = "ORDER BY created_at, id"
    if newest_first_limit is not None:
        order = f"ORDER BY created_at DESC, id DESC LIMIT {newest_first_limit + 1}"
    return (
        f"\\set k random(1, {len(pairs)})\n"
        f"SELECT {EVENT_COLUMNS} FROM events WHERE component = ({components})[:k::int] "
        f"AND email = ({emails})[:k::int] {order};\n"
    )


@dataclass(frozen=True)
class PgbenchResult:
    tps: float
    transactions: int
    failed: int
    p50_ms: float
    p99_ms: float


def run_pgbench(url: str, script: str, connections: int, duration_s: float, workdir: Path) -> PgbenchResult:
    """`pgbench -n -M prepared -c N -j 2 -T s -f script`; percentiles from its per-transaction log."""
    folder = Path(tempfile.mkdtemp(prefix="pgbench-", dir=workdir))
    script_path = folder / "script.sql"
    script_path.write_text(script)
    command = [
        str(pgbench_binary()), "-n", "-M", "prepared", "-c", str(connections),
        "-j", str(min(2, connections)), "-T", str(max(1, round(duration_s))), "-f", str(script_path),
        "-l", f"--log-prefix={folder / 'tx'}", url,
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    tps = re.search(r"^tps = ([\d.]+)", completed.stdout, re.MULTILINE)
    if completed.returncode != 0 or not tps:
        raise RuntimeError(
            f"pgbench failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}"
        )
    processed = re.search(r"number of transactions actually processed: (\d+)", completed.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", completed.stdout)
    latencies_us: list[float] = []
    for log in folder.glob("tx*"):
        with log.open() as lines:
            latencies_us.extend(float(line.split()[2]) for line in lines if line.strip())
    shutil.rmtree(folder, ignore_errors=True)
    return PgbenchResult(
        tps=float(tps.group(1)),
        transactions=int(processed.group(1)) if processed else len(latencies_us),
        failed=int(failed.group(1)) if failed else 0,
        p50_ms=percentile(latencies_us, 0.50) / 1000,
        p99_ms=percentile(latencies_us, 0.99) / 1000,
    )
