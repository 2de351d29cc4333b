// The explorer page: a filter form derived from the schema, a paged table, a live tail, a chart, an
// event's exact JSON, and a link to the same query in GraphiQL. Talks only to this service.

import { chooseBucket, drawBarChart } from "./chart.js";
import { GRAPHQL_PATH, graphqlRequest, graphqlSubscribe } from "./graphql.js";
import { FilterInputError, buildFilterForm, readFilter } from "./filters.js";
import { formatJson } from "./json.js";

const KEY_STORAGE = "activity-explorer.api-key";
const EVENT_FIELDS = "id component environment email message data createdAt cursor";

// Every filter comes from the schema, so a new EventFilter field shows up here without editing the page.
const SCHEMA_QUERY = `query ExplorerSchema {
  filter: __type(name: "EventFilter") { inputFields { name description type { ...TypeRef } } }
  buckets: __type(name: "TimeBucket") { enumValues { name } }
  query: __type(name: "Query") { fields { name } }
}
fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }`;

const EVENTS_QUERY = `query ExplorerEvents($filter: EventFilter, $first: Int, $after: String, $last: Int, $before: String, $orderBy: EventOrder!) {
  events(filter: $filter, first: $first, after: $after, last: $last, before: $before, orderBy: $orderBy) {
    totalCount
    pageInfo { hasPreviousPage hasNextPage startCursor endCursor }
    edges { node { ${EVENT_FIELDS} } }
  }
}`;

const RANGE_QUERY = `query ExplorerRange($filter: EventFilter) {
  oldest: events(filter: $filter, first: 1, orderBy: OLDEST_FIRST) { nodes { createdAt } }
  newest: events(filter: $filter, first: 1, orderBy: NEWEST_FIRST) { nodes { createdAt } }
}`;

const STATS_QUERY = `query ExplorerStats($filter: EventFilter, $bucket: TimeBucket) {
  eventStats(filter: $filter, bucket: $bucket, timeZone: "UTC") { rows { bucket count } truncated }
}`;

const LIVE_QUERY = `subscription ExplorerLive($filter: EventFilter, $after: String) {
  eventRecorded(filter: $filter, after: $after) { ${EVENT_FIELDS} }
}`;

const MAX_LIVE_ROWS = 200;

const $ = (id) => document.getElementById(id);

const state = {
  apiKey: sessionStorage.getItem(KEY_STORAGE) ?? "",
  fields: [], // [{name, kind, control}] from the schema
  buckets: [],
  hasStats: false,
  filter: {},
  position: {}, // the page's cursor arguments: {after} or {before}
  live: null,
  liveCursor: null, // the last live event's cursor: a dropped socket resumes after it
  liveRetries: 0,
  loads: { page: 0, chart: 0 }, // the latest request of each kind: an older answer arriving late is dropped
};

