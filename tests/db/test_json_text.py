"""Response JSON (db.json_text.json_bytes): a datetime reads the same whichever encoder writes it.

Compiled plans hand UTC moments to the encoder as they are (graphql_schema.plans); the ordinary
executor hands over `isoformat()` strings. The two answers are the same bytes only if both
encoders write a datetime as its `isoformat()`.
"""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from db.json_text import isoformat_bytes, json_bytes

MOMENTS = [
    datetime(2026, 11, 30, 8, 0, tzinfo=UTC),  # no fraction: isoformat leaves it out
    datetime(2026, 11, 30, 8, 0, 1, 4, tzinfo=UTC),  # a fraction with leading zeros
    datetime(2026, 11, 30, 8, 0, 1, 400000, tzinfo=UTC),  # with trailing ones
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(2026, 3, 29, 1, 30, tzinfo=timezone(-timedelta(hours=9, minutes=45))),
]


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_a_datetime_is_written_as_its_isoformat(moment: datetime) -> None:
    assert json_bytes({"at": moment}) == json_bytes({"at": moment.isoformat()})


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_a_datetime_beside_a_number_beyond_64_bits_is_written_as_its_isoformat(moment: datetime) -> None:
    # orjson refuses 2**70, so the whole document goes to the standard library's encoder.
    document = {"at": moment, "n": 2**70}
    assert json_bytes(document) == json_bytes({"at": moment.isoformat(), "n": 2**70})
    assert b"1180591620717411303424" in json_bytes(document)


def test_anything_else_json_cannot_hold_is_still_refused() -> None:
    with pytest.raises(TypeError):
        json_bytes({"n": 2**70, "x": object()})


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_isoformat_bytes_is_the_isoformat(moment: datetime) -> None:
    assert isoformat_bytes(moment) == moment.isoformat().encode()
