"""Model files: exact round trips and clear errors for malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import kpitree
from kpitree import ModelFileError, Tree
from kpitree.io import FORMAT, from_dict, to_dict


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_round_trip_is_exact(company: Tree, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    company.save(path)
    loaded = kpitree.load(path)
    assert loaded == company
    assert to_dict(loaded) == to_dict(company)
    kpitree.save(loaded, tmp_path / f"again{suffix}")
    assert (tmp_path / f"again{suffix}").read_text() == path.read_text()


def test_round_trip_keeps_awkward_values(tmp_path: Path) -> None:
    tree = Tree.from_formulas(
        {"受注数": "商談数 * 0.1 + yes", "on": "E * I / 3"},
        owners={"on": "フィールドセールス"},
        bounds={"E": (None, 0.1), "I": (-1e-300, 1e300)},
        baselines={"E": 0.1 / 3, "I": 123456789.123456789},
        descriptions={"on": "quotes ' \" and: colons\nnewlines"},
        name="ünïcode",
    )
    for suffix in (".yaml", ".json"):
        tree.save(tmp_path / f"m{suffix}")
        assert kpitree.load(tmp_path / f"m{suffix}") == tree


def test_the_file_holds_the_documented_format(funnel: Tree, tmp_path: Path) -> None:
    funnel.save(tmp_path / "m.yaml")
    content = yaml.safe_load((tmp_path / "m.yaml").read_text())
    assert content["format"] == FORMAT
    assert content["nodes"]["sqls"] == {"formula": "mqls * sql_rate", "owner": "Inside Sales"}
    assert content["nodes"]["win_rate"] == {
        "owner": "Field Sales", "bounds": [0.0, 1.0], "baseline": 0.25
    }  # fmt: skip


def test_shorthand_entries() -> None:
    tree = from_dict({"nodes": {"leads": "visits * rate", "rate": None, "visits": {}}})
    assert tree.children("leads") == ("visits", "rate")
    assert tree.nodes == ("leads", "rate", "visits")


def write(tmp_path: Path, text: str, suffix: str = ".yaml") -> Path:
    path = tmp_path / f"bad{suffix}"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "node", "fragment"),
    [
        ("nodes: [a, b]", None, "'nodes' must be a non-empty mapping"),
        ("- a\n- b", None, "a mapping at its top level"),
        ("format: kpitree/9\nnodes: {a: b}", None, "unsupported format"),
        ("nodes: {a: b}\ncolour: red", None, "unknown top-level key"),
        ("nodes:\n  a: {formula: b +}", "a", "ends where a value was expected"),
        ("nodes:\n  a: {formula: 'b', colour: red}", "a", "unknown key(s) ['colour']"),
        ("nodes:\n  a: {formula: 'b', bounds: [1, 0]}", "a", "not an interval"),
        ("nodes:\n  a: b\n  b: a", "a", "cycle"),
        ("nodes:\n  a: 3", "a", "mapping or a formula"),
        ("nodes:\n  a: {formula: b, baseline: 2}", "a", "cannot have a baseline"),
        ("nodes:\n  yes: b", None, "not text"),
        ("nodes:\n  a: {formula: b, owner: [x]}", "a", "must be text"),
        ("nodes:\n  a: !!python/object/apply:os.system ['touch x']", None, "invalid YAML"),
        ("nodes:\n  a: b\n   c: d", None, "invalid YAML at line 3"),
    ],
)
def test_malformed_files_name_the_file_and_node(tmp_path, text, node, fragment) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ModelFileError) as info:
        kpitree.load(path)
    assert info.value.node == node
    assert str(info.value).startswith(str(path))
    assert fragment in str(info.value)
    assert not (tmp_path / "x").exists()


def test_json_errors_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="invalid JSON at line 1"):
        kpitree.load(write(tmp_path, "{nodes: ", ".json"))
    with pytest.raises(ModelFileError, match="cannot read the file"):
        kpitree.load(tmp_path / "missing.yaml")
    with pytest.raises(ModelFileError, match=r"end in \.yaml, \.yml or \.json"):
        kpitree.load(write(tmp_path, "nodes: {a: b}", ".txt"))
    path = tmp_path / "latin.yaml"
    path.write_bytes("nodes: {a: b}  # \xe9".encode("latin-1"))
    with pytest.raises(ModelFileError, match="not UTF-8"):
        kpitree.load(path)


def test_json_is_plain_json(funnel: Tree, tmp_path: Path) -> None:
    funnel.save(tmp_path / "m.json")
    content = json.loads((tmp_path / "m.json").read_text())
    assert content["nodes"]["visits"] == {"formula": "sns + search + ads"}
