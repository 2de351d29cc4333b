"""The `from_date` query parameter: the original's MM-DD-YYYY, plus ISO 8601 dates and datetimes."""

import re
from datetime import UTC, date, datetime, time

from db.filters import utc_if_naive

_LEGACY_DATE = re.compile(r"(\d{1,2})-(\d{1,2})-(\d{4})")

INVALID_FROM_DATE = "Unable to retrieve events - Invalid date specified."


class InvalidFromDate(ValueError):
    """from_date is in none of the accepted formats (or names a day that does not exist)."""


def parse_from_date(text: str) -> datetime:
    """The instant from which events are wanted; a bare date means that day's 00:00 UTC."""
    # No trimming: the original (strptime) refused a date with spaces around it, and so do we.
    if "\x00" in text:
        # CPython's fromisoformat accepts "2021-04-16T10:00:00\0" and "...\0Z" as if the NUL were not there.
        raise InvalidFromDate(INVALID_FROM_DATE)
    try:
        legacy = _LEGACY_DATE.fullmatch(text)
        if legacy:
            month, day, year = (int(part) for part in legacy.groups())
            return datetime.combine(date(year, month, day), time(), UTC)
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidFromDate(INVALID_FROM_DATE) from None
    return utc_if_naive(moment)  # like the legacy dates
