"""Database URL spellings: what asyncpg wants and what SQLAlchemy wants."""


def as_libpq_url(url: str) -> str:
    """`postgresql+asyncpg://` and `postgres://` to the `postgresql://` form asyncpg accepts."""
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def as_sqlalchemy_url(url: str) -> str:
    """Name the asyncpg driver explicitly: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg."""
    return "postgresql+asyncpg://" + as_libpq_url(url)[len("postgresql://") :]


def masked_url(url: str) -> str:
    """The URL with any password replaced by ***, for messages and logs."""
    scheme, separator, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{separator}{user}:***@{location}"
