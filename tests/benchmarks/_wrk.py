"""Load generation with wrk: Lua scripts written at run time, results read from the script's done()."""

import json
import math
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

WRK_INSTALL = ["apt-get", "install", "-y", "-q", "wrk"]

# Requests are formatted once per thread in init(); request() only picks the next one. response()
# counts answers outside 2xx (wrk itself counts only >= 400); done() prints one JSON line with
# the percentiles of wrk's own latency histogram (the figures --latency prints). For GraphQL, an
# answer carrying "errors" counts as an error too (GraphQL reports failures with status 200).
_LUA_TEMPLATE = """
local methods = {methods}
local paths = {paths}
local bodies = {bodies}
local headers = {{["Content-Type"] = "application/json"}}
local graphql = {graphql}
local formatted = {{}}
local next_index = 0
non2xx = 0
local threads = {{}}
local thread_count = 0

function setup(thread)
  thread:set("offset", thread_count * 7919)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  for k = 1, #paths do
    local body = bodies[k]
    if body == "" then body = nil end
    formatted[k] = wrk.format(methods[k], paths[k], body and headers or nil, body)
  end
  next_index = offset % #formatted
end

function request()
  next_index = next_index + 1
  if next_index > #formatted then next_index = 1 end
  return formatted[next_index]
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif graphql and body and string.find(body, '"errors"', 1, true) then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + (thread:get("non2xx") or 0) end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {{"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "non2xx": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, bad, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class Request:
    """One HTTP request wrk sends (it cycles through a list of them)."""

    method: str
    path: str
    body: str = ""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    socket_errors: int  # connect, read, write and timeout errors
    non2xx: int  # answers outside 2xx, and GraphQL answers with errors
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def good_per_s(self) -> float:
        """Answers that were 2xx, per second."""
        return max(0, self.requests - self.non2xx) / self.duration_s if self.duration_s else 0.0

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non2xx


def ensure_wrk() -> str:
    """The wrk binary; installed from Debian's packages (as root) when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("wrk is not installed: run `apt-get install -y wrk` (as root) and try again")
    print(f"wrk is missing: installing it with `{' '.join(WRK_INSTALL)}`", flush=True)
    if subprocess.run(WRK_INSTALL, stdout=subprocess.DEVNULL, check=False).returncode != 0:
        print("  that failed: running `apt-get update` first", flush=True)
        subprocess.run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL, check=True)
        subprocess.run(WRK_INSTALL, stdout=subprocess.DEVNULL, check=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is still missing after apt-get install")
    return found


def _lua_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def _lua_list(values: Sequence[str]) -> str:
    return "{" + ",\n".join(_lua_string(value) for value in values) + "}"


def write_script(path: Path, requests: Sequence[Request], *, graphql: bool = False) -> Path:
    """A wrk Lua script cycling through `requests` (each thread starting at its own offset)."""
    path.write_text(
        _LUA_TEMPLATE.format(
            graphql="true" if graphql else "false",
            methods=_lua_list([r.method for r in requests]),
            paths=_lua_list([r.path for r in requests]),
            bodies=_lua_list([r.body for r in requests]),
        )
    )
    return path


def run_wrk(
    wrk: str, base_url: str, script: Path, connections: int, duration_s: float, timeout_s: float = 10
) -> WrkResult:
    """Drive `base_url` with `connections` keep-alive connections for `duration_s` seconds."""
    threads = max(1, min(2, connections))
    command = [
        wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
        f"--timeout={round(timeout_s)}s", "--latency", "-s", str(script), base_url,
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in completed.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            raw = json.loads(line.removeprefix("WRK_RESULT "))
            if raw["requests"] == 0:  # nothing completed in time: no latency to speak of
                raw.update(p50_us=math.inf, p90_us=math.inf, p99_us=math.inf, max_us=math.inf)
            return WrkResult(
                requests=raw["requests"],
                duration_s=raw["duration_us"] / 1e6,
                socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
                non2xx=raw["non2xx"],
                p50_ms=raw["p50_us"] / 1000,
                p90_ms=raw["p90_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000,
                max_ms=raw["max_us"] / 1000,
            )
    raise RuntimeError(
        f"wrk gave no result (exit {completed.returncode}):\n{completed.stdout}\n{completed.stderr}"
    )
