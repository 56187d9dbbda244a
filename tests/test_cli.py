"""The kpitree command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kpitree import datasets
from kpitree.cli import main


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Tree 'B2B company': 33 nodes (12 formulas, 6 links, 15 levers); top: revenue" in out
    assert "152,034,240.00" in out  # baseline revenue, hand-computed in test_datasets
    assert "What if win_rate +10%" in out
    targets = out[out.index("Targets for +20% revenue (182,441,088)") :].splitlines()
    sqls = next(line for line in targets if line.startswith("sqls ")).split()
    assert sqls[1:] == ["Inside", "Sales", "59.4", "71.28", "1.2"]  # 59.4 SQLs today, x1.2
    fitted = next(line for line in out.splitlines() if line.startswith("win_rate__share_3plus"))
    truth, _estimate, _std_err, low, high = (float(v) for v in fitted.split()[1:])
    assert truth == 4.0 and low <= truth <= high  # the simulator's true slope, recovered
    for name in ("tree.png", "tornado.png", "waterfall.png"):
        image = tmp_path / name
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.stat().st_size > 20_000
    ranking = out[out.index("Which team moves revenue most?") :]
    assert "method: tornado" in ranking and "interval over 200 coefficient draws" in ranking
    teams = ("Customer Success", "Field Sales", "Inside Sales", "Marketing")
    rows = [line for line in ranking.splitlines() if line.startswith(teams)]
    assert len(rows) == 4
    ranks = [int(row.split()[-5]) for row in rows]  # impact, pct, share, rank, ci.., p, n
    assert ranks == [1, 2, 3, 4]
    change = out[out.index("Why did revenue move") :].splitlines()[1:10]
    parts = {line.rsplit(None, 1)[0].strip(): float(line.split()[-1].replace(",", ""))
             for line in change}  # fmt: skip
    total = parts.pop("total")
    assert abs(sum(parts.values()) - total) < 0.05  # contributions add up to the change
    history = datasets.simulate_b2b()
    observed = history["revenue"].iloc[-1] - history["revenue"].iloc[-2]
    assert abs(total - observed) < 0.05  # link residuals make the model reproduce the data
    assert "Marketing" in parts and "Inside Sales (mechanism)" in parts
    assert "Top bottleneck: " in out and history.index[-1].strftime("%Y-%m") in out


def test_console_script_is_installed(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kpitree.cli", "validate", str(datasets.B2B_MODEL)],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Tree 'B2B company'")


def test_evaluate_and_what_if_commands(tmp_path: Path, capsys) -> None:
    model = tmp_path / "m.yaml"
    model.write_text("nodes:\n  leads: visits * rate\n  visits: {baseline: 1000}\n"
                     "  rate: {baseline: 0.05, bounds: [0, 1]}\n")  # fmt: skip
    inputs = tmp_path / "in.csv"
    inputs.write_text("visits,rate\n1000,0.1\n3000,0.2\n")
    output = tmp_path / "out.csv"
    assert main(["evaluate", str(model), "--inputs", str(inputs), "--output", str(output)]) == 0
    assert output.read_text().splitlines()[1:] == ["0,100.0,1000.0,0.1", "1,600.0,3000.0,0.2"]
    assert main(["what-if", str(model), "rate=+100%"]) == 0
    out = capsys.readouterr().out
    assert "100.00" in out and "+100.00%" in out
    assert main(["plot", str(model), "--output", str(tmp_path / "t.png")]) == 0
    assert (tmp_path / "t.png").exists()


def test_errors_print_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    model = tmp_path / "m.yaml"
    model.write_text("nodes:\n  a: b +\n")
    assert main(["validate", str(model)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kpitree: error: {model}: node 'a':") and "Traceback" not in err
    assert main(["what-if", str(datasets.B2B_MODEL), "win_rate"]) == 2
    assert "not written node=change" in capsys.readouterr().err
