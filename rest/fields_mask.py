"""The `X-Fields` response mask of the original (flask-restplus) API: `id,created_at`, `events{id}`."""

import re

# A parsed mask: field name -> nested mask, or None for "the whole value".
FieldsMask = dict[str, "FieldsMask | None"]

_TOKEN = re.compile(r"\s*([{},*]|[^\s{},*]+)")
ALL_FIELDS = "*"


class MaskParseError(ValueError):
    """The X-Fields header is not a valid mask."""


def parse_fields_mask(header: str) -> FieldsMask:
    """Parse `a,b{c,d},*` into {"a": None, "b": {"c": None, "d": None}, "*": None}."""
    tokens = [match.group(1) for match in _TOKEN.finditer(header)]
    mask, position = _parse_fields(tokens, 0)
    if position != len(tokens):
        raise MaskParseError(f"Unexpected '{tokens[position]}'")
    return mask


def _parse_fields(tokens: list[str], position: int) -> tuple[FieldsMask, int]:
    mask: FieldsMask = {}
    expect_name = True
    while position < len(tokens):
        token = tokens[position]
        if token == "}":
            break
        if token == ",":
            if expect_name:
                raise MaskParseError("Unexpected ','")
            expect_name = True
            position += 1
            continue
        if token == "{":
            raise MaskParseError("Unexpected '{' without a field name before it")
        if not expect_name:
            raise MaskParseError(f"Missing ',' before '{token}'")
        position += 1
        nested: FieldsMask | None = None
        if position < len(tokens) and tokens[position] == "{":
            nested, position = _parse_fields(tokens, position + 1)
            if position >= len(tokens) or tokens[position] != "}":
                raise MaskParseError("Missing '}'")
            position += 1
        mask[token] = nested
        expect_name = False
    return mask, position


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
