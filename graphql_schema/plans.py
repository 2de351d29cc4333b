"""Compiled plans: the hot operations executed without graphql-core's per-field dispatch.

A plan is made once per (document, operation), beside the parse and validation caches, for
operations whose every field the fast path knows:
- root fields with a handler here (`Query.events`, `Mutation.recordEvent`, `recordEvents`), which
  call the very functions their resolvers call (graphql_schema.queries/mutations);
- below them, fields of object types that are plain attributes or resolvers of `self` alone
  (Event's scalars and cursor, the connection, its edges and pageInfo), and `__typename`.
Anything else (another root field, `actor`, `node`, introspection, @defer) gets no plan and runs
the ordinary way, as does every request whose plan fails: a query is then simply run again, and
a mutation's outcomes so far are handed to its resolvers (Context.planned_outcomes), so nothing is
written twice. Which fields a request selects is decided by graphql-core's own `collect_fields`
(fragments, @skip/@include with the request's variables), values are completed by the schema's own
serializers, and the answer is the same JSON, key for key (tests/graphql_schema/test_plans.py).
"""

import asyncio
import dataclasses
import functools
import inspect
import operator
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from types import CodeType
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLField,
    GraphQLID,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    InlineFragmentNode,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_operation_ast,
    is_leaf_type,
    is_object_type,
)
from graphql.execution.collect_fields import (
    FieldDetails,
    FragmentDetails,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues, get_argument_values
from strawberry.types.arguments import convert_arguments
from strawberry.types.field import StrawberryField

from db.json_text import written_as_isoformat
from graphql_schema.context import Context, PlannedOutcome
from graphql_schema.inputs import event_filter_from_graphql
from graphql_schema.mutations import record_event_input, record_event_inputs
from graphql_schema.queries import actor_by_email, event_row_by_id, events_page
from graphql_schema.types import EVENT_FROM_ROW, actor_of_email, row_cursor

_BACKREF = "strawberry-definition"
# Directives a plan honours through collect_fields; any other (say @defer) means no plan.
_PLANNED_DIRECTIVES = frozenset({"skip", "include"})

# A root field's work: (context, the field's Python arguments, its node, the variables) -> its
# outcome, then how the outcome is presented as the field's value (a mutation's outcome is what its
# resolver would be handed in Context.planned_outcomes).
RootCall = Callable[[Context, dict[str, Any], FieldNode, VariableValues], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class RootHandler:
    call: RootCall
    present: Callable[[Any], Any] = lambda outcome: outcome
    # Whether `call` takes the arguments as Strawberry's resolvers get them (input objects, Python
    # names) or as graphql-core coerced them (GraphQL names), which is cheaper when it can.
    strawberry_arguments: bool = True


def _sent(node: FieldNode, name: str, variables: VariableValues) -> bool:
    """Whether the request itself gives argument `name` a non-null value (defaults aside)."""
    for argument in node.arguments or ():
        if argument.name.value == name:
            if isinstance(argument.value, VariableNode):
                return variables.coerced.get(argument.value.name.value) is not None
            return not isinstance(argument.value, NullValueNode)
    return False


async def _events(context: Context, args: dict[str, Any], node: FieldNode, variables: VariableValues) -> Any:
    return await events_page(
        context,
        lambda: event_filter_from_graphql(args["filter"]),
        args["first"],
        args["after"],
        args["last"],
        args["before"],
        args["orderBy"],
        first_sent=_sent(node, "first", variables),
    )


async def _record_event(context: Context, args: dict[str, Any], *_: object) -> Any:
    return await record_event_input(context, args["input"])


async def _record_events(context: Context, args: dict[str, Any], *_: object) -> Any:
    return await record_event_inputs(context, args["inputs"])


async def _event(context: Context, args: dict[str, Any], *_: object) -> Any:
    return await event_row_by_id(context, args["id"])


async def _actor(context: Context, args: dict[str, Any], *_: object) -> Any:
    return await actor_by_email(context, args["email"])


ROOT_HANDLERS: dict[tuple[OperationType, str], RootHandler] = {
    (OperationType.QUERY, "events"): RootHandler(_events, strawberry_arguments=False),
    (OperationType.QUERY, "event"): RootHandler(_event),
    (OperationType.QUERY, "actor"): RootHandler(_actor),
    (OperationType.MUTATION, "recordEvent"): RootHandler(_record_event, lambda recorded: recorded.record),
    (OperationType.MUTATION, "recordEvents"): RootHandler(
        _record_events, lambda recorded: [one.record for one in recorded]
    ),
}


# Fields whose resolvers need the request (its DataLoaders): (type, field) -> f(context, source),
# the very function the resolver calls. Items of a list are completed together, so their loads batch.
CONTEXT_GETTERS: dict[tuple[str, str], Callable[[Context, Any], Awaitable[Any]]] = {
    ("Event", "actor"): lambda context, row: actor_of_email(context, row["email"]),
}


@dataclass(frozen=True, slots=True)
class Plan:
    """What executing one operation of one document needs beyond the request's variables."""

    schema: GraphQLSchema
    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDetails]
    root_type: GraphQLObjectType
    # With no @skip/@include anywhere, what a run selects does not depend on its variables: its
    # root fields and their completers are then made by the first run and kept for the others.
    fixed_selection: bool = False
    kept: dict[str, Any] = dataclasses.field(default_factory=dict)  # "" holds the root fields


class _NotPlannable(Exception):
    pass


class PlanCache:
    """The plan of each (document text, operation name), made once; None when there is none."""

    def __init__(self, schema: GraphQLSchema, parsed: Callable[[str], DocumentNode], size: int) -> None:
        self._schema = schema
        self._parsed = parsed
        self.plan: Callable[[str, str | None], Plan | None] = lru_cache(size)(self._compile)

    def _compile(self, query: str, operation_name: str | None) -> Plan | None:
        document = self._parsed(query)
        operation = get_operation_ast(document, operation_name)
        return compile_plan(self._schema, document, operation) if operation is not None else None


def compile_plan(
    schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
) -> Plan | None:
    """A plan for `operation` of a valid `document`, or None when some field needs the full executor."""
    root_type = schema.get_root_type(operation.operation)
    if root_type is None:
        return None
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    directives: list[str] = []
    try:
        _check_selections(
            schema,
            fragments,
            root_type,
            operation.selection_set,
            root=operation.operation,
            seen=set(),
            directives=directives,
        )
    except _NotPlannable:
        return None
    return Plan(
        schema,
        operation,
        {name: FragmentDetails(f) for name, f in fragments.items()},
        root_type,
        fixed_selection=not directives,
    )


def _check_selections(
    schema: GraphQLSchema,
    fragments: dict[str, FragmentDefinitionNode],
    parent: GraphQLObjectType,
    selection_set: SelectionSetNode,
    *,
    root: OperationType | None,
    seen: set[str],
    directives: list[str],
) -> None:
    """Raise _NotPlannable unless every field any branch of `selection_set` may select is known;
    add the directives it uses to `directives`."""
    for selection in selection_set.selections:
        for directive in selection.directives or ():
            if directive.name.value not in _PLANNED_DIRECTIVES:
                raise _NotPlannable
            directives.append(directive.name.value)
        if isinstance(selection, FieldNode):
            _check_field(schema, fragments, parent, selection, root=root, seen=seen, directives=directives)
            continue
        if isinstance(selection, InlineFragmentNode):
            inner = selection.selection_set
            condition = selection.type_condition
        else:
            name = selection.name.value
            if name in seen:
                continue
            seen = seen | {name}
            fragment = fragments[name]
            for directive in fragment.directives or ():
                if directive.name.value not in _PLANNED_DIRECTIVES:
                    raise _NotPlannable
                directives.append(directive.name.value)
            inner, condition = fragment.selection_set, fragment.type_condition
        # A fragment on another type (an interface Event implements, say) still selects fields of
        # the object at hand, checked against it; a type it can never be is simply never selected.
        if (
            condition is None
            or condition.name.value == parent.name
            or _implements(schema, parent, condition.name.value)
        ):
            _check_selections(schema, fragments, parent, inner, root=root, seen=seen, directives=directives)


def _implements(schema: GraphQLSchema, parent: GraphQLObjectType, name: str) -> bool:
    return any(interface.name == name for interface in parent.interfaces)


def _check_field(
    schema: GraphQLSchema,
    fragments: dict[str, FragmentDefinitionNode],
    parent: GraphQLObjectType,
    node: FieldNode,
    *,
    root: OperationType | None,
    seen: set[str],
    directives: list[str],
) -> None:
    name = node.name.value
    if name == "__typename":
        return
    if name.startswith("__") or name not in parent.fields:
        raise _NotPlannable
    field = parent.fields[name]
    if root is not None:
        if (root, name) not in ROOT_HANDLERS:
            raise _NotPlannable
    elif (parent.name, name) not in CONTEXT_GETTERS and _getter_of(parent, field) is None:
        raise _NotPlannable
    named = get_named_type(field.type)
    if is_leaf_type(named):
        return
    if not is_object_type(named) or node.selection_set is None:
        raise _NotPlannable  # interfaces and unions need runtime type resolution
    _check_selections(
        schema, fragments, named, node.selection_set, root=None, seen=seen, directives=directives
    )


@dataclass(frozen=True, slots=True)
class _Getter:
    """How an object's field is read: `read(source)`, which returns an awaitable when `awaits`;
    `attribute` names the attribute, or `item` the key, when reading is nothing more."""

    read: Callable[[Any], Any]
    awaits: bool
    attribute: str | None = None
    item: str | None = None


def _getter(field: GraphQLField) -> _Getter | None:
    """How an object's field is read, when it is an attribute or a resolver of `self` alone."""
    definition = (field.extensions or {}).get(_BACKREF)
    if not isinstance(definition, StrawberryField) or definition.arguments or definition.extensions:
        return None
    resolver = definition.base_resolver
    if resolver is None:
        name = definition.python_name
        return _Getter(operator.attrgetter(name), False, name if name.isidentifier() else None)
    function = resolver.wrapped_func
    if list(inspect.signature(function).parameters) != ["self"]:
        return None
    return _Getter(function, inspect.iscoroutinefunction(function))


# A plan carries every Event as its database row, never as an Event object: the fields that hand
# an Event on give the row, and Event's own fields read it by the rule Event objects are built by.
ROW_GETTERS: dict[tuple[str, str], _Getter] = {
    ("EventEdge", "node"): _Getter(operator.attrgetter("record"), False, attribute="record"),
    ("EventConnection", "nodes"): _Getter(lambda page: [edge.record for edge in page.edges], False),
    ("Event", "cursor"): _Getter(row_cursor, False),
    # A reader that is one column as it is gets inlined as `source[column]` (see _object_code).
    **{
        ("Event", name): _Getter(read, False, item=name if isinstance(read, operator.itemgetter) else None)
        for name, read in EVENT_FROM_ROW.items()
    },
}

_GETTERS: dict[int, _Getter] = {}


def _getter_of(parent: GraphQLObjectType, field: GraphQLField) -> _Getter | None:
    """How a plan reads `field` of a `parent` object (a row, for an Event); None if it cannot."""
    getter = _GETTERS.get(id(field))
    if getter is None:
        definition = (field.extensions or {}).get(_BACKREF)
        python_name = definition.python_name if isinstance(definition, StrawberryField) else None
        getter = ROW_GETTERS.get((parent.name, python_name or "")) or _getter(field)
        if getter is None:
            return None
        _GETTERS[id(field)] = getter
    return getter


# A completer turns a field's value into its JSON value; an async one returns an awaitable.
Completer = Callable[[Any], Any]

_TEXT_SCALARS = (GraphQLString, GraphQLID)
# Completers that return a str value as it is: a compiled object inlines that case (see _compiled).
_TEXT_COMPLETERS: weakref.WeakSet[Completer] = weakref.WeakSet()


def _compiled(type_name: str, steps: list[tuple[str, "_Getter | None", Completer]]) -> Completer:
    """One Python function that completes an object of `type_name`: a dict display of its fields.

    What would be a call per field becomes, for an attribute of a text type, an expression that
    returns the str it holds (the completer is called only for anything else). The code depends
    on the shape alone (keys, attributes, which are text), so it is compiled once per shape.
    """
    namespace: dict[str, Any] = {}
    shape = []
    for index, (key, getter, complete) in enumerate(steps):
        if getter is None:  # __typename
            shape.append((key, None, False))
            continue
        namespace[f"c{index}"] = complete
        if getter.attribute is not None:
            value = f"source.{getter.attribute}"
        elif getter.item is not None:
            value = f"source[{getter.item!r}]"
        else:
            value, namespace[f"g{index}"] = f"g{index}(source)", getter.read
        shape.append((key, value, complete in _TEXT_COMPLETERS))
    exec(_object_code(type_name, tuple(shape)), namespace)
    return namespace["complete"]


@lru_cache(maxsize=1024)
def _object_code(type_name: str, shape: tuple[tuple[str, str | None, bool], ...]) -> CodeType:
    entries = []
    for index, (key, value, text) in enumerate(shape):
        if value is None:
            entries.append(f"{key!r}: {type_name!r}")
            continue
        if text:
            entries.append(f"{key!r}: (v if type(v := {value}) is str else c{index}(v))")
        else:
            entries.append(f"{key!r}: c{index}({value})")
    source = (
        "def complete(source):\n"
        "    if source is None:\n"
        "        return None\n"
        f"    return {{{', '.join(entries)}}}\n"
    )
    return compile(source, f"<plan of {type_name}>", "exec")


class _Null(Exception):
    """A non-null field completed to null: the ordinary executor reports it (with its path)."""


def _not_null(value: Any) -> Any:
    if value is None:
        raise _Null
    return value


class _Execution:
    """One run of a plan: the request's variables, and the completers built for them.

    Which fields an object selects depends on the variables (@skip/@include), so completers are
    built per run, once per (type, field nodes): every item of a list shares them. A completer is
    synchronous unless some field below it is read by an async resolver (totalCount, say).
    """

    def __init__(self, plan: Plan, variables: VariableValues, context: Context) -> None:
        self.plan = plan
        self.variables = variables
        self.context = context
        self._objects: dict[tuple[str, int], tuple[Completer, bool]] = {}
        self._uses_context = False  # some completer built holds this request's context

    def root_fields(self) -> dict[str, list[FieldDetails]]:
        """The root fields this run selects, by response key."""
        plan = self.plan
        kept = plan.kept.get("")
        if kept is None:
            kept = collect_fields(
                plan.schema, plan.fragments, self.variables, plan.root_type, plan.operation
            ).grouped_field_set
            if plan.fixed_selection:
                plan.kept[""] = kept
        return kept  # type: ignore[no-any-return]

    def root_completer(
        self, key: str, return_type: GraphQLOutputType, details: list[FieldDetails]
    ) -> tuple[Completer, bool]:
        """The completer of root field `key`: the plan's own when an earlier run could keep it."""
        kept = self.plan.kept.get(key)
        if kept is not None:
            return kept  # type: ignore[no-any-return]
        self._uses_context = False
        built = self.completer(return_type, details)
        if self.plan.fixed_selection and not self._uses_context:
            self.plan.kept[key] = built
        return built

    def completer(
        self, return_type: GraphQLOutputType, details: list[FieldDetails]
    ) -> tuple[Completer, bool]:
        """(complete, is_async) for values of `return_type` selected by `details`."""
        if isinstance(return_type, GraphQLNonNull):
            inner, is_async = self.completer(return_type.of_type, details)
            if is_async:

                async def complete_non_null(value: Any) -> Any:
                    return _not_null(await inner(value))

                return complete_non_null, True
            if inner in _TEXT_COMPLETERS:

                def complete_text_non_null(value: Any) -> Any:
                    return value if type(value) is str else _not_null(inner(value))

                _TEXT_COMPLETERS.add(complete_text_non_null)
                return complete_text_non_null, False
            return (lambda value: _not_null(inner(value))), False
        if isinstance(return_type, GraphQLList):
            item, is_async = self.completer(return_type.of_type, details)
            if is_async:

                async def complete_list(value: Any) -> Any:
                    # Together, as graphql-core does: the items' DataLoader loads batch.
                    return None if value is None else list(await asyncio.gather(*map(item, value)))

                return complete_list, True
            return (lambda value: None if value is None else [item(one) for one in value]), False
        if is_leaf_type(return_type):
            serialize = return_type.serialize  # type: ignore[union-attr]
            if return_type.name == "DateTime":  # type: ignore[union-attr]

                def complete_moment(value: Any) -> Any:
                    # Such a moment goes to the JSON encoder (db.json_text.json_bytes) as it is:
                    # it writes what the serializer, isoformat(), would.
                    if written_as_isoformat(value):
                        return value
                    return None if value is None else _not_null(serialize(value))

                return complete_moment, False
            if return_type in _TEXT_SCALARS:
                # Their serializers hand a str back unchanged: skip the call for the usual case.

                def complete_text(value: Any) -> Any:
                    if type(value) is str:
                        return value
                    return None if value is None else _not_null(serialize(value))

                _TEXT_COMPLETERS.add(complete_text)
                return complete_text, False
            return (lambda value: None if value is None else _not_null(serialize(value))), False
        assert isinstance(return_type, GraphQLObjectType)
        return self._object_completer(return_type, details)

    def _object_completer(
        self, object_type: GraphQLObjectType, details: list[FieldDetails]
    ) -> tuple[Completer, bool]:
        key = (object_type.name, id(details))
        built = self._objects.get(key)
        if built is not None:
            return built
        plan = self.plan
        fields = collect_subfields(
            plan.schema, plan.fragments, self.variables, plan.operation, object_type, details
        ).grouped_field_set
        steps: list[tuple[str, Callable[[Any], Any] | None, bool, Completer, bool]] = []
        for response_key, field_details in fields.items():
            name = field_details[0].node.name.value
            if name == "__typename":
                steps.append((response_key, None, False, lambda _: object_type.name, False))
                continue
            field = object_type.fields[name]
            by_context = CONTEXT_GETTERS.get((object_type.name, name))
            if by_context is not None:
                getter = _Getter(functools.partial(by_context, self.context), True)
                self._uses_context = True
            else:
                getter = _getter_of(object_type, field)  # type: ignore[assignment]  # compile checked it
            complete, complete_awaits = self.completer(field.type, field_details)
            steps.append((response_key, getter, getter.awaits, complete, complete_awaits))
        if not any(awaits or complete_awaits for _, _, awaits, _, complete_awaits in steps):
            built = (
                _compiled(object_type.name, [(key, get, complete) for key, get, _, complete, _ in steps]),
                False,
            )
        else:

            async def complete_object_async(source: Any) -> Any:
                if source is None:
                    return None
                result = {}
                for response_key, getter, awaits, complete, complete_awaits in steps:
                    value = getter.read(source) if getter is not None else None
                    if awaits:
                        value = await value
                    value = complete(value)
                    result[response_key] = await value if complete_awaits else value
                return result

            built = complete_object_async, True
        self._objects[key] = built
        return built

    async def complete(
        self, key: str, value: Any, return_type: GraphQLOutputType, details: list[FieldDetails]
    ) -> Any:
        complete, is_async = self.root_completer(key, return_type, details)
        completed = complete(value)
        return await completed if is_async else completed


# Per root field: how graphql-core's arguments become the resolver's, when that is only renaming
# (scalars, and input objects of scalars): Strawberry's convert_arguments resolves every argument's
# and input field's type annotation on each call, a sixth of a recordEvent's CPU. False: use it.
_ARGUMENT_BUILDERS: dict[int, Callable[[dict[str, Any]], dict[str, Any]] | bool] = {}


def _strawberry_arguments(
    field: GraphQLField, arguments: dict[str, Any], strawberry_schema: Any
) -> dict[str, Any]:
    """`arguments` as the field's Strawberry resolver gets them (Python names, input objects)."""
    build = _ARGUMENT_BUILDERS.get(id(field))
    if build is None:
        build = _ARGUMENT_BUILDERS[id(field)] = _argument_builder(field, strawberry_schema) or False
    if build:
        return build(arguments)  # type: ignore[operator]
    definition: StrawberryField = field.extensions[_BACKREF]
    return convert_arguments(  # type: ignore[no-any-return]
        arguments,
        definition.arguments,
        strawberry_schema.schema_converter.scalar_registry,
        strawberry_schema.config,
    )


def _argument_builder(
    field: GraphQLField, strawberry_schema: Any
) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """What convert_arguments does for this field, as plain renaming; None when it does more."""
    definition: StrawberryField = field.extensions[_BACKREF]
    converters: dict[str, tuple[str, Callable[[Any], Any]]] = {}
    for argument in definition.arguments:
        name = strawberry_schema.config.name_converter.from_argument(argument)
        convert = _value_converter(field.args[name].type)
        if convert is None:
            return None
        converters[name] = (argument.python_name, convert)

    def build(arguments: dict[str, Any]) -> dict[str, Any]:
        converted = {}
        for name, value in arguments.items():
            python_name, convert = converters[name]
            converted[python_name] = convert(value)
        return converted

    return build


def _same(value: Any) -> Any:
    return value


def _value_converter(input_type: Any) -> Callable[[Any], Any] | None:
    """How a coerced value of `input_type` becomes Strawberry's: itself for a scalar, a list of
    converted items, an instance for an input object whose fields are all scalars; else None."""
    if isinstance(input_type, GraphQLNonNull):
        return _value_converter(input_type.of_type)
    if isinstance(input_type, GraphQLList):
        item = _value_converter(input_type.of_type)
        if item is None:
            return None
        if item is _same:
            return _same
        return lambda value: None if value is None else [item(one) for one in value]
    if isinstance(input_type, GraphQLScalarType):  # not an enum: Strawberry maps those to Python's
        return _same
    if not isinstance(input_type, GraphQLInputObjectType):
        return None
    origin = input_type.extensions[_BACKREF].origin
    names = {}
    for name, input_field in input_type.fields.items():
        if _value_converter(input_field.type) is not _same:
            return None
        names[name] = input_field.extensions[_BACKREF].python_name
    return lambda value: None if value is None else origin(**{names[key]: one for key, one in value.items()})


async def execute_plan(
    plan: Plan, context: Context, variables: VariableValues, strawberry_schema: Any
) -> dict[str, Any] | None:
    """The operation's `data`, or None when the ordinary executor must answer instead.

    A mutation's root fields run one after another, as the specification requires; should one
    fail, what those before it did (and its error) is handed on in `context.planned_outcomes`.
    """
    execution = _Execution(plan, variables, context)
    root_type = plan.root_type
    fields = execution.root_fields()
    is_mutation = plan.operation.operation is OperationType.MUTATION
    outcomes: dict[str, PlannedOutcome] = {}
    data: dict[str, Any] = {}
    try:
        for key, details in fields.items():
            node = details[0].node
            name = node.name.value
            if name == "__typename":
                data[key] = root_type.name
                continue
            field = root_type.fields[name]
            arguments = get_argument_values(field, node, variables)
            handler = ROOT_HANDLERS[(plan.operation.operation, name)]
            if handler.strawberry_arguments:
                arguments = _strawberry_arguments(field, arguments, strawberry_schema)
            try:
                outcome = await handler.call(context, arguments, node, variables)
            except Exception as error:
                if is_mutation:
                    outcomes[key] = PlannedOutcome(error=error)
                raise
            if is_mutation:
                outcomes[key] = PlannedOutcome(value=outcome)
            data[key] = await execution.complete(key, handler.present(outcome), field.type, details)
    except Exception:
        context.planned_outcomes.update(outcomes)
        return None
    return data