function showStatus(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

// ---- the table -----------------------------------------------------------------------------------

function pageSize() {
  const size = Number.parseInt($("page-size").value, 10);
  return Number.isFinite(size) && size > 0 ? size : 20;
}

function pageVariables() {
  const { before, after } = state.position;
  const size = pageSize();
  const paging = before ? { first: null, last: size, before } : { first: size, after: after ?? null };
  return { filter: state.filter, orderBy: $("order-by").value, ...paging };
}

function eventRow(node, live = false) {
  const row = document.createElement("tr");
  row.tabIndex = 0;
  row.dataset.id = node.id;
  if (live) row.className = "live";
  for (const value of [node.createdAt, node.component, node.environment, node.email ?? "", node.message]) {
    const cell = document.createElement("td");
    cell.textContent = value;
    row.append(cell);
  }
  const select = () => showEvent(node, row);
  row.addEventListener("click", select);
  row.addEventListener("keydown", (event) => {
    if (event.key === "Enter") select();
  });
  return row;
}

function showEvent(node, row) {
  for (const selected of document.querySelectorAll("#events tr.selected")) selected.classList.remove("selected");
  row.classList.add("selected");
  const pre = $("event-json");
  pre.classList.remove("hint");
  pre.textContent = formatJson(node); // RawNumbers print as the server wrote them
}

async function loadPage() {
  const variables = pageVariables();
  const load = ++state.loads.page;
  updateGraphiqlLink(variables);
  let connection;
  try {
    ({ events: connection } = await graphqlRequest(EVENTS_QUERY, variables, state.apiKey));
  } catch (error) {
    if (load !== state.loads.page) return;
    $("page-rows").replaceChildren();
    $("total-count").textContent = "";
    $("previous-page").disabled = $("next-page").disabled = true;
    showStatus(`Could not load events: ${error.message}`, true);
    return;
  }
  if (load !== state.loads.page) return;
  showStatus("");
  const rows = connection.edges.map((edge) => eventRow(edge.node));
  if (rows.length === 0) {
    const empty = document.createElement("tr");
    const cell = document.createElement("td");
    cell.colSpan = 5;
    cell.className = "hint";
    cell.textContent = "No events match.";
    empty.append(cell);
    rows.push(empty);
  }
  $("page-rows").replaceChildren(...rows);
  $("total-count").textContent = `(${connection.totalCount} matching)`;
  const { hasPreviousPage, hasNextPage, startCursor, endCursor } = connection.pageInfo;
  state.pageInfo = { startCursor, endCursor };
  $("previous-page").disabled = !hasPreviousPage;
  $("next-page").disabled = !hasNextPage;
}

function updateGraphiqlLink(variables) {
  // Strawberry's GraphiQL reads ?q= and ?variables= with decodeURIComponent: no "+" for spaces.
  const query = `q=${encodeURIComponent(EVENTS_QUERY)}`;
  $("graphiql-link").href = `${GRAPHQL_PATH}?${query}&variables=${encodeURIComponent(formatJson(variables))}`;
}

// ---- the chart -----------------------------------------------------------------------------------

async function loadChart() {
  const load = ++state.loads.chart;
  const message = $("chart-message");
  const chart = $("chart");
  $("chart-bucket").textContent = "";
  if (!state.hasStats) {
    chart.replaceChildren();
    message.textContent = "No chart: this server's schema has no eventStats query.";
    return;
  }
  message.textContent = "Loading…";
  try {
    const { oldest, newest } = await graphqlRequest(RANGE_QUERY, { filter: state.filter }, state.apiKey);
    if (load !== state.loads.chart) return;
    if (!oldest.nodes.length) {
      chart.replaceChildren();
      message.textContent = "No events to chart.";
      return;
    }
    const start = Date.parse(state.filter.from ?? oldest.nodes[0].createdAt);
    const end = Date.parse(state.filter.to ?? newest.nodes[0].createdAt);
    const bucket = chooseBucket(state.buckets, Math.max(0, end - start) / 1000);
    const { eventStats } = await graphqlRequest(STATS_QUERY, { filter: state.filter, bucket }, state.apiKey);
    if (load !== state.loads.chart) return;
    const rows = eventStats.rows.filter((row) => row.bucket);
    if (!rows.length) {
      chart.replaceChildren();
      message.textContent = "No events to chart.";
      return;
    }
    drawBarChart(chart, rows, bucket);
    $("chart-bucket").textContent = `(per ${bucket.toLowerCase()}, UTC)`;
    message.textContent = eventStats.truncated ? "Only the first buckets are shown: the server truncated the result." : "";
  } catch (error) {
    if (load !== state.loads.chart) return;
    chart.replaceChildren();
    message.textContent = `The chart could not be loaded: ${error.message}`;
    message.classList.add("error");
    return;
  }
  message.classList.remove("error");
}

// ---- live tail -----------------------------------------------------------------------------------

function startLive() {
  stopLive();
  $("live-status").textContent = "connecting…";
  const handle = graphqlSubscribe({
    query: LIVE_QUERY,
    variables: { filter: state.filter, after: state.liveCursor },
    apiKey: state.apiKey,
    onReady: () => {
      $("live-status").textContent = "live: new events appear at the top";
    },
    onNext: ({ eventRecorded: node }) => {
      state.liveRetries = 0;
      state.liveCursor = node.cursor;
      const rows = $("live-rows");
      rows.prepend(eventRow(node, true));
      while (rows.children.length > MAX_LIVE_ROWS) rows.lastElementChild.remove();
    },
    onError: (message) => {
      $("live-toggle").checked = false;
      state.live = null;
      $("live-status").textContent = `stopped: ${message}`;
    },
    onClose: (code) => {
      // Dropped (restart, network): resubscribe after the last event seen, so nothing is missed.
      const delay = Math.min(30_000, 1000 * 2 ** state.liveRetries++);
      $("live-status").textContent = `disconnected (${code}); retrying in ${delay / 1000} s`;
      state.live = { stop: () => clearTimeout(timer) };
      const timer = setTimeout(() => $("live-toggle").checked && startLive(), delay);
    },
  });
  state.live = handle;
}

function stopLive() {
  state.live?.stop();
  state.live = null;
  $("live-status").textContent = "";
}

// ---- wiring --------------------------------------------------------------------------------------

function applyFilter() {
  try {
    state.filter = readFilter(state.fields);
  } catch (error) {
    if (error instanceof FilterInputError) return showStatus(error.message, true);
    throw error;
  }
  state.position = {};
  state.liveCursor = null;
  $("live-rows").replaceChildren();
  loadPage();
  loadChart();
  if ($("live-toggle").checked) startLive();
}

function wire() {
  $("api-key").value = state.apiKey;
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.apiKey = $("api-key").value.trim();
    if (state.apiKey) sessionStorage.setItem(KEY_STORAGE, state.apiKey);
    else sessionStorage.removeItem(KEY_STORAGE);
    applyFilter();
  });
  $("forget-key").addEventListener("click", () => {
    $("api-key").value = "";
    $("key-form").requestSubmit();
  });
  $("filter-form").addEventListener("submit", (event) => {
    event.preventDefault();
    applyFilter();
  });
  $("filter-form").addEventListener("reset", () => setTimeout(applyFilter));
  $("order-by").addEventListener("change", applyFilter);
  $("next-page").addEventListener("click", () => {
    state.position = { after: state.pageInfo.endCursor };
    loadPage();
  });
  $("previous-page").addEventListener("click", () => {
    state.position = { before: state.pageInfo.startCursor };
    loadPage();
  });
  $("live-toggle").addEventListener("change", (event) => (event.target.checked ? startLive() : stopLive()));
}

async function start() {
  wire();
  try {
    const schema = await graphqlRequest(SCHEMA_QUERY, {}, state.apiKey);
    state.fields = buildFilterForm($("filter-fields"), schema.filter?.inputFields ?? []);
    state.buckets = (schema.buckets?.enumValues ?? []).map((value) => value.name);
    state.hasStats = (schema.query?.fields ?? []).some((field) => field.name === "eventStats");
  } catch (error) {
    $("filter-fields").replaceChildren();
    showStatus(`Could not read the schema: ${error.message}`, true);
  }
  applyFilter();
}

start();
