#!/usr/bin/env python3
"""Set-up and the two everyday commands, needing nothing but Python 3.11+.

    python3 dev.py serve [activity-service serve options]   # the API on http://127.0.0.1:5000
    python3 dev.py test  [pytest options]                    # the whole test suite

Each creates ./.venv on first use, installs the project into it (again only when pyproject.toml
changes) and fetches the GraphiQL assets; then it runs the command inside that environment.
"""

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def ensure_environment(extras: str) -> None:
    """Create the virtualenv and install the project (with `extras`) unless already up to date."""
    if sys.version_info < (3, 11):  # noqa: UP036 (dev.py may be run by an older python3)
        sys.exit(f"activity-service needs Python 3.11 or newer (this is {sys.version.split()[0]})")
    if not PYTHON.exists():
        print("dev.py: creating .venv", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    fingerprint = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / f".installed-{extras or 'base'}"
    if not stamp.exists() or stamp.read_text() != fingerprint:
        print(f"dev.py: installing activity-service[{extras}] into .venv", file=sys.stderr)
        pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
        target = f".[{extras}]" if extras else "."
        subprocess.run([*pip, "install", "-e", target], check=True, cwd=ROOT)
        stamp.write_text(fingerprint)
    assets = ROOT / "graphql_schema" / "graphiql_assets.py"
    if assets.exists():
        # Best effort: without the files GraphiQL falls back to a CDN and says so in the log.
        subprocess.run([str(PYTHON), "-m", "graphql_schema.graphiql_assets", "fetch"], cwd=ROOT)


def main() -> None:
    command, *rest = sys.argv[1:] or ["help"]
    if command == "serve":
        ensure_environment("")
        os.execv(str(BIN / "activity-service"), [str(BIN / "activity-service"), "serve", *rest])
    elif command == "test":
        ensure_environment("test")
        os.chdir(ROOT)
        os.execv(str(PYTHON), [str(PYTHON), "-m", "pytest", *rest])
    else:
        print(__doc__)
        sys.exit(0 if command == "help" else 2)


if __name__ == "__main__":
    main()
