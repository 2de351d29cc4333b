"""The `X-Fields` response mask of the original (flask-restplus) API: `id,created_at`, `events{id}`."""

import re

# A parsed mask: field name -> nested mask, or None for "the whole value".
FieldsMask = dict[str, "FieldsMask | None"]

# flask-restplus's lexer: characters outside it are ignored, as they were by the original.
_TOKEN = re.compile(r"\{|\}|,|[\w:\-*]+")
ALL_FIELDS = "*"


class MaskParseError(ValueError):
    """The X-Fields header is not a valid mask."""


def parse_fields_mask(header: str) -> FieldsMask:
    """Parse `{a,b{c,d},*}` (outer braces optional) into {"a": None, "b": {"c": None, "d": None}, "*": None}.

    The grammar and the error texts (its "coma" too) are flask-restplus's `Mask.parse`, which
    clients of the original were answered by.
    """
    text = header.replace("\n", "").strip()
    if text.startswith("{"):
        if not text.endswith("}"):
            raise MaskParseError("Missing closing bracket")
        text = text[1:-1]
    fields: FieldsMask = {}
    outer: list[FieldsMask] = []
    previous: str | None = None
    for token in _TOKEN.findall(text):
        if token == "{":
            if previous is None or previous not in fields:
                raise MaskParseError("Unexpected opening bracket")
            nested: FieldsMask = {}
            fields[previous] = nested
            outer.append(fields)
            fields = nested
        elif token == "}":
            if not outer:
                raise MaskParseError("Unexpected closing bracket")
            fields = outer.pop()
        elif token == ",":
            if previous in (",", "{", None):
                raise MaskParseError("Unexpected coma")
        else:
            fields[token] = None
        previous = token
    if outer:
        raise MaskParseError("Missing closing bracket")
    return fields


def apply_fields_mask(value: dict[str, object], mask: FieldsMask) -> dict[str, object]:
    """Keep the masked keys, in the mask's order; names the value lacks are simply absent."""
    if ALL_FIELDS in mask:
        return dict(value)
    kept: dict[str, object] = {}
    for name, nested in mask.items():
        if name not in value:
            continue
        item = value[name]
        if nested is not None and isinstance(item, dict):
            item = apply_fields_mask(item, nested)
        elif nested is not None and isinstance(item, list):
            item = [apply_fields_mask(x, nested) if isinstance(x, dict) else x for x in item]
        kept[name] = item
    return kept
