// Lossless JSON: JSON.parse turns 123456789012345678901234567890 into 1.2345678901234568e+29, and an
// event's `data` may hold such numbers. This parser keeps every number whose text a JS number cannot
// reproduce as a RawNumber (its exact text), and each object's key order, so formatJson prints what
// the server sent. Safe integers and ordinary decimals stay plain numbers.

export class RawNumber {
  constructor(text) {
    this.text = text;
  }

  valueOf() {
    return Number(this.text);
  }

  toString() {
    return this.text;
  }
}

// The key order as sent: Object.keys would move integer-like keys ("1", "2") to the front.
const KEY_ORDER = Symbol("keyOrder");

const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const WHITESPACE = /[ \t\n\r]*/y;

export function parseJson(text) {
  let at = 0;

  const fail = (expected) => {
    throw new SyntaxError(`JSON: expected ${expected} at position ${at}`);
  };
  const skipWhitespace = () => {
    WHITESPACE.lastIndex = at;
    WHITESPACE.exec(text);
    at = WHITESPACE.lastIndex;
  };
  const token = (pattern, expected) => {
    pattern.lastIndex = at;
    const match = pattern.exec(text);
    if (match === null) fail(expected);
    at = pattern.lastIndex;
    return match[0];
  };

  function value() {
    skipWhitespace();
    const next = text[at];
    if (next === "{") return object();
    if (next === "[") return array();
    if (next === '"') return JSON.parse(token(STRING, "a string"));
    if (next === "-" || (next >= "0" && next <= "9")) {
      const raw = token(NUMBER, "a number");
      const number = Number(raw);
      return String(number) === raw ? number : new RawNumber(raw);
    }
    for (const [word, literal] of [["true", true], ["false", false], ["null", null]]) {
      if (text.startsWith(word, at)) {
        at += word.length;
        return literal;
      }
    }
    return fail("a value");
  }

  function object() {
    at += 1;
    const result = {};
    const keys = [];
    Object.defineProperty(result, KEY_ORDER, { value: keys });
    skipWhitespace();
    if (text[at] === "}") {
      at += 1;
      return result;
    }
    for (;;) {
      skipWhitespace();
      const key = JSON.parse(token(STRING, "a key"));
      skipWhitespace();
      if (text[at] !== ":") fail("':'");
      at += 1;
      // defineProperty, not assignment: a "__proto__" key is data here, not the prototype.
      Object.defineProperty(result, key, { value: value(), enumerable: true, writable: true, configurable: true });
      if (!keys.includes(key)) keys.push(key);
      skipWhitespace();
      const separator = text[at];
      at += 1;
      if (separator === "}") return result;
      if (separator !== ",") fail("',' or '}'");
    }
  }

  function array() {
    at += 1;
    const result = [];
    skipWhitespace();
    if (text[at] === "]") {
      at += 1;
      return result;
    }
    for (;;) {
      result.push(value());
      skipWhitespace();
      const separator = text[at];
      at += 1;
      if (separator === "]") return result;
      if (separator !== ",") fail("',' or ']'");
    }
  }

  const result = value();
  skipWhitespace();
  if (at !== text.length) fail("the end of the text");
  return result;
}

// JSON text for `value`: pretty with `indentUnit` ("  "), compact with "". RawNumbers print as their
// exact text, so a parsed document (or a filter holding one) goes back to the server unchanged.
export function formatJson(value, indentUnit = "  ", indent = "") {
  if (value instanceof RawNumber) return value.text;
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  const inner = indent + indentUnit;
  const newline = indentUnit ? "\n" : "";
  const open = (items, left, right) =>
    items.length ? `${left}${newline}${items.map((item) => inner + item).join(`,${newline}`)}${newline}${indent}${right}` : `${left}${right}`;
  if (Array.isArray(value)) {
    return open(value.map((item) => formatJson(item, indentUnit, inner)), "[", "]");
  }
  const keys = value[KEY_ORDER] ?? Object.keys(value).filter((key) => value[key] !== undefined);
  const colon = indentUnit ? ": " : ":";
  return open(
    keys.map((key) => `${JSON.stringify(key)}${colon}${formatJson(value[key], indentUnit, inner)}`),
    "{",
    "}",
  );
}
