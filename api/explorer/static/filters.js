// The filter form, derived from EventFilter's introspected input fields: a new filter field in the
// schema appears here with no change to the page. Each control's kind follows its GraphQL type.

import { parseJson } from "./json.js";

export class FilterInputError extends Error {}

function describeType(type) {
  let list = false;
  while (type.kind === "NON_NULL" || type.kind === "LIST") {
    if (type.kind === "LIST") list = true;
    type = type.ofType;
  }
  return { list, kind: type.kind, name: type.name };
}

function controlKind(type) {
  if (type.list) return "list";
  if (type.name === "DateTime") return "datetime";
  if (type.name === "JSON" || type.kind === "INPUT_OBJECT") return "json";
  if (type.name === "Int" || type.name === "Float") return "number";
  if (type.name === "Boolean") return "boolean";
  return "text";
}

function buildControl(name, kind) {
  let control;
  if (kind === "json") {
    control = document.createElement("textarea");
    control.rows = 2;
    control.placeholder = '{"key": "value"}';
  } else if (kind === "boolean") {
    control = document.createElement("select");
    for (const value of ["", "true", "false"]) control.append(new Option(value || "any", value));
  } else {
    control = document.createElement("input");
    control.type = { datetime: "datetime-local", number: "number" }[kind] ?? "text";
    if (kind === "datetime") control.step = "1";
    if (kind === "list") control.placeholder = "comma-separated";
  }
  control.id = `filter-${name}`;
  control.name = name;
  control.dataset.kind = kind;
  return control;
}

export function buildFilterForm(container, inputFields) {
  container.replaceChildren();
  return inputFields.map((field) => {
    const type = describeType(field.type);
    const kind = controlKind(type);
    const control = buildControl(field.name, kind);
    const label = document.createElement("label");
    label.htmlFor = control.id;
    label.textContent = kind === "datetime" ? `${field.name} (UTC)` : field.name;
    const wrapper = document.createElement("div");
    wrapper.className = "field";
    wrapper.title = field.description ?? "";
    wrapper.append(label, control);
    container.append(wrapper);
    return { name: field.name, kind, itemType: type.name, control };
  });
}

function readValue({ name, kind, itemType, control }) {
  const text = control.value.trim();
  if (text === "") return undefined;
  switch (kind) {
    case "list": {
      const items = text.split(",").map((item) => item.trim()).filter((item) => item !== "");
      return itemType === "Int" || itemType === "Float" ? items.map(Number) : items;
    }
    case "datetime":
      return `${text.length === 16 ? `${text}:00` : text}Z`;
    case "number":
      return Number(text);
    case "boolean":
      return text === "true";
    case "json":
      try {
        return parseJson(text); // lossless: big integers go to the server as typed
      } catch (error) {
        throw new FilterInputError(`${name}: not valid JSON (${error.message})`);
      }
    default:
      return text;
  }
}

export function readFilter(fields) {
  const filter = {};
  for (const field of fields) {
    const value = readValue(field);
    if (value !== undefined && !(Array.isArray(value) && value.length === 0)) filter[field.name] = value;
  }
  return filter;
}
