"""The policy applied to every operation before it runs: its cost, then who may see each field.

Both come from one walk over the operation's selections (fragments followed, `@skip`/`@include`
applied with the request's variables), using the tables in graphql_schema.field_rules.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLIncludeDirective,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSkipDirective,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
)
from graphql.execution.values import VariableValues, get_argument_values, get_directive_values

from db.api_keys import NotAuthenticated
from graphql_schema.errors import FORBIDDEN, UNAUTHENTICATED
from graphql_schema.field_rules import (
    CONNECTION_FIELDS,
    PAGE_FIELDS,
    Access,
    connection_page_size,
    field_access,
    list_size,
    text_weight,
)

if TYPE_CHECKING:
    from graphql_schema.context import Context
    from graphql_schema.schema import EventsSchema

log = logging.getLogger(__name__)

QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"

_Parent = GraphQLObjectType | GraphQLInterfaceType


@dataclass(frozen=True, slots=True)
class FieldVisit:
    """One field of the operation, where it stands and how often the response can hold it."""

    parent: str  # the type the field is selected on
    name: str
    path: tuple[str, ...]  # response keys from the root, for messages
    count: int  # instances of this field the response can hold (list sizes above it multiplied)
    items: int  # items one instance holds (its list size; 1 for a single value)
    is_object: bool
    under_write: bool  # selected directly on what a write field returns


def walk(
    schema: EventsSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: VariableValues,
) -> Iterator[FieldVisit]:
    """Every field the operation selects, depth first, with fragments inlined."""
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    root = schema._schema.get_root_type(operation.operation)
    assert root is not None  # validation has checked the operation type exists
    walker = _Walker(schema, fragments, variables)
    yield from walker.selections(operation.selection_set, root, (), 1, 1, under_write=False)


class _Walker:
    def __init__(
        self,
        schema: EventsSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: VariableValues,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def selections(
        self,
        selection_set: SelectionSetNode,
        parent: _Parent,
        path: tuple[str, ...],
        count: int,
        page: int,
        *,
        under_write: bool,
    ) -> Iterator[FieldVisit]:
        for selection in selection_set.selections:
            if not self._included(selection):
                continue
            if isinstance(selection, FieldNode):
                yield from self._field(selection, parent, path, count, page, under_write=under_write)
                continue
            if isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments[selection.name.value]  # validation: every spread is defined
                condition, inner = fragment.type_condition, fragment.selection_set
            else:
                assert isinstance(selection, InlineFragmentNode)
                condition, inner = selection.type_condition, selection.selection_set
            narrowed = self.schema._schema.get_type(condition.name.value) if condition else parent
            assert isinstance(narrowed, GraphQLObjectType | GraphQLInterfaceType)
            yield from self.selections(inner, narrowed, path, count, page, under_write=under_write)

    def _field(
        self,
        node: FieldNode,
        parent: _Parent,
        path: tuple[str, ...],
        count: int,
        page: int,
        *,
        under_write: bool,
    ) -> Iterator[FieldVisit]:
        name = node.name.value
        here = (*path, node.alias.value if node.alias else name)
        definition = parent.fields.get(name)
        if definition is None:  # __typename, __schema, __type: meta fields, open and cheap
            yield FieldVisit(parent.name, name, here, count, 1, False, under_write)
            return
        settings = self.schema.settings
        arguments = get_argument_values(definition, node, self.variables)
        key = (parent.name, name)
        items = page if key in PAGE_FIELDS else list_size(parent.name, name, arguments, settings)
        field_type = get_named_type(definition.type)
        is_object = isinstance(field_type, GraphQLObjectType | GraphQLInterfaceType)
        yield FieldVisit(parent.name, name, here, count, items, is_object, under_write)
        if node.selection_set is None or name.startswith("__"):
            return
        assert isinstance(field_type, GraphQLObjectType | GraphQLInterfaceType)
        inner_page = connection_page_size(arguments, settings) if key in CONNECTION_FIELDS else 1
        writes = field_access(parent.name, name) is Access.WRITE
        yield from self.selections(
            node.selection_set, field_type, here, count * items, inner_page, under_write=writes
        )

    def _included(self, node: FieldNode | FragmentSpreadNode | InlineFragmentNode) -> bool:
        skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
        if skip is not None and skip.get("if") is True:
            return False
        include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        return not (include is not None and include.get("if") is False)


@dataclass(frozen=True, slots=True)
class Need:
    """A scope the operation needs, and the first field that needs it (for the message)."""

    scope: str
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Assessment:
    """What one walk over an operation finds: the nodes its response can hold at most (see
    graphql_schema.field_rules for the model), the scopes it needs, each with the first field
    needing it, in document order, and the first field no rule covers, if any."""

    cost: int
    needs: tuple[Need, ...]
    unruled: FieldVisit | None


def assess(
    schema: EventsSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: VariableValues,
) -> Assessment:
    cost = 0
    needs: dict[str, Need] = {}
    unruled: FieldVisit | None = None
    settings = schema.settings
    for visit in walk(schema, document, operation, variables):
        instances = visit.count * visit.items
        if visit.is_object:
            cost += instances
        elif not visit.under_write:
            # A mutation's own event only echoes what the request carried, which the request body
            # limit bounds already: its text adds nothing.
            cost += instances * text_weight(visit.parent, visit.name, settings)
        rule = field_access(visit.parent, visit.name)
        if rule is None:
            unruled = unruled or visit  # nothing is served by default
        elif not (rule is Access.OPEN or (rule is Access.OWN_EVENT and visit.under_write)):
            scope = Access.READ.value if rule is Access.OWN_EVENT else rule.value
            needs.setdefault(scope, Need(scope, visit.path))
    return Assessment(cost, tuple(needs.values()), unruled)


class Assessments:
    """Assessments of recent (document, operation, variables), least recently used dropped first.

    The same request comes again and again (a dashboard, a page of a list): its walk is done once.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[bytes, Assessment] = OrderedDict()

    def get(self, key: bytes, compute: Callable[[], Assessment]) -> Assessment:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            return found
        found = self._entries[key] = compute()
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return found


