"""What a fuzz run did, for its summary: requests sent, failing answers, outcomes per operation."""

import os
from collections import Counter, defaultdict
from typing import Any

import pytest

# Examples per operation and mode; bounded for CI, raise it for a longer local run.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
# In CI the same examples every run: a submission's CI must not turn red by the luck of the draw.
# Everywhere else each run explores new inputs (and what it finds becomes a regression test).
DERANDOMIZE = os.environ.get("CI", "").lower() == "true"


class FuzzTally:
    """Requests sent and failing answers, reported once at the end of the pytest session."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests = 0
        self.failing = 0  # answers that broke a check (Hypothesis replays a failure while shrinking)
        self.failed_tests: list[str] = []
        self.outcomes: dict[str, Counter[str]] = defaultdict(Counter)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.requests:
            return
        terminalreporter.write_sep("-", f"{self.name} fuzz")
        terminalreporter.write_line(
            f"{self.name} fuzz: {self.requests} requests, {self.failing} failing answers, "
            f"{len(self.failed_tests)} failed operation/mode pairs ({EXAMPLES} examples each)"
        )
        for test, outcomes in self.outcomes.items():
            answers = ", ".join(f"{outcome} x{count}" for outcome, count in sorted(outcomes.items()))
            terminalreporter.write_line(f"  {test}: {answers}")
        for test in self.failed_tests:
            terminalreporter.write_line(f"  failed: {test}")


def registered_tally(request: pytest.FixtureRequest, name: str) -> FuzzTally:
    """A tally whose summary pytest prints at the end of the session."""
    tally = FuzzTally(name)
    request.config.pluginmanager.register(tally, f"{name.lower()}-fuzz-tally")
    return tally
