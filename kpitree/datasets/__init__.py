"""Bundled example data: a B2B company's KPI tree and a simulator of its history.

>>> from kpitree import datasets
>>> tree = datasets.load_b2b()
>>> tree.top, len(tree.nodes), len(tree.links)
('revenue', 33, 6)
"""

from .b2b import B2B_MODEL, B2B_SLOPES, b2b_truth, load_b2b, simulate_b2b

__all__ = ["B2B_MODEL", "B2B_SLOPES", "b2b_truth", "load_b2b", "simulate_b2b"]
