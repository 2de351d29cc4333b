"""The REST query parameters of an event filter, derived from db.filters' definition.

Each filter field with a REST name becomes one query parameter, typed, documented and parsed by the
form of its value (`REST_FORMS`). An empty parameter filters nothing, as in the original service
(`?email=` is not "email = ''").

Two projections: `EventFilterQuery`, the legacy list's (only the fields with a REST name), and
`ExportFilterQuery`, the export's (every field: its REST name where it has one, else its GraphQL
name), both in the same forms.
"""

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from starlette.datastructures import QueryParams

from db.filters import FILTER_FIELDS, EventFilter, FilterField, InvalidFilter, check_filter
from db.json_text import decode_json
from rest.from_date import parse_from_date
from rest.openapi_schemas import LEGACY_DATE_PATTERN, NO_NUL_PATTERN


@dataclass(frozen=True, slots=True)
class _Form:
    """How one kind of filter value travels in a query string."""

    annotation: Any
    parse: Callable[[str, Any], Any]  # (field name, raw value) -> the filter's value
    schema: dict[str, Any]
    note: str = ""  # added to the field's description


def _json_object(name: str, text: str) -> Any:
    try:
        return decode_json(text)
    except ValueError:
        raise InvalidFilter(name, "Must be a JSON object.") from None


REST_FORMS: dict[type, _Form] = {
    str: _Form(str | None, lambda name, raw: raw, {"pattern": NO_NUL_PATTERN}),
    tuple: _Form(
        list[str] | None,
        lambda name, raw: tuple(raw),
        {"items": {"type": "string", "pattern": NO_NUL_PATTERN}},
        " Repeat the parameter for each value.",
    ),
    datetime: _Form(
        str | None,
        lambda name, raw: parse_from_date(raw),
        {
            "anyOf": [
                {"type": "string", "pattern": LEGACY_DATE_PATTERN, "example": "04-16-2021"},
                {"type": "string", "format": "date"},
                {"type": "string", "format": "date-time"},
                {"type": "string", "maxLength": 0, "description": "Empty: no filter"},
            ]
        },
        " MM-DD-YYYY or ISO 8601 date or datetime (no offset: UTC).",
    ),
    dict: _Form(str | None, _json_object, {"contentMediaType": "application/json"}, " As JSON text."),
}

REST_FILTER_FIELDS: tuple[FilterField, ...] = tuple(spec for spec in FILTER_FIELDS if spec.rest is not None)


def export_parameter_name(spec: FilterField) -> str:
    """The export's query parameter for `spec`: the legacy REST name, else the GraphQL one."""
    return spec.rest or spec.graphql or spec.name


def _parameter(spec: FilterField, name: str) -> inspect.Parameter:
    form = REST_FORMS[spec.condition.value_type]
    query = Query(alias=name, description=spec.description + form.note, json_schema_extra=form.schema)
    # The Python name is the field's (a query name may be a keyword, like GraphQL's `from`).
    return inspect.Parameter(
        spec.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[form.annotation, query]
    )


def _checked_filter(fields: tuple[FilterField, ...], raw: dict[str, Any]) -> EventFilter:
    """The checked filter the query string asks for (InvalidFilter / InvalidFromDate: a 400)."""
    values: dict[str, Any] = {}
    for spec in fields:
        value = raw[spec.name]
        if value:
            values[spec.name] = REST_FORMS[spec.condition.value_type].parse(spec.name, value)
    event_filter = EventFilter(**values)
    check_filter(event_filter)
    return event_filter


async def event_filter_from_query(**raw: Any) -> EventFilter:
    """The legacy list's filter: the fields with a REST name."""
    return _checked_filter(REST_FILTER_FIELDS, raw)


def event_filter_from_query_params(params: QueryParams) -> EventFilter:
    """`event_filter_from_query` read straight from a query string, as FastAPI would read it: a
    list-valued parameter's every value, any other's last one."""
    return _checked_filter(
        REST_FILTER_FIELDS,
        {
            spec.name: params.getlist(spec.rest)
            if spec.condition.value_type is tuple
            else params.get(spec.rest)
            for spec in REST_FILTER_FIELDS
        },
    )


def refuse_repeated(params: QueryParams, repeatable: frozenset[str]) -> None:
    """A new route's rule for its query string: a parameter not in `repeatable` (the list-valued
    ones) given twice is refused (InvalidFilter, a 400), not read as its last value, which would
    leave the others unchecked. The legacy list keeps reading the last: its contract says so."""
    for name in params:
        count = len(params.getlist(name))
        if count > 1 and name not in repeatable:
            raise InvalidFilter(name, f"Give `{name}` once, not {count} times.")


# The list-valued filters' parameters, by the export's names and by the legacy list's.
_EXPORT_REPEATABLE = frozenset(
    export_parameter_name(spec) for spec in FILTER_FIELDS if spec.condition.value_type is tuple
)
REST_REPEATABLE = frozenset(
    spec.rest for spec in REST_FILTER_FIELDS if spec.rest is not None and spec.condition.value_type is tuple
)


async def export_filter_from_query(request: Request, **raw: Any) -> EventFilter:
    """The export's filter: every field of the definition."""
    refuse_repeated(request.query_params, _EXPORT_REPEATABLE)
    return _checked_filter(FILTER_FIELDS, raw)


event_filter_from_query.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [_parameter(spec, spec.rest) for spec in REST_FILTER_FIELDS if spec.rest is not None]
)
export_filter_from_query.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
        *(_parameter(spec, export_parameter_name(spec)) for spec in FILTER_FIELDS),
    ]
)

EventFilterQuery = Annotated[EventFilter, Depends(event_filter_from_query)]
ExportFilterQuery = Annotated[EventFilter, Depends(export_filter_from_query)]
