"""GraphQL over websockets: both subprotocols, every operation through the gate, connections capped.

`connections` holds what both share (the gate, the caps, the socket adapter), `transport_ws` the
graphql-transport-ws handler and `legacy_ws` the older graphql-ws one; `WebsocketTransports` plugs
them into the router.
"""

from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from graphql_schema.websockets.connections import GatedWebSocketAdapter, WebsocketSlots
from graphql_schema.websockets.legacy_ws import GatedLegacyWSHandler
from graphql_schema.websockets.transport_ws import GatedTransportWSHandler

if TYPE_CHECKING:
    from graphql_schema.schema import EventsSchema


class WebsocketTransports:
    """Router mixin: both websocket protocols through the gate, with the connection caps.

    `schema` is the router's; the caps come from its settings and are counted per router, that is
    per app and so per server process.
    """

    graphql_transport_ws_handler_class = GatedTransportWSHandler
    graphql_ws_handler_class = GatedLegacyWSHandler
    websocket_adapter_class = GatedWebSocketAdapter
    schema: Any

    @cached_property
    def websocket_slots(self) -> WebsocketSlots:
        """This process's connection counts (made on the first connection)."""
        return WebsocketSlots.from_settings(cast("EventsSchema", self.schema).settings)
