"""GraphiQL's browser files, fetched from the npm registry at set-up and verified, never committed.

    python -m graphql_schema.graphiql_assets fetch    # idempotent; dev.py runs it after installing
    python -m graphql_schema.graphiql_assets verify   # exit 1 unless every file is present and verified

The pins are exactly the files (versions and `integrity` hashes) that Strawberry's own GraphiQL page loads
from a CDN; serving byte-identical local copies lets the page keep its `integrity` attributes and work with
no internet. Without them the page falls back to Strawberry's CDN page (see graphql_schema/graphiql.py).
The download needs Python alone (no Node, no npm): the registry's tarballs over HTTPS, from the registry
npm itself would use (`npm_config_registry`, ~/.npmrc), so a Docker build or a Python-only machine gets
them too.
"""

import base64
import functools
import hashlib
import json
import logging
import os
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.parse import quote
from urllib.request import urlopen

logger = logging.getLogger(__name__)

VENDOR_DIR = Path(__file__).resolve().parent / "static" / "vendor"
FETCH_COMMAND = "python -m graphql_schema.graphiql_assets fetch"
DEFAULT_REGISTRY = "https://registry.npmjs.org/"
# Fails fast when offline (dev.py runs the fetch whenever files are missing) yet leaves a slow link
# time for the 3.6 MB graphiql tarball.
DOWNLOAD_TIMEOUT_S = 30


@dataclass(frozen=True)
class Asset:
    """One pinned file: `path` inside the npm package `package@version`, and its SRI sha384 (base64)."""

    package: str
    version: str
    path: str
    sha384: str

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def relative_path(self) -> str:
        """Where it lives under the vendor folder (and under the static URL): `package@version/path`."""
        return f"{self.spec}/{self.path}"

    @property
    def integrity(self) -> str:
        return f"sha384-{self.sha384}"


# From strawberry-graphql 0.341.2's static/graphiql.html (GraphiQL 3.8.3; graphiql 5 and React 19 ship no
# browser-ready bundle). tests/graphql_schema/test_graphiql_assets.py fails when Strawberry's page changes.
PINNED: tuple[Asset, ...] = (
    Asset("react", "18.2.0", "umd/react.production.min.js",
          "tMH8h3BGESGckSAVGZ82T9n90ztNXxvdwvdM6UoR56cYcf+0iGXBliJ29D+wZ/x8"),
    Asset("react-dom", "18.2.0", "umd/react-dom.production.min.js",
          "bm7MnzvK++ykSwVJ2tynSE5TRdN+xL418osEVF2DE/L/gfWHj91J2Sphe582B1Bh"),
    Asset("js-cookie", "3.0.5", "dist/js.cookie.min.js",
          "/vxhYfM1LENRhdpZ8dwEsQn/X4VhpbEZSiU4m/FwR+PVpzar4fkEOw8FP9Y+OfQN"),
    Asset("graphiql", "3.8.3", "graphiql.min.css",
          "Mq3vbRBY71jfjQAt/DcjxUIYY33ksal4cgdRt9U/hNPvHBCaT2JfJ/PTRiPKf0aM"),
    Asset("@graphiql/plugin-explorer", "1.0.2", "dist/style.css",
          "5DFJlDPW2tSATRbM8kzoP1j194jexLswuNmClWoRr2Q0x7R68JIQzPHZ02Faktwi"),
    Asset("graphiql", "3.8.3", "graphiql.min.js",
          "HbRVEFG0JGJZeAHCJ9Xm2+tpknBQ7QZmNlO/DgZtkZ0aJSypT96YYGRNod99l9Ie"),
    Asset("@graphiql/plugin-explorer", "1.0.2", "dist/index.umd.js",
          "2oonKe47vfHIZnmB6ZZ10vl7T0Y+qrHQF2cmNTaFDuPshpKqpUMGMc9jgj9MLDZ9"),
)  # fmt: skip


def sha384_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha384(data).digest()).decode("ascii")


def asset_problem(asset: Asset, vendor_dir: Path = VENDOR_DIR) -> str | None:
    """Why `asset` cannot be served from `vendor_dir` ("missing", "sha384 mismatch"), or None if it can."""
    try:
        data = (vendor_dir / asset.relative_path).read_bytes()
    except FileNotFoundError:
        return "missing"
    if sha384_base64(data) != asset.sha384:
        return "sha384 mismatch"
    return None


def asset_problems(vendor_dir: Path = VENDOR_DIR, assets: Iterable[Asset] = PINNED) -> dict[str, str]:
    """Each pinned file that is missing or altered, mapped to what is wrong with it; empty when all verify."""
    problems = {asset.relative_path: asset_problem(asset, vendor_dir) for asset in assets}
    return {path: problem for path, problem in problems.items() if problem}


@functools.cache
def local_assets_available() -> bool:
    """True when every pinned file is in the vendor folder and matches its hash (checked once per process)."""
    return not asset_problems()


class FetchError(Exception):
    """The npm registry cannot be reached, or its packages lack the pinned files."""


