"""Driving schemathesis from ordinary pytest tests, and what a fuzz run did, for its summary."""

import os
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis import Case, CheckContext, Response
from schemathesis.specs.openapi.checks import positive_data_acceptance

AcceptanceCheck = Callable[[CheckContext, Response, Case], bool | None]

# Examples per operation and mode; bounded for CI, raise it for a longer local run.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
# In CI the same examples every run: a submission's CI must not turn red by the luck of the draw.
# Everywhere else each run explores new inputs (and what it finds becomes a regression test).
DERANDOMIZE = os.environ.get("CI", "").lower() == "true"
REQUEST_TIMEOUT_S = 30


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


def run_fuzz(
    strategy: SearchStrategy[Case],
    *,
    base_url: str,
    tally: FuzzTally,
    key: str,
    outcome: Callable[[Response], str],
    acceptance_check: AcceptanceCheck,
    request: pytest.FixtureRequest,
) -> None:
    """Send `strategy`'s cases to the live server and check every answer.

    schemathesis' own positive_data_acceptance is replaced by `acceptance_check`, the caller's
    narrowing of it to the rules its schema can state. A strategy with nothing to generate (no
    invalid form of an operation without inputs) is skipped, saying so.
    """

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        derandomize=DERANDOMIZE,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Case) -> None:
        tally.requests += 1
        try:
            response = case.call(base_url=base_url, timeout=REQUEST_TIMEOUT_S)
            tally.outcomes[key][outcome(response)] += 1
            case.validate_response(
                response,
                excluded_checks=[positive_data_acceptance],
                additional_checks=[acceptance_check],
                transport_kwargs={"base_url": base_url, "timeout": REQUEST_TIMEOUT_S},
            )
        except BaseException:
            tally.failing += 1
            raise

    try:
        fuzz()
    except Unsatisfiable:
        pytest.skip(f"{key}: nothing in it can be made invalid, so there is no such case to send")
    except BaseException:
        tally.failed_tests.append(request.node.name)
        raise
