"""The declared model: nodes, their formulas and metadata, and the DAG they form.

A :class:`Tree` is an immutable value. Every name used in a formula and not defined
by one is a *lever* (an input). Methods that change a tree return a new tree.

>>> tree = Tree.from_formulas('''
...     leads = request_page_visits * request_rate
...     request_page_visits = sns + search + ads
... ''', owners={"leads": "Marketing"}, bounds={"request_rate": (0, 1)})
>>> tree.levers
('request_rate', 'sns', 'search', 'ads')
>>> tree.children("leads")
('request_page_visits', 'request_rate')
>>> tree.expand("leads")
request_rate*(ads + search + sns)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import networkx as nx
import sympy

from .errors import CycleError, SpecError, UnknownNodeError
from .links import Link, make_link
from .node import Node, check_name
from .spec import parse_one, parse_spec

if TYPE_CHECKING:
    import pandas as pd

    from .compile import CompiledTree

__all__ = ["Node", "Tree"]

_METADATA = ("owner", "unit", "bounds", "stage", "description", "baseline")


class Tree:
    """A validated, immutable KPI tree.

    Build one with :meth:`Tree.from_formulas` or :func:`kpitree.load`; the
    constructor takes :class:`Node` objects. Construction validates the tree: names,
    metadata, and that the formulas form a DAG.
    """

    _nodes: dict[str, Node]
    _parameters: dict[str, float]
    _name: str | None
    _users: dict[str, list[str]]
    _order: tuple[str, ...]
    _cache: dict[Any, Any]

    def __init__(
        self,
        nodes: Iterable[Node],
        *,
        name: str | None = None,
        parameters: Mapping[str, float] | None = None,
    ) -> None:
        declared: dict[str, Node] = {}
        for node in nodes:
            if node.name in declared:
                raise SpecError(f"node {node.name!r} is declared twice", node=node.name)
            declared[node.name] = node
        values = _as_parameters(parameters, declared)
        users: dict[str, list[str]] = {}
        for node in list(declared.values()):
            for used in _dependencies(node, values):
                if used == node.name:
                    raise _self_reference(node)
                if used not in declared:
                    declared[used] = Node(used)
                users.setdefault(used, []).append(node.name)
        fields = {
            "_nodes": declared,
            "_parameters": values,
            "_name": name,
            "_users": users,
            "_order": _topological_order(declared, values),
            "_cache": {},  # compiled evaluators, keyed by what they compute
        }
        for key, value in fields.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a Tree is immutable; use with_formula/with_metadata ({name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a Tree is immutable ({name!r})")

    # --- construction -------------------------------------------------------------

    @classmethod
    def from_formulas(
        cls,
        spec: str | Mapping[str, str],
        *,
        owners: Mapping[str, str] | None = None,
        units: Mapping[str, str] | None = None,
        bounds: Mapping[str, Sequence[float | None]] | None = None,
        stages: Mapping[str, str] | None = None,
        descriptions: Mapping[str, str] | None = None,
        baselines: Mapping[str, float] | None = None,
        name: str | None = None,
    ) -> Tree:
        """Declare a tree from ``name = formula`` lines or a mapping name -> formula.

        Text may hold ``#`` comments and blank lines. Metadata mappings are keyed by
        node name; ``bounds`` values are ``(low, high)`` with ``None`` for an open
        side.

        >>> tree = Tree.from_formulas({"revenue": "customers * arpa"},
        ...                           baselines={"customers": 120, "arpa": 5000})
        >>> tree.levers, tree.node("arpa").baseline
        (('customers', 'arpa'), 5000.0)
        """
        nodes = [
            Node(n, link=s) if isinstance(s, Link) else Node(n, formula=s)
            for n, s in parse_spec(spec).items()
        ]
        metadata = {
            "owner": owners,
            "unit": units,
            "bounds": bounds,
            "stage": stages,
            "description": descriptions,
            "baseline": baselines,
        }
        if not any(metadata.values()):
            return cls(nodes, name=name)
        return cls(nodes, name=name)._with_fields(metadata)

    # --- queries ------------------------------------------------------------------

    @property
    def name(self) -> str | None:
        """The model's name, if it has one."""
        return self._name

    @cached_property
    def nodes(self) -> tuple[str, ...]:
        """Every node, in declaration order; levers not declared follow, by first use."""
        return tuple(self._nodes)

    @cached_property
    def levers(self) -> tuple[str, ...]:
        """The inputs: nodes neither a formula nor a regression link defines."""
        return tuple(n for n, node in self._nodes.items() if node.is_lever)

    @cached_property
    def computed(self) -> tuple[str, ...]:
        """The nodes evaluation computes: identities and fitted links."""
        return tuple(n for n, node in self._nodes.items() if not node.is_input)

    @cached_property
    def outputs(self) -> tuple[str, ...]:
        """The nodes no formula uses: the top KPIs."""
        return tuple(n for n in self._nodes if n not in self._users)

    @property
    def top(self) -> str:
        """The single top KPI; a ``SpecError`` when the tree has several.

        A lever nothing reads (the source of a lagged input in a fitted tree, say) is
        not a KPI: it is not counted when a computed node is also at the top.
        """
        tops = [n for n in self.outputs if not self._nodes[n].is_input] or list(self.outputs)
        if len(tops) != 1:
            raise SpecError(f"the tree has {len(tops)} top nodes: {tops}")
        return tops[0]

    @property
    def order(self) -> tuple[str, ...]:
        """Every node in a topological order: each node after all its inputs."""
        return self._order

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The DAG as a frozen ``networkx.DiGraph``, edges child -> parent."""
        return nx.freeze(_build_graph(self._nodes, self._parameters))

    def node(self, name: str) -> Node:
        """The :class:`Node` (formula and metadata) called ``name``."""
        try:
            return self._nodes[name]
        except (KeyError, TypeError):
            raise UnknownNodeError(str(name), known=self.nodes) from None

    def owner(self, name: str) -> str | None:
        """The team that owns ``name``."""
        return self.node(name).owner

    def formula(self, name: str) -> sympy.Expr:
        """The formula of ``name`` as a sympy expression (a lever's own symbol)."""
        node = self.node(name)
        if node.formula is None:
            return self.symbols[name]
        return node.formula.to_sympy(self.symbols)

    @cached_property
    def symbols(self) -> Mapping[str, sympy.Symbol]:
        """One explicitly created ``sympy.Symbol`` per node (``E`` is never Euler's number)."""
        return {name: sympy.Symbol(name) for name in self._nodes}

    def children(self, name: str) -> tuple[str, ...]:
        """The nodes ``name`` is computed from: its formula's inputs or its link's predictors."""
        return _dependencies(self.node(name), self._parameters)

    @property
    def parameters(self) -> Mapping[str, float]:
        """Named coefficients of fitted links and their values (estimates)."""
        return MappingProxyType(self._parameters)

    @cached_property
    def links(self) -> tuple[str, ...]:
        """The nodes explained by a regression link, fitted or not."""
        return tuple(n for n, node in self._nodes.items() if node.link is not None)

    def reads(self, name: str) -> tuple[str, ...]:
        """What evaluating ``name`` reads: its formula's names, parameters included."""
        if name in self._parameters:
            return ()
        formula = self.node(name).formula
        return formula.names if formula else ()

    def parents(self, name: str) -> tuple[str, ...]:
        """The nodes whose formulas use ``name``."""
        self.node(name)
        return tuple(sorted(set(self._users.get(name, ())), key=self._position))

    def upstream(self, name: str) -> tuple[str, ...]:
        """Every node ``name`` depends on, directly or not, in topological order."""
        self.node(name)
        return self._reachable(name, self.children)

    def downstream(self, name: str) -> tuple[str, ...]:
        """Every node that depends on ``name``, in topological order."""
        self.node(name)
        return self._reachable(name, lambda node: self._users.get(node, ()))

    def expand(self, name: str) -> sympy.Expr:
        """The formula of ``name`` written in levers only (substituted level by level)."""
        needed = (*self.upstream(name), name)
        expanded: dict[sympy.Symbol, sympy.Expr] = {}
        for node in needed:
            if not self._nodes[node].is_input:
                expanded[self.symbols[node]] = self.formula(node).xreplace(expanded)
        return expanded.get(self.symbols[name], self.symbols[name])

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tree):
            return NotImplemented
        return (
            self._name == other._name
            and list(self._nodes.values()) == list(other._nodes.values())
            and list(self._parameters.items()) == list(other._parameters.items())
        )

    def __hash__(self) -> int:
        return hash((self._name, tuple(self._nodes.values()), tuple(self._parameters.items())))

    # --- derived trees --------------------------------------------------------------

    def with_formula(self, name: str, formula: str) -> Tree:
        """A new tree where ``name`` (new, a lever or computed) is defined by ``formula``."""
        parsed = parse_one(name, formula)
        old = self._nodes.get(name, Node(name))
        nodes = dict(self._nodes)
        nodes[name] = replace(old, formula=parsed, baseline=None)
        return self._derive(_drop_unused_bare_levers(nodes, self))

    def with_link(
        self,
        name: str,
        predictors: Sequence[str],
        *,
        transform: str = "linear",
        lags: Mapping[str, int] | None = None,
    ) -> Tree:
        """A new tree where ``name`` is explained by a regression link on ``predictors``.

        ``transform`` is ``"linear"``, ``"log"``, ``"logit"`` or ``"log-log"``;
        ``lags`` maps a predictor to the number of periods its effect takes.

        >>> tree = Tree.from_formulas("new_customers = sqls * win_rate")
        >>> linked = tree.with_link("win_rate", ["share_3plus"], transform="logit")
        >>> linked.node("win_rate").link.text("win_rate")
        'logit(win_rate) ~ share_3plus'
        """
        old = self._nodes.get(name, Node(name))
        if old.formula is not None and old.link is None:
            message = f"{name!r} is defined by a formula; a link cannot explain it"
            raise SpecError(message, node=name)
        link = make_link(predictors, transform=transform, lags=lags)
        nodes = dict(self._nodes)
        nodes[name] = replace(old, link=link, formula=None, baseline=None)
        return self._derive(nodes.values())

    def with_metadata(self, name: str, **fields: Any) -> Tree:
        """A new tree with metadata fields of ``name`` replaced (``owner="Marketing"``...)."""
        unknown = set(fields) - set(_METADATA)
        if unknown:
            raise SpecError(f"unknown metadata field(s) {sorted(unknown)}", node=name)
        return self._with_fields({key: {name: value} for key, value in fields.items()})

    def with_baselines(self, values: Mapping[str, float]) -> Tree:
        """A new tree with the baseline (today's actual) of levers replaced."""
        return self._with_fields({"baseline": values})

    def _derive(self, nodes: Iterable[Node]) -> Tree:
        """A tree with other nodes and this tree's name and parameters."""
        return Tree(nodes, name=self._name, parameters=self._parameters)

    def _with_fields(self, metadata: Mapping[str, Mapping[str, Any] | None]) -> Tree:
        nodes = dict(self._nodes)
        for key, values in metadata.items():
            for name, value in (values or {}).items():
                node = nodes.get(name)
                if node is None:
                    raise UnknownNodeError(str(name), known=self.nodes, context=f"in {key}s")
                if key == "baseline" and not node.is_input and value is not None:
                    message = f"baseline given for {name!r}, which is computed by a formula"
                    raise SpecError(message, node=name)
                nodes[name] = replace(node, **{key: value})
        return self._derive(nodes.values())

    # --- evaluation and files (delegating) -------------------------------------------

    def compile(self, nodes: Sequence[str] | None = None) -> CompiledTree:
        """The compiled numpy evaluator for ``nodes`` (all by default), built once."""
        from .compile import compile_tree

        return compile_tree(self, nodes)

    def evaluate(self, inputs: Any = None, **kwargs: Any) -> pd.DataFrame:
        """Same as :func:`kpitree.evaluate` on this tree."""
        from .evaluate import evaluate

        return evaluate(self, inputs, **kwargs)

    def save(self, path: Any) -> None:
        """Same as :func:`kpitree.save`: write a YAML or JSON model file."""
        from .io import save

        save(self, path)

    def to_frame(self) -> pd.DataFrame:
        """One row per node: kind, formula and metadata (the table behind the reprs)."""
        from .display import tree_frame

        return tree_frame(self)

    def __repr__(self) -> str:
        from .display import tree_repr

        return tree_repr(self)

    def _repr_html_(self) -> str:
        from .display import tree_html

        return tree_html(self)

    # --- internals ----------------------------------------------------------------------

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self._nodes)}

    @cached_property
    def _topo_positions(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self._order)}

    def _reachable(self, name: str, step: Callable[[str], Iterable[str]]) -> tuple[str, ...]:
        seen: set[str] = set()
        stack = list(step(name))
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(step(node))
        return tuple(sorted(seen, key=self._topo_position))

    def _position(self, name: str) -> int:
        return self._positions[name]

    def _topo_position(self, name: str) -> int:
        return self._topo_positions[name]


