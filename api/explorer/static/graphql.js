// A GraphQL client for the explorer: queries over HTTP POST, subscriptions over graphql-transport-ws
// (the protocol of graphql-ws's PROTOCOL.md, written out here so the page needs no npm package).
// Responses are parsed with parseJson, so big integers in `data` keep every digit.

import { formatJson, parseJson } from "./json.js";

export const GRAPHQL_PATH = "/graphql";

export class GraphQLRequestError extends Error {}

function describeErrors(errors) {
  return errors
    .map((error) => {
      const code = error.extensions?.code;
      return code ? `${code}: ${error.message}` : error.message;
    })
    .join("; ");
}

function authorization(apiKey) {
  return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
}

// The operation's `data`; throws GraphQLRequestError with the server's messages when it has errors.
export async function graphqlRequest(query, variables, apiKey) {
  const response = await fetch(GRAPHQL_PATH, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json", ...authorization(apiKey) },
    body: formatJson({ query, variables }, ""),
  });
  const text = await response.text();
  let body;
  try {
    body = parseJson(text);
  } catch {
    throw new GraphQLRequestError(`HTTP ${response.status}: ${text.slice(0, 200)}`);
  }
  if (Array.isArray(body.errors) && body.errors.length) {
    throw new GraphQLRequestError(describeErrors(body.errors));
  }
  if (!response.ok || !body.data) throw new GraphQLRequestError(`HTTP ${response.status}`);
  return body.data;
}

export function websocketUrl() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${GRAPHQL_PATH}`;
}

// One subscription on its own socket. Calls onNext(data) per result, onError(message) when the server
// refuses or ends it with errors, onClose(code, reason) when the socket drops before the operation
// completed (the caller may resubscribe), onReady() once `subscribe` has been sent.
// Returns { stop() }: completes the operation and closes the socket.
export function graphqlSubscribe({ query, variables, apiKey, onNext, onError, onClose, onReady }) {
  const OPERATION_ID = "1";
  const socket = new WebSocket(websocketUrl(), "graphql-transport-ws");
  let subscribed = false;
  let finished = false;
  const send = (message) => socket.send(formatJson(message, ""));
  const finish = () => {
    finished = true;
    if (socket.readyState === WebSocket.OPEN) socket.close(1000, "done");
  };

  socket.addEventListener("open", () => {
    // The key goes in the payload under its header name (graphql_schema/context.py presented_key).
    send({ type: "connection_init", payload: authorization(apiKey) });
  });
  socket.addEventListener("message", (event) => {
    let message;
    try {
      message = parseJson(event.data);
    } catch {
      finish();
      onError("the server sent a message that is not JSON");
      return;
    }
    switch (message.type) {
      case "connection_ack":
        send({ id: OPERATION_ID, type: "subscribe", payload: { query, variables } });
        subscribed = true;
        onReady?.();
        break;
      case "ping":
        send({ type: "pong" });
        break;
      case "pong":
        break;
      case "next":
        if (message.payload?.errors?.length) onError(describeErrors(message.payload.errors));
        else onNext(message.payload.data);
        break;
      case "error":
        finish();
        onError(describeErrors(message.payload ?? []));
        break;
      case "complete":
        finish();
        onError("the server ended the subscription");
        break;
      default:
        break;
    }
  });
  socket.addEventListener("close", (event) => {
    if (!finished) onClose(event.code, event.reason);
    finished = true;
  });

  return {
    stop() {
      if (finished) return;
      finished = true;
      if (socket.readyState === WebSocket.OPEN) {
        if (subscribed) send({ id: OPERATION_ID, type: "complete" });
        socket.close(1000, "stopped");
      } else if (socket.readyState === WebSocket.CONNECTING) {
        socket.addEventListener("open", () => socket.close(1000, "stopped"));
      }
    },
  };
}
