"""The GraphQL-over-HTTP conformance audit of the `graphql-http` package (npm), run against a live server.

The audit is the spec authors' own suite: each of its checks (MUST, SHOULD and MAY) reports `ok`,
`notice`, `warn` or `error`. We accept neither an error (a MUST broken) nor a warning (a SHOULD).
"""

import json
from collections import Counter
from typing import Any

import pytest

from tests.npm_packages import npm_install, run_node

pytestmark = pytest.mark.slow

# The current major; graphql is its peer dependency.
AUDIT_PACKAGES = {"graphql-http": "^1.23.1", "graphql": "^16"}

# Prints one JSON array: every audit's id, name and status, with the reason and the response
# (status, headers, body) of each that did not pass.
AUDIT_SCRIPT = """
import { auditServer } from 'graphql-http';

const results = await auditServer({ url: process.argv[2] });
const report = [];
for (const result of results) {
  const entry = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    const response = result.response;
    entry.reason = result.reason;
    entry.response = {
      status: response.status,
      headers: Object.fromEntries(response.headers),
      body: await response.text().catch((error) => `<unreadable: ${error}>`),
    };
  }
  report.push(entry);
}
process.stdout.write(JSON.stringify(report));
"""


def audit(graphql_url: str) -> list[dict[str, Any]]:
    """The audit's results for the server at `graphql_url`."""
    folder = npm_install(AUDIT_PACKAGES)
    return json.loads(run_node(folder, AUDIT_SCRIPT, [graphql_url]))


def test_graphql_http_audit_reports_no_errors_and_no_warnings(live_server: str) -> None:
    results = audit(f"{live_server}/graphql")
    counts = Counter(result["status"] for result in results)
    print(f"graphql-http audit: {len(results)} audits, {dict(counts)}")
    assert counts["ok"] > 0, results  # the audit ran against a server that answers
    failing = [result for result in results if result["status"] in ("error", "warn")]
    assert failing == [], "graphql-http audit failures:\n" + "\n".join(
        f"{result['status']} {result['id']} {result['name']}: {result['reason']}\n"
        f"    -> {json.dumps(result['response'])}"
        for result in failing
    )
