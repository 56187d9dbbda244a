"""Errors and warnings raised by kpitree, grouped by the stage that raises them.

Every error derives from :class:`KpiTreeError` *and* from the builtin exception a
user would already catch (``ValueError`` or ``KeyError``), and carries structured
fields (``node``, ``cycle``, ``column``, ``rows``...) so that tools can react to it
without parsing the message.

>>> from kpitree.errors import CycleError, KpiTreeError
>>> err = CycleError(["a", "b", "a"])
>>> isinstance(err, KpiTreeError) and isinstance(err, ValueError)
True
>>> err.cycle
['a', 'b', 'a']
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

__all__ = [
    "CycleError",
    "DataError",
    "DataWarning",
    "FitError",
    "FitWarning",
    "FormulaError",
    "KpiTreeError",
    "KpiTreeWarning",
    "ModelFileError",
    "OptionError",
    "ScenarioError",
    "SpecError",
    "UnknownNodeError",
]


class KpiTreeError(Exception):
    """Root of every error kpitree raises on purpose."""


class KpiTreeWarning(UserWarning):
    """Root of every warning kpitree emits."""


# --- declaring a tree -------------------------------------------------------------


class SpecError(KpiTreeError, ValueError):
    """The declared tree is not valid (a node defined twice, bad metadata...).

    ``node`` names the offending node when there is one.
    """

    def __init__(self, message: str, *, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node


class FormulaError(SpecError):
    """Formula text outside the grammar, too long, too deep, or meaningless.

    ``text`` is the formula, ``position`` the 0-based character offset of the
    problem in it (``None`` when the whole formula is at fault), ``node`` the node
    it defines when known.
    """

    def __init__(
        self,
        message: str,
        *,
        text: str = "",
        position: int | None = None,
        node: str | None = None,
    ) -> None:
        self.reason = message
        self.text = text
        self.position = position
        super().__init__(self._render(message, text, position, node), node=node)

    @staticmethod
    def _render(message: str, text: str, position: int | None, node: str | None) -> str:
        where = f"in the formula of {node!r}: " if node else ""
        if position is None or not text or len(text) > 200:
            suffix = f" (at character {position})" if position is not None else ""
            return f"{where}{message}{suffix}"
        caret = " " * position + "^"
        return f"{where}{message} (at character {position})\n    {text}\n    {caret}"

    def with_node(self, node: str) -> FormulaError:
        """The same error, naming the node whose formula it is."""
        return FormulaError(self.reason, text=self.text, position=self.position, node=node)


class CycleError(SpecError):
    """The formulas refer to each other in a loop.

    ``cycle`` lists it closed, in dependency order: each node's formula uses the next.
    """

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        path = " -> ".join(self.cycle)
        message = f"the tree has a cycle (each node's formula uses the next): {path}"
        super().__init__(message, node=self.cycle[0])


class UnknownNodeError(KpiTreeError, KeyError):
    """A name that is not a node of the tree; ``node`` is that name."""

    def __init__(self, node: str, *, known: Sequence[str] = (), context: str = "") -> None:
        self.node = node
        hint = _closest(node, known)
        text = f"unknown node {node!r}"
        if context:
            text += f" {context}"
        if hint:
            text += f"; did you mean {hint!r}?"
        self.message = text
        super().__init__(text)

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.message


class ModelFileError(SpecError):
    """A model file that cannot be read; ``path`` names the file, ``node`` the node."""

    def __init__(self, message: str, *, path: str, node: str | None = None) -> None:
        self.path = path
        where = f"{path}: " + (f"node {node!r}: " if node else "")
        super().__init__(where + message, node=node)


# --- evaluating --------------------------------------------------------------------


class DataError(KpiTreeError, ValueError):
    """Input data that cannot be evaluated honestly.

    ``node`` is the lever or node at fault, ``column`` the input column (the same
    name for a lever), ``rows`` the first offending row labels, ``reason`` a short
    phrase such as ``"missing"``, ``"nan"``, ``"out of bounds"`` or ``"not finite"``.
    """

    def __init__(
        self,
        message: str,
        *,
        node: str | None = None,
        column: str | None = None,
        rows: Sequence[Hashable] = (),
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.node = node
        self.column = column
        self.rows = list(rows)
        self.reason = reason


class OptionError(KpiTreeError, ValueError):
    """An argument outside the values a function accepts; ``option`` names it."""

    def __init__(self, message: str, *, option: str) -> None:
        super().__init__(message)
        self.option = option


class ScenarioError(KpiTreeError, ValueError):
    """A what-if change that cannot be read or applied; ``node`` names its node."""

    def __init__(self, message: str, *, node: str | None = None) -> None:
        super().__init__(f"change of {node!r}: {message}" if node else message)
        self.node = node


class FitError(KpiTreeError, ValueError):
    """A link that cannot be fitted; ``link`` names its node, ``column`` the predictor."""

    def __init__(self, message: str, *, link: str | None = None, column: str | None = None) -> None:
        super().__init__(message)
        self.link = link
        self.column = column


class FitWarning(KpiTreeWarning):
    """A link was fitted, but on weak ground (few rows, near-collinear predictors)."""


class DataWarning(KpiTreeWarning):
    """The data problem a :class:`DataError` would describe, under ``errors="warn"``."""


def warn(message: str, category: type[Warning] = KpiTreeWarning) -> None:
    """Emit a warning attributed to the first caller outside kpitree."""
    import os
    import sys
    import warnings

    package = os.path.dirname(os.path.abspath(__file__))
    level, frame = 2, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        level += 1
        frame = frame.f_back  # type: ignore[assignment]
    warnings.warn(message, category, stacklevel=level)


def _closest(name: str, known: Sequence[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return matches[0] if matches else None