# --- helpers ----------------------------------------------------------------------------


def _self_reference(node: Node) -> CycleError:
    error = CycleError([node.name, node.name])
    error.args = (f"node {node.name!r} is defined in terms of itself",)
    return error


def _dependencies(node: Node, parameters: Container[str]) -> tuple[str, ...]:
    """The nodes ``node`` depends on: its formula's names, or its link's predictors."""
    if node.formula is not None:
        return tuple(name for name in node.formula.names if name not in parameters)
    if node.link is not None:
        return node.link.predictors
    return ()


def _as_parameters(values: Mapping[str, float] | None, nodes: Container[str]) -> dict[str, float]:
    parameters: dict[str, float] = {}
    for name, value in (values or {}).items():
        check_name(name)
        if name in nodes:
            raise SpecError(f"{name!r} is both a node and a parameter", node=name)
        number = float(value)
        if not math.isfinite(number):
            raise SpecError(f"parameter {name!r} is not finite: {value!r}", node=name)
        parameters[name] = number
    return parameters


def _build_graph(nodes: Mapping[str, Node], parameters: Container[str] = ()) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(
        (child, name) for name, node in nodes.items() for child in _dependencies(node, parameters)
    )
    return graph


def post_order(
    starts: Iterable[str],
    children: Callable[[str], Iterable[str]],
    *,
    stop: Container[str] = frozenset(),
) -> list[str]:
    """Depth-first post-order from ``starts``: every node after its children.

    Evaluating in this order finishes one branch before starting the next, so far fewer
    intermediates are alive at once than in a level-by-level order. Nodes in ``stop``
    are visited but not descended into. Raises ``_CycleError`` on a loop.
    """
    order: list[str] = []
    state: dict[str, bool] = {}  # False while on the path, True when done
    for start in starts:
        if start in state:
            continue
        state[start] = False
        stack = [(start, iter(() if start in stop else children(start)))]
        while stack:
            node, pending = stack[-1]
            for child in pending:
                done = state.get(child)
                if done is None:
                    state[child] = False
                    stack.append((child, iter(() if child in stop else children(child))))
                    break
                if not done:
                    raise _CycleError
            else:
                stack.pop()
                state[node] = True
                order.append(node)
    return order


class _CycleError(Exception):
    pass


def _topological_order(nodes: Mapping[str, Node], parameters: Container[str]) -> tuple[str, ...]:
    def children(name: str) -> tuple[str, ...]:
        return _dependencies(nodes[name], parameters)

    try:
        return tuple(post_order(nodes, children))
    except _CycleError:
        graph = _build_graph(nodes, parameters)
        feeds = [edge[0] for edge in nx.find_cycle(graph)]  # edges run input -> user
        uses = feeds[::-1]
        declared = {name: i for i, name in enumerate(graph)}
        first = min(range(len(uses)), key=lambda i: declared[uses[i]])
        uses = uses[first:] + uses[:first]  # start at the node declared first
        raise CycleError([*uses, uses[0]]) from None


def _drop_unused_bare_levers(nodes: dict[str, Node], tree: Tree) -> list[Node]:
    """Levers without metadata that only the replaced formula used disappear with it."""
    used = {n for node in nodes.values() for n in _dependencies(node, tree.parameters)}
    orphans = {
        name
        for name, node in nodes.items()
        if node == Node(name) and name not in used and tree.parents(name)
    }
    return [node for name, node in nodes.items() if name not in orphans]
