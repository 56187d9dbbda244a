"""Drawing with matplotlib: the KPI tree and the charts of the analyses' results.

- :mod:`kpitree.plot.diagram`: :func:`tree` draws a tree top-down, one colour per owner
  team, from the pure :func:`layered_layout`, :func:`team_colors` and :func:`format_value`;
- :mod:`kpitree.plot.charts`: one chart per result of :mod:`kpitree.results`, which
  ``result.plot()`` calls: :func:`tornado`, :func:`elasticities`, :func:`indices` (Sobol
  and Morris), :func:`distribution` (Monte Carlo), :func:`team_ranking`, :func:`funnel`
  (back-calculated targets) and :func:`allocation` (cost per team of a plan), coloured by
  team with the same :func:`team_colors`.

Every function returns the matplotlib ``Axes`` it drew on (a new figure without ``ax``).
"""

from .changes import bottleneck_path, bottleneck_tree, waterfall
from .charts import (
    allocation,
    distribution,
    elasticities,
    funnel,
    indices,
    team_ranking,
    tornado,
)
from .diagram import NO_OWNER, NO_OWNER_COLOR, format_value, layered_layout, team_colors, tree

__all__ = [
    "NO_OWNER",
    "NO_OWNER_COLOR",
    "allocation",
    "bottleneck_path",
    "bottleneck_tree",
    "distribution",
    "elasticities",
    "format_value",
    "funnel",
    "indices",
    "layered_layout",
    "team_colors",
    "team_ranking",
    "tornado",
    "tree",
    "waterfall",
]
