"""Documents named by hash: automatic persisted queries (APQ) and an allow-list of trusted documents.

A client names a document by its SHA-256 (lowercase hex) in `extensions.persistedQuery`, as Apollo's
clients send it: `{"version": 1, "sha256Hash": "<hex>"}`. What the server does with the name is the
gate's to decide (graphql_schema.gate); this module holds the two places a name can be looked up:

- `PersistedQueryStore`: the documents clients registered (APQ), kept per process, least recently
  used dropped first once their text passes a byte budget (GRAPHQL_APQ_CACHE_BYTES).
- `TrustedDocuments`: a manifest read at start-up (GRAPHQL_TRUSTED_DOCUMENTS), every hash checked
  against its document. When it is set, only those documents run.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

APOLLO_MANIFEST_FORMAT = "apollo-persisted-query-manifest"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def sha256_hex(document: str) -> str:
    """The name of `document`: the SHA-256 of its UTF-8 text, in lowercase hex (as Apollo's clients hash)."""
    return hashlib.sha256(document.encode()).hexdigest()


class PersistedQueryStore:
    """Registered documents by hash, the least recently used dropped first beyond `max_bytes` of text.

    One per process (each worker registers its own): a client whose hash this process does not
    know gets PersistedQueryNotFound and sends the document again, as the protocol expects.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._documents: OrderedDict[str, str] = OrderedDict()

    def get(self, sha256: str) -> str | None:
        """The document registered under `sha256` (now the most recently used), or None."""
        document = self._documents.get(sha256)
        if document is not None:
            self._documents.move_to_end(sha256)
        return document

    def remember(self, sha256: str, document: str) -> None:
        """Register `document` under its hash (the caller has checked they match)."""
        size = len(document.encode())
        if size > self.max_bytes or sha256 in self._documents:
            return  # one document larger than the whole budget would only empty the store
        self._documents[sha256] = document
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, dropped = self._documents.popitem(last=False)
            self.bytes -= len(dropped.encode())

    def __len__(self) -> int:
        return len(self._documents)


class ManifestError(ValueError):
    """The trusted documents manifest cannot be used; the message says which file and why."""


class TrustedDocuments:
    """The only documents this server runs, by hash and by text (each checked against the other)."""

    def __init__(self, documents: dict[str, str]) -> None:
        self._by_hash = documents
        self._by_text = {document: sha256 for sha256, document in documents.items()}

    @classmethod
    def load(cls, path: Path) -> TrustedDocuments:
        """The documents of the manifest at `path`; `ManifestError` if it cannot be trusted."""
        return cls(read_manifest(path))

    def get(self, sha256: str) -> str | None:
        """The trusted document named `sha256`, or None."""
        return self._by_hash.get(sha256)

    def trusts(self, document: str) -> bool:
        """Whether `document`, sent as text, is one of them (no hashing: a lookup by its text)."""
        return document in self._by_text

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self._by_hash

    def __iter__(self) -> Iterator[str]:
        """Each trusted document's text."""
        return iter(self._by_hash.values())

    def __len__(self) -> int:
        return len(self._by_hash)


def read_manifest(path: Path) -> dict[str, str]:
    """{sha256: document} from either manifest format, every hash checked against its document.

    Two formats are read: a flat object `{"<sha256>": "<document>"}` (GraphQL Code Generator's
    client preset, `persisted-documents.json`) and Apollo's persisted query manifest
    (`{"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{"id", "body",
    ...}]}`). Raises `ManifestError` for an unreadable file, another shape, an empty list or a hash
    that is not the SHA-256 of its document.
    """
    try:
        manifest = json.loads(path.read_bytes())
    except OSError as error:
        raise ManifestError(f"cannot read {path}: {error.strerror or error}") from None
    except ValueError as error:  # not UTF-8, or not JSON
        raise ManifestError(f"{path} is not a JSON file ({error})") from None
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path} must hold a JSON object, not {type(manifest).__name__}")
    entries = _apollo_entries(path, manifest) if "format" in manifest else _flat_entries(path, manifest)
    if not entries:
        raise ManifestError(f"{path} lists no documents: nothing could run")
    documents: dict[str, str] = {}
    for where, sha256, document in entries:
        if not _SHA256_HEX.fullmatch(sha256):
            raise ManifestError(
                f"{path}: {where}: {sha256!r} is not a SHA-256 in lowercase hex (64 digits); GraphQL "
                "Code Generator hashes with SHA-1 unless given persistedDocuments.hashAlgorithm 'sha256'"
            )
        actual = sha256_hex(document)
        if actual != sha256:
            raise ManifestError(
                f"{path}: {where}: {sha256} is not the SHA-256 of its document (that is {actual})"
            )
        documents[sha256] = document
    return documents


def _flat_entries(path: Path, manifest: dict[str, object]) -> list[tuple[str, str, str]]:
    entries = []
    for sha256, document in manifest.items():
        if not isinstance(document, str):
            raise ManifestError(f"{path}: the document under {sha256!r} must be a string")
        entries.append((f"entry {sha256[:12]}", sha256, document))
    return entries


def _apollo_entries(path: Path, manifest: dict[str, object]) -> list[tuple[str, str, str]]:
    if manifest.get("format") != APOLLO_MANIFEST_FORMAT or manifest.get("version") != 1:
        raise ManifestError(
            f"{path}: unknown manifest format {manifest.get('format')!r} version "
            f"{manifest.get('version')!r} (expected {APOLLO_MANIFEST_FORMAT!r} version 1, or a flat "
            '{"<sha256>": "<document>"} object)'
        )
    operations = manifest.get("operations")
    if not isinstance(operations, list):
        raise ManifestError(f"{path}: `operations` must be a list")
    entries = []
    for index, operation in enumerate(operations):
        if not (
            isinstance(operation, dict)
            and isinstance(operation.get("id"), str)
            and isinstance(operation.get("body"), str)
        ):
            raise ManifestError(f"{path}: operations[{index}] needs a string `id` and a string `body`")
        name = operation.get("name")
        where = f"operations[{index}]" + (f" ({name})" if isinstance(name, str) and name else "")
        entries.append((where, operation["id"], operation["body"]))
    return entries
