"""The ``kpitree`` command.

``kpitree demo`` walks through the bundled B2B company; ``validate``, ``evaluate``,
``what-if`` and ``plot`` work on any model file. Errors print one clear line and
exit with status 2 (bad input) — never a traceback.

>>> main(["validate", str(datasets.B2B_MODEL)])  # doctest: +ELLIPSIS
Tree 'B2B company': 33 nodes (12 formulas, 6 links, 15 levers); top: revenue
...
0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from . import datasets
from .errors import KpiTreeError, ScenarioError
from .evaluate import evaluate
from .fitting import fit
from .io import load
from .links import with_lags
from .scenario import what_if
from .tree import Tree

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["main"]

DEMO_CHANGES = {"win_rate": "+10%", "ad_visits": "+5000", "churn_rate": "-10%"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KpiTreeError as err:
        print(f"kpitree: error: {err}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kpitree", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(required=True, metavar="command")

    demo = commands.add_parser("demo", help="walk through the bundled B2B company")
    demo.add_argument("--out", type=Path, default=Path("kpitree-demo"), help="output folder")
    demo.set_defaults(run=_demo)

    validate = commands.add_parser("validate", help="check a model file and print its tree")
    validate.add_argument("model", type=Path)
    validate.set_defaults(run=_validate)

    run = commands.add_parser("evaluate", help="evaluate a model on a CSV of lever values")
    run.add_argument("model", type=Path)
    run.add_argument("--inputs", type=Path, help="CSV with a column per lever (default: baselines)")
    run.add_argument("--nodes", help="comma-separated nodes to output (default: all)")
    run.add_argument("--output", type=Path, help="CSV to write (default: print)")
    run.set_defaults(run=_evaluate)

    scenario = commands.add_parser("what-if", help="compare a scenario with the baselines")
    scenario.add_argument("model", type=Path)
    scenario.add_argument("changes", nargs="+", help="changes like win_rate=+10%% ad_visits=5000")
    scenario.set_defaults(run=_what_if)

    draw = commands.add_parser("plot", help="draw the tree to an image file")
    draw.add_argument("model", type=Path)
    draw.add_argument("--output", type=Path, default=Path("tree.png"))
    draw.set_defaults(run=_plot)
    return parser


def _demo(args: argparse.Namespace) -> int:
    tree = datasets.load_b2b()
    print(f"Loaded and validated the bundled model: {datasets.B2B_MODEL.name}\n")
    print(tree, end="\n\n")
    baseline = evaluate(tree).iloc[0]
    print("Baseline (this month's actuals):")
    print(_format_values(baseline[list(tree.computed)]), end="\n\n")
    print(f"What if {', '.join(f'{k} {v}' for k, v in DEMO_CHANGES.items())}?")
    print(_format_table(what_if(tree, None, DEMO_CHANGES).loc[list(tree.computed)]), end="\n\n")
    _demo_targets(tree, baseline["revenue"])
    fitted, history = _demo_fit(tree)
    args.out.mkdir(parents=True, exist_ok=True)
    image = _save_tree_plot(tree, args.out / "tree.png", baseline)
    print(f"Saved the tree, coloured by team, to {image}\n")
    _demo_sensitivity(fitted, history, args.out)
    _demo_changes(fitted, history, args.out)
    return 0


def _demo_fit(tree: Tree) -> tuple[Tree, pd.DataFrame]:
    """Fit the six links on the simulated history; print estimates next to the truth."""
    history = datasets.simulate_b2b()
    fitted = fit(tree, history)
    table = fitted.params.set_index("parameter")[["estimate", "std_err", "ci_low", "ci_high"]]
    table.insert(0, "truth", pd.Series(datasets.b2b_truth()))
    months = f"{history.index[0]} to {history.index[-1]}"
    print(f"Links fitted on {len(history)} months of history ({months}), HAC standard errors:")
    print(table.to_string(float_format="{:.4f}".format), end="\n\n")
    return fitted, history


def _demo_sensitivity(fitted: Tree, history: pd.DataFrame, out: Path) -> None:
    """Which team's levers move revenue most: the ranking, its basis, the tornado chart."""
    from .sensitivity import tornado
    from .teams import rank_teams

    last = with_lags(fitted, history).iloc[-1]  # nps_lag3: NPS three months earlier
    ranking = rank_teams(fitted, "revenue", at=last, ranges=history, progress=False)
    print(f"Which team moves revenue most? (at {last.name}, levers over their own history)")
    print(ranking, end="\n\n")
    chart = tornado(fitted, "revenue", at=last, ranges=history)
    _headless()
    from . import plot

    path = _save_figure(chart.plot(colors=plot.team_colors(fitted)), out / "tornado.png")
    print(f"Saved the tornado chart of revenue to {path}")