def check_cost(schema: EventsSchema, operation: OperationDefinitionNode, assessment: Assessment) -> int:
    """The operation's cost; a QUERY_TOO_COMPLEX refusal when it is over the limit for its kind.

    A subscription is costed per delivered event, against its own (lower) limit: that cost is
    paid again for every event and every subscriber.
    """
    from graphql_schema.gate import RequestRefused  # the gate imports this module

    settings = schema.settings
    cost = assessment.cost
    if operation.operation is OperationType.SUBSCRIPTION:
        allowed, setting = settings.graphql_max_subscription_nodes, "GRAPHQL_MAX_SUBSCRIPTION_NODES"
    else:
        allowed, setting = settings.graphql_max_nodes, "GRAPHQL_MAX_NODES"
    if cost > allowed:
        raise RequestRefused.one(
            f"The response could hold {cost:,} nodes; at most {allowed:,} are allowed ({setting}). "
            "Ask for smaller pages or fewer fields.",
            QUERY_TOO_COMPLEX,
            cost=cost,
            maxCost=allowed,
        )
    return cost


async def check_access(schema: EventsSchema, assessment: Assessment, context: Context) -> None:
    """Refuse (UNAUTHENTICATED / FORBIDDEN) unless the caller's key holds every scope needed."""
    from graphql_schema.gate import RequestRefused  # the gate imports this module

    if assessment.unruled is not None:
        unruled = assessment.unruled
        log.error("refused a field without an access rule: %s.%s", unruled.parent, unruled.name)
        raise RequestRefused.one(f"`{'.'.join(unruled.path)}` is not available.", FORBIDDEN, status=403)
    needs = assessment.needs
    if not schema.settings.auth_required or not needs:
        return
    try:
        key = await context.key_verifier.identify(context.presented_key())
    except NotAuthenticated as error:
        raise RequestRefused.one(str(error), UNAUTHENTICATED, status=401) from None
    missing = next((need for need in needs if not key.allows(need.scope)), None)
    if missing is not None:
        raise RequestRefused.one(
            f"The API key lacks the '{missing.scope}' scope, which `{'.'.join(missing.path)}` needs.",
            FORBIDDEN,
            status=403,
            field=".".join(missing.path),
        )
    context.api_key_id = key.id  # idempotency keys are scoped to the API key
