"""Exact Shapley values of a change, computed through the structure of the tree.

The game: players are the inputs that change between two states, and the value of a
coalition ``S`` is the target evaluated with the inputs in ``S`` at their ``after``
values and the others at their ``before`` values. The Shapley value of a player is
its average marginal contribution over coalition sizes; the values sum exactly to the
target's change.

Enumerating all ``2^p`` coalitions is hopeless beyond ~20 players, so each node's game
is built from its formula's structure:

- a *table* of coalition values over the node's own players when there are few
  (any formula: its operations apply coalition by coalition);
- otherwise a *profile*: for each coalition size ``s``, the average value and each
  player's average marginal contribution. Shapley values need only profiles. Profiles
  of sums combine exactly whatever the players (additivity; the sizes mix
  hypergeometrically), and profiles of products combine exactly when the factors
  have disjoint players (which part of a coalition falls in each factor is again
  hypergeometric, and the parts are independent given their sizes).

A node whose formula needs coalition values of a game only known by its profile
(e.g. ``log`` of a large sum, or a product of factors sharing players) raises
:class:`NoExactPathError`, and the caller samples permutations instead.

>>> from kpitree import Tree
>>> tree = Tree.from_formulas("y = a * b")
>>> before = {"a": np.array([1.0]), "b": np.array([10.0])}
>>> after = {"a": np.array([2.0]), "b": np.array([20.0])}
>>> builder = GameBuilder(tree, ["a", "b"], before, after, n_rows=1)
>>> shapley_values(builder.node("y"))  # y goes from 10 to 40: a and b share the 30
array([[15.],
       [15.]])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy.stats import hypergeom

from .syntax import Call, Expr, Name, Neg, Num, Power, Product, Sum
from .tree import Tree

__all__ = ["Game", "GameBuilder", "NoExactPathError", "shapley_values"]

#: the largest coalition table kept (values, all rows together)
MAX_TABLE_VALUES = 1 << 22
#: games of at most this many players are kept as tables when a profile would also do
SMALL_TABLE = 8

_FUNCTIONS = {
    "log": np.log,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "min": np.minimum,
    "max": np.maximum,
}


class NoExactPathError(Exception):
    """The structure does not allow an exact Shapley value within the table budget."""


@dataclass(frozen=True)
class Game:
    """A node's game: ``players`` (sorted global indices) and a table or a profile.

    ``table[mask]`` is the value of the coalition whose bit ``b`` stands for
    ``players[b]``; ``mean[s]`` the average value over coalitions of size ``s``;
    ``marg[b, s]`` the average marginal contribution of ``players[b]`` to coalitions
    of size ``s`` without it. Arrays carry the rows as their last axis.
    """

    players: tuple[int, ...]
    table: np.ndarray | None = None
    mean: np.ndarray | None = None
    marg: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.players)

    def profile(self) -> Game:
        """The same game as a profile."""
        if self.table is None:
            return self
        return Game(self.players, None, *_profile_of_table(self.table, self.size))


def shapley_values(game: Game) -> np.ndarray:
    """Shapley values of the game's players: shape ``(players, rows)``."""
    if game.size == 0:
        return np.zeros((0, _rows(game)))
    marg = game.profile().marg
    return marg.mean(axis=1)  # type: ignore[union-attr]