def _validate(args: argparse.Namespace) -> int:
    print(load(args.model))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    tree = load(args.model)
    inputs = pd.read_csv(args.inputs) if args.inputs else None
    nodes = args.nodes.split(",") if args.nodes else None
    result = evaluate(tree, inputs, nodes=nodes)
    if args.output:
        result.to_csv(args.output)
        print(f"wrote {len(result)} rows to {args.output}")
    else:
        print(result.to_string())
    return 0


def _what_if(args: argparse.Namespace) -> int:
    tree = load(args.model)
    changes = {}
    for item in args.changes:
        name, sep, change = item.partition("=")
        if not sep:
            raise ScenarioError(f"change {item!r} is not written node=change")
        changes[name.strip()] = change.strip()
    print(_format_table(what_if(tree, None, changes)))
    return 0


def _plot(args: argparse.Namespace) -> int:
    tree = load(args.model)
    has_baselines = all(tree.node(n).baseline is not None for n in tree.levers)
    values = evaluate(tree).iloc[0] if has_baselines else None
    print(f"saved {_save_tree_plot(tree, args.output, values)}")
    return 0


def _save_tree_plot(tree: Tree, path: Path, values: pd.Series | None) -> Path:
    from . import plot

    _headless()
    return _save_figure(plot.tree(tree, values, title=tree.name), path)


def _demo_targets(tree: Tree, revenue: float) -> None:
    """Each team's volume targets for +20% revenue, worked backwards with rates held."""
    from .backcasting import backcast

    goal = 1.2 * revenue
    found = backcast(tree, "revenue", goal, hold=["deal_size", "arpa"])
    table = found.to_frame()
    table = table[~table["held"]][["owner", "baseline", "required", "ratio"]]
    print(f"Targets for +20% revenue ({goal:,.0f}), worked backwards; rates and prices held:")
    print(table.to_string(float_format=lambda x: f"{x:,.4g}" if abs(x) < 1e4 else f"{x:,.0f}"))
    print()


def _demo_changes(fitted: Tree, history: pd.DataFrame, out: Path) -> None:
    """Why revenue moved last month (per team), and where the funnel misses the plan."""
    from .attribution import attribute
    from .bottlenecks import bottlenecks

    lagged = with_lags(fitted, history)
    before, after = lagged.iloc[-2], lagged.iloc[-1]
    change = attribute(fitted, before, after, target="revenue")
    print(f"\nWhy did revenue move from {before.name} to {after.name}? (exact Shapley split)")
    teams = change.by_team().iloc[0].sort_values(key=abs, ascending=False)
    print(_format_values(pd.concat([teams, pd.Series({"total": change.total[0]})])))
    _headless()
    path = _save_figure(change.plot(by="team"), out / "waterfall.png")
    print(f"Saved the waterfall of the change to {path}")
    plan = {name: fitted.node(name).baseline for name in fitted.levers}
    found = bottlenecks(fitted, after, plan, target="revenue")
    top = found.top
    print(f"\nAgainst plan (the model file's baselines), revenue is off by {found.basis['gap']}.")
    print(f"Walk down the tree: {' -> '.join(found.path)}")
    row = found.table.loc[top]
    print(f"Top bottleneck: {top} ({row['owner']}): {row['actual']:,.4g} vs plan "
          f"{row['plan']:,.4g}, explains {row['explained']:+,.0f} of the gap")  # fmt: skip


def _headless() -> None:
    """Draw without a display (the CLI only saves files)."""
    import matplotlib

    matplotlib.use("Agg")


def _save_figure(ax: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure = cast("Figure", ax.get_figure(root=True))
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def _format_values(values: pd.Series) -> str:
    width = max(22, *(len(str(name)) + 2 for name in values.index))
    return "\n".join(f"  {name:<{width}}{value:>18,.2f}" for name, value in values.items())


def _format_table(table: pd.DataFrame) -> str:
    return table.to_string(
        formatters={
            "baseline": "{:,.2f}".format,
            "scenario": "{:,.2f}".format,
            "delta": "{:+,.2f}".format,
            "pct_change": "{:+.2%}".format,
        }
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