class IntegrityError(FetchError):
    """The registry delivered a file whose hash differs from the pin: nothing was installed for it."""


def fetch_assets(vendor_dir: Path = VENDOR_DIR, assets: Iterable[Asset] = PINNED) -> None:
    """Put every pinned file into `vendor_dir`, verified; skip those already there. Raises FetchError."""
    assets = tuple(assets)
    wanted = [asset for asset in assets if asset_problem(asset, vendor_dir)]
    if not wanted:
        logger.info("all %d files present and sha384-verified in %s", len(assets), vendor_dir)
        return
    packages = sorted({(asset.package, asset.version) for asset in wanted})
    with tempfile.TemporaryDirectory(prefix="graphiql-assets-") as download_dir:
        tarballs = _download_tarballs(packages, Path(download_dir))
        for asset in wanted:
            data = _read_from_tarball(tarballs[(asset.package, asset.version)], asset.path)
            actual = sha384_base64(data)
            if actual != asset.sha384:
                raise IntegrityError(
                    f"{asset.relative_path} from npm hashes to {actual}, pinned {asset.sha384}; not installed"
                )
            _write_atomically(vendor_dir / asset.relative_path, data)
            logger.info("wrote %s (%s bytes, sha384 verified)", asset.relative_path, f"{len(data):,}")
    local_assets_available.cache_clear()


def registry_url() -> str:
    """The npm registry to download from, found as npm itself would find it.

    `npm_config_registry` in the environment (how npm passes its settings on, and how CI mirrors
    are usually set), else a `registry=` line in ~/.npmrc, else the public registry.
    """
    for name in ("npm_config_registry", "NPM_CONFIG_REGISTRY"):
        if os.environ.get(name):
            return os.environ[name].rstrip("/") + "/"
    npmrc = Path.home() / ".npmrc"
    if npmrc.is_file():
        for line in npmrc.read_text(errors="replace").splitlines():
            name, _, value = line.partition("=")
            if name.strip() == "registry" and value.strip():
                return value.strip().rstrip("/") + "/"
    return DEFAULT_REGISTRY


def _download_tarballs(packages: list[tuple[str, str]], destination: Path) -> dict[tuple[str, str], Path]:
    """Each package's tarball from the npm registry over HTTPS, with Python alone (no npm needed).

    The registry's own `dist.integrity` (sha512) is checked for the whole tarball; the pinned
    sha384 of each file is checked after, by the caller.
    """
    registry = registry_url()
    tarballs: dict[tuple[str, str], Path] = {}
    for package, version in packages:
        # A scoped name travels with its slash escaped: @graphiql%2fplugin-explorer.
        metadata = json.loads(_get(f"{registry}{quote(package, safe='@')}/{version}"))
        dist = metadata.get("dist") or {}
        data = _get(dist["tarball"])
        algorithm, _, expected = str(dist.get("integrity", "")).partition("-")
        if algorithm in ("sha512", "sha384", "sha256"):
            actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
            if actual != expected:
                raise IntegrityError(
                    f"{package}@{version}'s tarball does not match the registry's {algorithm}"
                )
        target = destination / f"{package.replace('/', '-')}-{version}.tgz"
        target.write_bytes(data)
        tarballs[(package, version)] = target
    return tarballs


def _get(url: str) -> bytes:
    logger.info("GET %s", url)
    try:
        with urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            return response.read()
    except (URLError, TimeoutError, OSError) as error:
        raise FetchError(f"cannot download {url} (offline?): {error}") from error


def _read_from_tarball(tarball: Path, path: str) -> bytes:
    """The bytes of `path` in an npm tarball, whose entries sit under one top folder (usually `package/`)."""
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.partition("/")[2] == path:
                extracted = archive.extractfile(member)
                if extracted is not None:
                    return extracted.read()
    raise FetchError(f"{tarball.name} has no {path}")


def _write_atomically(target: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so concurrent fetches never expose a partial file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as output:
            output.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    """The command line: `fetch` (exit 0 even when offline: the page falls back) or `verify`."""
    logging.basicConfig(level=logging.INFO, format="graphiql-assets: %(message)s", stream=sys.stderr)
    command = (argv if argv is not None else sys.argv[1:]) or ["help"]
    if command == ["fetch"]:
        try:
            fetch_assets()
        except IntegrityError as error:
            logger.error("ERROR: %s. /graphql will load its files from a CDN.", error)
            return 1
        except FetchError as error:
            logger.warning(
                "WARNING: could not fetch the GraphiQL files: %s. /graphql will load them from a CDN "
                "(needs internet) until `%s` succeeds.",
                error,
                FETCH_COMMAND,
            )
        return 0
    if command == ["verify"]:
        problems = asset_problems()
        for asset in PINNED:
            logger.info("%s: %s", asset.relative_path, problems.get(asset.relative_path, "ok"))
        if problems:
            logger.warning(
                "WARNING: %d of %d files unverified; run `%s`", len(problems), len(PINNED), FETCH_COMMAND
            )
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 0 if command == ["help"] else 2


if __name__ == "__main__":
    sys.exit(main())
