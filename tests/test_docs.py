"""The documentation runs: the tutorial's code, the notebooks and the strict docs build."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
_FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)

# The bundled model's revenue at its baselines: recurring 988 * 150,000, 1 % expansion on
# that, and new 13.068 * 180,000.
BASELINE_REVENUE = 988 * 150_000 * 1.01 + 13.068 * 180_000


def code_blocks(markdown: str) -> list[tuple[str, str | None]]:
    """Each ```python block and the ```text block right after it (its output), if any."""
    fences = list(_FENCE.finditer(markdown))
    blocks = []
    for i, fence in enumerate(fences):
        if fence["lang"] != "python":
            continue
        output = None
        after = fences[i + 1] if i + 1 < len(fences) else None
        if after and after["lang"] == "text" and not markdown[fence.end() : after.start()].strip():
            output = after["body"]
        blocks.append((fence["body"], output))
    return blocks


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]


# --- the pages ----------------------------------------------------------------------------

PAGES = [
    "getting-started.md",
    "model-files.md",
    "architecture.md",
    "integrated-kpi.md",
    "data-quality.md",
    "fitting.md",
    "sensitivity.md",
    "targets-and-attribution.md",
]


@pytest.mark.parametrize("page", PAGES)
def test_page_code_runs_and_prints_what_it_says(page, tmp_path, monkeypatch):
    """Every python block of a page runs, in order, in one fresh namespace, in a tmp cwd.

    Executing block after block in one namespace is running their concatenation; doing it
    block by block also checks that a ```text block right after a python block is what
    that block prints.
    """
    blocks = code_blocks((DOCS / page).read_text(encoding="utf-8"))
    assert blocks, f"{page} has no python block"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    options = ("display.float_format", "display.width")
    saved = [value for name in options for value in (name, pd.get_option(name))]
    try:
        with pd.option_context(*saved):  # pages may set display options: restore them
            for number, (source, expected) in enumerate(blocks, start=1):
                printed = io.StringIO()
                with contextlib.redirect_stdout(printed):
                    exec(compile(source, f"{page}, python block {number}", "exec"), namespace)
                if expected is not None:
                    assert _lines(printed.getvalue()) == _lines(expected), f"{page} #{number}"
    finally:
        plt.close("all")


def test_getting_started_covers_the_tour():
    text = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    source = "\n".join(block for block, _ in code_blocks(text))
    used = (
        "from_formulas levers children parents upstream expand formula simulate_b2b what_if "
        'scenarios save load plot.tree CycleError FormulaError DataError errors="warn"'
    )
    for name in used.split():
        assert name in source, name
    for change in ('"+10%"', '"*1.2"', '"+500"', '"=200000"', '"leads": 700'):
        assert change in source, change


def test_code_blocks_pairs_outputs():
    text = "```python\nprint(1)\n```\n\n```text\n1\n```\n\n```python\nx = 2\n```\n```yaml\na\n```"
    assert code_blocks(text) == [("print(1)\n", "1\n"), ("x = 2\n", None)]


# --- the notebooks ------------------------------------------------------------------------


def _outputs(cell: dict) -> str:
    """The text a code cell printed or displayed."""
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            parts.append(output["text"])
        elif output["output_type"] in ("execute_result", "display_data"):
            parts.append(output["data"].get("text/plain", ""))
    return "".join(parts)


def _run_notebook(path: Path, cwd: Path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return notebook


def test_notebooks_are_stored_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    assert NOTEBOOKS, "no notebook in notebooks/"
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    notebook = _run_notebook(path, tmp_path)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code)
    if path.name == "01_quickstart.ipynb":
        _check_quickstart(code, tmp_path)


def _cell(cells: list, marker: str):
    """The one code cell whose source contains ``marker``."""
    (cell,) = [cell for cell in cells if marker in cell.source]
    return cell


def _check_quickstart(cells: list, cwd: Path) -> None:
    # the tree: its summary line and its HTML table. Counted in b2b_company.yaml: 12
    # identities (revenue down to request_page_visits), 6 links (request, MQL, appointment,
    # SQL, win and churn rate) and 15 levers (3 channels, deal_size, customers_start, arpa,
    # expansion_rate and 8 leading indicators)
    shown = [output.get("data", {}) for output in _cell(cells, "load_b2b()").outputs]
    assert shown[0]["text/plain"].startswith(
        "Tree 'B2B company': 33 nodes (12 formulas, 6 links, 15 levers); top: revenue"
    )
    assert '<div class="kpitree">' in shown[0]["text/html"]
    # the plots
    images = [o for cell in cells for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2
    # printed numbers
    revenue = _outputs(_cell(cells, "baseline revenue"))
    assert revenue == f"baseline revenue: {BASELINE_REVENUE:,.0f} JPY\n"
    assert revenue == "baseline revenue: 152,034,240 JPY\n"
    history = _outputs(_cell(cells, "simulate_b2b()"))
    assert history.startswith("history: 36 months, 2023-01 to 2025-12\n")
    what_if = _outputs(_cell(cells, "what_if("))
    assert what_if.startswith("revenue with a 10% better win rate: 152,269,464 JPY\n")
    saved = _outputs(_cell(cells, "kpitree.load("))
    assert saved.startswith("round trip equal: True\nformat: kpitree/1\nname: B2B company\n")
    assert not list(cwd.iterdir()), "the notebook saves into a temporary folder"


# --- the site -----------------------------------------------------------------------------


def test_mkdocs_build_is_strict_clean(tmp_path):
    pytest.importorskip("mkdocs")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    for anchor in ("kpitree.Tree", "kpitree.evaluate.evaluate", "kpitree.what_if", "kpitree.load"):
        assert f'id="{anchor}"' in api, anchor
    assert "&gt;&gt;&gt;" in api and ":class:" not in api  # doctests as code, roles as links
