"""Third-party JavaScript tools (conformance suites, reference clients, compilers) for the tests.

They come from the npm registry at test time, into a temporary folder per run: nothing of theirs
is committed. Where Node.js or npm is missing the test skips, saying so loudly (CI has both).
"""

import atexit
import json
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

# One folder per set of packages for the whole run: installing is the slow part.
_installed: dict[tuple[tuple[str, str], ...], Path] = {}


def node_or_skip() -> str:
    """The `node` executable; skips the test (loudly) when Node.js or npm is not installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("NPM TOOL TEST SKIPPED: Node.js and npm are needed (apt-get install -y nodejs npm)")
    return node


def npm_install(packages: Mapping[str, str]) -> Path:
    """A folder whose node_modules holds `packages` ({name: version range}); made once per run."""
    node_or_skip()
    wanted = tuple(sorted(packages.items()))
    if wanted in _installed:
        return _installed[wanted]
    folder = Path(tempfile.mkdtemp(prefix="activity-npm-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # removed when the test run ends
    (folder / "package.json").write_text(
        json.dumps({"name": "activity-service-test-tools", "private": True, "dependencies": dict(wanted)})
    )
    completed = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if completed.returncode != 0:
        pytest.fail(f"npm install {dict(wanted)} failed:\n{completed.stdout}\n{completed.stderr}")
    _installed[wanted] = folder
    return folder


def run_node(folder: Path, script: str, args: Sequence[str] = (), timeout_s: float = 120) -> str:
    """Run `script` (ES module source) with Node.js inside `folder`; its stdout, or the test fails."""
    node = node_or_skip()
    path = folder / f"script-{abs(hash(script))}.mjs"
    path.write_text(script)
    completed = subprocess.run(
        [node, str(path), *args], cwd=folder, capture_output=True, text=True, timeout=timeout_s
    )
    if completed.returncode != 0:
        output = f"{completed.stdout}\n{completed.stderr}"
        pytest.fail(f"node {path.name} exited {completed.returncode}:\n{output}")
    return completed.stdout