class GameBuilder:
    """Builds the game of any node of ``tree`` for the change ``before`` -> ``after``.

    ``players`` are the inputs that change; ``before``/``after`` hold the values of
    every input the target reads (arrays of ``n_rows``). A computed node given in
    ``before`` is read as an input (how a node's local game over its children is built).
    """

    def __init__(
        self,
        tree: Tree,
        players: Sequence[str],
        before: Mapping[str, np.ndarray],
        after: Mapping[str, np.ndarray],
        n_rows: int,
        max_table_values: int = MAX_TABLE_VALUES,
    ) -> None:
        self.tree = tree
        self.index = {name: i for i, name in enumerate(players)}
        self.before, self.after = before, after
        self.n_rows = n_rows
        self.max_table_rows = max(2, max_table_values // max(n_rows, 1))
        self.games: dict[str, Game] = {}

    def node(self, name: str) -> Game:
        game = self.games.get(name)
        if game is None:
            game = self.games[name] = self._node(name)
        return game

    def _node(self, name: str) -> Game:
        if name in self.index:
            table = np.stack([self.before[name], self.after[name]])
            return Game((self.index[name],), table=table)
        if name in self.before:  # an input that does not change
            return self._constant(self.before[name])
        return self.expr(self.tree.node(name).formula.root)  # type: ignore[union-attr]

    def _constant(self, value: np.ndarray | float) -> Game:
        return Game((), table=np.broadcast_to(value, (1, self.n_rows)).astype(float))

    def expr(self, expr: Expr) -> Game:
        if isinstance(expr, Num):
            return self._constant(float(expr.value))
        if isinstance(expr, Name):
            return self.node(expr.name)
        if isinstance(expr, Neg):
            return _scaled(self.expr(expr.operand), -1.0)
        if isinstance(expr, Sum):
            return self._sum([self.expr(t) for t in expr.terms], expr.signs)
        if isinstance(expr, Product):
            return self._product([self.expr(f) for f in expr.factors], expr.divide, expr)
        return self._elementwise(expr)

    def _fits(self, players: Sequence[int]) -> bool:
        """A table over ``players`` stays within the budget."""
        return len(players) <= 24 and 2 ** len(players) <= self.max_table_rows

    def _small(self, players: Sequence[int]) -> bool:
        """A table over ``players`` is cheaper than a profile."""
        return len(players) <= SMALL_TABLE and self._fits(players)

    def _sum(self, games: list[Game], signs: Sequence[int]) -> Game:
        union = _union(games)
        if all(g.table is not None for g in games) and self._small(union):
            table = sum(s * _lift_table(g, union) for g, s in zip(games, signs, strict=True))
            return Game(union, table=table)  # type: ignore[arg-type]
        profiles = [_scaled(g, float(s)).profile() for g, s in zip(games, signs, strict=True)]
        lifted = [_lift_profile(g, union) for g in profiles]
        return Game(union, None, sum(m for m, _ in lifted), sum(d for _, d in lifted))  # type: ignore[arg-type]

    def _product(self, games: list[Game], divide: Sequence[bool], expr: Product) -> Game:
        union = _union(games)
        tables = all(g.table is not None for g in games)
        disjoint = sum(g.size for g in games) == len(union)
        changing_divisor = any(d and g.size for g, d in zip(games, divide, strict=True))
        if tables and (self._small(union) or (self._fits(union) and not disjoint)):
            table = _lift_table(games[0], union) ** (-1.0 if divide[0] else 1.0)
            for game, divisor in zip(games[1:], divide[1:], strict=True):
                lifted = _lift_table(game, union)
                table = table / lifted if divisor else table * lifted
            return Game(union, table=table)
        if not disjoint or changing_divisor:
            message = "a product of factors sharing players, or a divisor that changes"
            raise NoExactPathError(message)
        result = games[0] if not divide[0] else _reciprocal(games[0])
        for game, divisor in zip(games[1:], divide[1:], strict=True):
            result = _disjoint_product(result, _reciprocal(game) if divisor else game)
        return result

    def _elementwise(self, expr: Expr) -> Game:
        names = _names(expr)
        games = {name: self.node(name) for name in names}
        union = _union(list(games.values()))
        if not (all(g.table is not None for g in games.values()) and self._fits(union)):
            raise NoExactPathError("a function of a game too large to tabulate")
        tables = {name: _lift_table(g, union) for name, g in games.items()}
        with np.errstate(all="ignore"):
            return Game(union, table=_evaluate(expr, tables))


# --- games: tables and profiles ------------------------------------------------------------


def _rows(game: Game) -> int:
    array = game.table if game.table is not None else game.mean
    return int(array.shape[-1])  # type: ignore[union-attr]


def _union(games: Sequence[Game]) -> tuple[int, ...]:
    return tuple(sorted(set().union(*(g.players for g in games))))


def _scaled(game: Game, factor: float) -> Game:
    if game.table is not None:
        return Game(game.players, table=factor * game.table)
    return Game(game.players, None, factor * game.mean, factor * game.marg)  # type: ignore[operator]


def _reciprocal(game: Game) -> Game:
    if game.size:
        raise NoExactPathError("a divisor that changes")
    return Game((), table=1.0 / game.table)  # type: ignore[operator]


@cache
def _submask_index(players: tuple[int, ...], union: tuple[int, ...]) -> np.ndarray:
    """For each coalition of ``union``, the index of its part in ``players``' table."""
    masks = np.arange(2 ** len(union))
    index = np.zeros_like(masks)
    position = {p: i for i, p in enumerate(union)}
    for bit, player in enumerate(players):
        index |= ((masks >> position[player]) & 1) << bit
    return index


def _lift_table(game: Game, union: tuple[int, ...]) -> np.ndarray:
    table = game.table
    if game.players == union:
        return table  # type: ignore[return-value]
    return table[_submask_index(game.players, union)]  # type: ignore[index]


@cache
def _popcounts(size: int) -> np.ndarray:
    masks = np.arange(2**size)
    counts = np.zeros_like(masks)
    for bit in range(size):
        counts += (masks >> bit) & 1
    return counts


def _profile_of_table(table: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    counts = _popcounts(size)
    mean = np.stack([table[counts == s].mean(axis=0) for s in range(size + 1)])
    marg = np.empty((size, max(size, 1), table.shape[-1]))
    for bit in range(size):
        without = np.flatnonzero(((np.arange(2**size) >> bit) & 1) == 0)
        gain = table[without | (1 << bit)] - table[without]
        for s in range(size):
            marg[bit, s] = gain[counts[without] == s].mean(axis=0)
    return mean, marg


@cache
def _mixing(total: int, part: int) -> np.ndarray:
    """``H[s, t]``: P(``t`` of a random size-``s`` subset of ``total`` fall in ``part``)."""
    if total == 0:
        return np.ones((1, 1))  # the empty coalition, surely
    s = np.arange(total + 1)[:, None]
    t = np.arange(part + 1)[None, :]
    return hypergeom.pmf(t, total, part, s)


def _lift_profile(game: Game, union: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The game's profile over the larger player set ``union`` (players outside: null)."""
    total, part = len(union), game.size
    mean = _mixing(total, part) @ game.mean.reshape(part + 1, -1)  # type: ignore[union-attr]
    marg = np.zeros((total, max(total, 1), mean.shape[-1]))
    if part:
        weights = _mixing(total - 1, part - 1)  # (total, part)
        rows = [union.index(p) for p in game.players]
        marg[rows] = np.einsum("st,btn->bsn", weights, game.marg[:, :part])  # type: ignore[index]
    return mean.reshape(total + 1, -1), marg


def _disjoint_product(left: Game, right: Game) -> Game:
    """The profile of ``left * right`` when their players are disjoint."""
    if left.size == 0 or right.size == 0:
        constant, other = (left, right) if left.size == 0 else (right, left)
        return _scaled_by_rows(other, constant.table[0])  # type: ignore[index]
    left, right = left.profile(), right.profile()
    union = tuple(sorted(left.players + right.players))
    total = len(union)
    mean = _mixed_product(_mixing(total, left.size), left.mean, right.mean)  # type: ignore[arg-type]
    marg = np.zeros((total, total, mean.shape[-1]))
    for game, other in ((left, right), (right, left)):
        weights = _mixing(total - 1, game.size - 1)
        for b, player in enumerate(game.players):
            marg[union.index(player)] = _mixed_product(weights, game.marg[b], other.mean)  # type: ignore[index]
    return Game(union, None, mean, marg)


def _mixed_product(weights: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``out[s] = sum_t weights[s, t] * first[t] * second[s - t]`` (terms in range only)."""
    sizes, parts = weights.shape
    out = np.zeros((sizes, first.shape[-1]))
    for t in range(min(parts, len(first))):
        span = slice(t, min(sizes, t + len(second)))
        out[span] += weights[span, t, None] * first[t] * second[: span.stop - t]
    return out


def _scaled_by_rows(game: Game, factor: np.ndarray) -> Game:
    if game.table is not None:
        return Game(game.players, table=game.table * factor)
    return Game(game.players, None, game.mean * factor, game.marg * factor)  # type: ignore[operator]


def _names(expr: Expr) -> list[str]:
    if isinstance(expr, Name):
        return [expr.name]
    if isinstance(expr, Num):
        return []
    children: tuple[Expr, ...]
    if isinstance(expr, Neg):
        children = (expr.operand,)
    elif isinstance(expr, Sum):
        children = expr.terms
    elif isinstance(expr, Product):
        children = expr.factors
    elif isinstance(expr, Power):
        children = (expr.base, expr.exponent)
    else:
        children = expr.args
    return list(dict.fromkeys(n for child in children for n in _names(child)))


def _evaluate(expr: Expr, tables: Mapping[str, np.ndarray]) -> np.ndarray:
    """``expr`` coalition by coalition (numpy on the tables; no code is generated)."""
    if isinstance(expr, Num):
        return np.asarray(float(expr.value))
    if isinstance(expr, Name):
        return tables[expr.name]
    if isinstance(expr, Neg):
        return -_evaluate(expr.operand, tables)
    if isinstance(expr, Sum):
        parts = [s * _evaluate(t, tables) for t, s in zip(expr.terms, expr.signs, strict=True)]
        return sum(parts[1:], parts[0])
    if isinstance(expr, Product):
        value = np.asarray(1.0)
        for factor, divide in zip(expr.factors, expr.divide, strict=True):
            part = _evaluate(factor, tables)
            value = value / part if divide else value * part
        return value
    if isinstance(expr, Power):
        return np.power(_evaluate(expr.base, tables), _evaluate(expr.exponent, tables))
    assert isinstance(expr, Call)
    args = [_evaluate(a, tables) for a in expr.args]
    function = _FUNCTIONS[expr.func]
    if expr.func in ("min", "max"):
        result = args[0]
        for arg in args[1:]:
            result = function(result, arg)
        return result
    return function(*args)
