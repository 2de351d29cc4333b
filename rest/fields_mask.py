"""The `X-Fields` response mask of the original (flask-restplus) API: `id,created_at`, `events{id}`.

A mask is parsed once per request, and applied to each row in time proportional to the row's
keys, not the mask's names: a mask of thousands of names on a long list costs no more per row
than `id`. Its size is bounded too (MAX_MASK_BYTES), so parsing it stays cheap.
"""

import re
from collections.abc import Mapping

# flask-restplus's lexer: characters outside it are ignored, as they were by the original.
_TOKEN = re.compile(r"\{|\}|,|[\w:\-*]+")
ALL_FIELDS = "*"
# The longest mask accepted, in bytes; longer ones are a 400. The original had no limit, but a
# mask naming every field of an event (nested `data` keys too) is well under 1 KiB: 4 KiB leaves
# room for any real one and keeps the parse of a hostile one trivial. Fixed rather than a setting:
# it protects no resource an operator would tune, the header limit bounds the request already.
MAX_MASK_BYTES = 4096


class FieldsMask(dict[str, "FieldsMask | None"]):
    """A parsed mask: field name -> nested mask, or None for "the whole value", in the mask's order.

    `rank` gives each name's position, so a row can be masked by looking up its own keys.
    """

    __slots__ = ("rank",)

    def __init__(self) -> None:
        super().__init__()
        self.rank: dict[str, int] = {}


class MaskParseError(ValueError):
    """The X-Fields header is not a valid mask."""


def parse_fields_mask(header: str) -> FieldsMask:
    """Parse `{a,b{c,d},*}` (outer braces optional) into {"a": None, "b": {"c": None, "d": None}, "*": None}.

    The grammar and the error texts (its "coma" too) are flask-restplus's `Mask.parse`, which
    clients of the original were answered by. A mask over MAX_MASK_BYTES is refused before it is
    parsed.
    """
    # Starlette decodes header values as latin-1: one character per byte sent.
    if len(header) > MAX_MASK_BYTES:
        raise MaskParseError(f"The mask is larger than the limit of {MAX_MASK_BYTES} bytes")
    text = header.replace("\n", "").strip()
    if text.startswith("{"):
        if not text.endswith("}"):
            raise MaskParseError("Missing closing bracket")
        text = text[1:-1]
    fields = top = FieldsMask()
    outer: list[FieldsMask] = []
    previous: str | None = None
    for token in _TOKEN.findall(text):
        if token == "{":
            if previous is None or previous not in fields:
                raise MaskParseError("Unexpected opening bracket")
            nested = FieldsMask()
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
    _rank(top)
    return top


def _rank(mask: FieldsMask) -> None:
    """Record each name's position, in `mask` and every mask nested in it (once, after parsing)."""
    mask.rank = {name: position for position, name in enumerate(mask)}
    for nested in mask.values():
        if nested is not None:
            _rank(nested)


def apply_fields_mask(value: Mapping[str, object], mask: Mapping[str, object]) -> dict[str, object]:
    """Keep the masked keys, in the mask's order; names the value lacks are simply absent.

    The work is bounded by the value's keys: a mask longer than the value is not walked, the
    value's keys are looked up in it and put in the mask's order.
    """
    if ALL_FIELDS in mask:
        return dict(value)
    if len(mask) <= len(value):
        names = [name for name in mask if name in value]
    else:
        rank = mask.rank if isinstance(mask, FieldsMask) else {name: i for i, name in enumerate(mask)}
        names = sorted((name for name in value if name in rank), key=rank.__getitem__)
    kept: dict[str, object] = {}
    for name in names:
        item = value[name]
        nested = mask[name]
        if isinstance(nested, Mapping) and isinstance(item, dict):
            item = apply_fields_mask(item, nested)
        elif isinstance(nested, Mapping) and isinstance(item, list):
            item = [apply_fields_mask(x, nested) if isinstance(x, dict) else x for x in item]
        kept[name] = item
    return kept
