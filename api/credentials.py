"""Where a request carries its API key: HTTP headers, read the same way by both doors.

(GraphQL websockets carry the same header names in their `connection_init` payload.)
"""

from collections.abc import Mapping


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key a request presents: `Authorization: Bearer <key>` or `X-API-Key: <key>`.

    An Authorization header that holds no Bearer key (`Basic ...`, a bare `Bearer`) is passed on
    as it is, unless X-API-Key carries a key: the caller then hears the credentials are not a valid
    key, rather than that none was sent.
    """
    authorization = headers.get("authorization", "").strip()
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return headers.get("x-api-key") or authorization or None
