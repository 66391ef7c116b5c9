"""Hostile input: YAML alias bombs and duplicate keys in every YAML file stacgit reads are
refused with one line (exit 2), quickly and in little memory, before anything is built."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import tree

BOMB = "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9))
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + BOMB  # 9^10 values, 400 bytes

_MEASURED = """
import sys
from stacgit.cli import main
sys.argv = ["stacgit", *sys.argv[1:]]
try:
    main()
finally:  # the peak of this process (VmHWM starts again at exec; ru_maxrss carries the parent's)
    peak = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]
    print(f"maxrss_kb={peak}", file=sys.stderr)
"""

PLACES = {
    "catalog.yaml": lambda repo: (repo / "catalogs/shift/catalog.yaml"),
    "mapping": lambda repo: (repo / "mappings/aviris-ng.yaml"),
    "patch": lambda repo: (repo / "patches/0009-bomb.yaml"),
}


@pytest.mark.parametrize("place", sorted(PLACES))
def test_an_alias_bomb_is_refused_in_little_memory(repo, place):
    assert len(BOMB) < 500
    built = subprocess.run([sys.executable, "-c", _MEASURED, "build", "-j", "1"], cwd=repo, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    before = tree(repo / "build")
    path = PLACES[place](repo)
    path.parent.mkdir(exist_ok=True)
    path.write_text(path.read_text() + BOMB if path.exists() and place != "patch" else BOMB)
    # a hang guard, not a timing assertion: the bomb expands to 3.4 billion values
    res = subprocess.run([sys.executable, "-c", _MEASURED, "build"], cwd=repo, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "expands to more than 200,000 values through YAML aliases" in res.stderr and "Traceback" not in res.stderr
    assert int(res.stderr.rsplit("maxrss_kb=", 1)[1]) < 100_000  # KiB: under 100 MB
    assert tree(repo / "build") == before


def test_duplicate_keys_name_both_lines(repo):
    path = repo / "catalogs/shift/catalog.yaml"
    lines = path.read_text().splitlines()
    title = next(i for i, l in enumerate(lines) if l.startswith("title:"))
    lines.insert(title + 1, "title: A second title")
    path.write_text("\n".join(lines) + "\n")
    res = subprocess.run([sys.executable, "-m", "stacgit", "build"], cwd=repo, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert f"catalogs/shift/catalog.yaml:{title + 2}: duplicate key 'title' (first at line {title + 1})" in res.stderr


@pytest.mark.parametrize("bad, reason", [("#b", "contains '#'"), ("?b", "contains '?'"), ("%20", "contains '%'"), (" b", "contains white space"), ("\tb", "contains a control character")])
def test_ids_no_client_can_follow_are_refused(repo, bad, reason):
    from conftest import stacgit

    csv = repo / "catalogs/shift/sources/flightlines.csv"
    rows = csv.read_text().splitlines(keepends=True)
    good = rows[1].split(",")[0]
    rows[1] = rows[1].replace(good, good + bad, 1)
    csv.write_text("".join(rows))
    res = stacgit(repo, "build", "--json", "-j", "1")
    assert res.exit_code == 1
    failed = res.json["failed_records"]
    assert [f["location"] for f in failed] == ["catalogs/shift/sources/flightlines.csv:2"] and reason in failed[0]["reason"]


def test_ids_differing_only_in_case_are_refused(tmp_path):
    import json

    from conftest import REPO, stacgit

    repo = tmp_path / "repo"
    (repo / "catalogs/real/sources").mkdir(parents=True)
    (repo / "catalogs/real/catalog.yaml").write_text(
        "id: real\ndescription: d\nlicense: CC0-1.0\ncollections:\n  - {id: tiles, description: d, source: {type: file, path: sources/items.ndjson}}\n"
    )
    item = json.loads((REPO / "tests/data/real-shapes/items.ndjson").read_text().splitlines()[3])
    lines = [json.dumps({**item, "id": i}) for i in ("Tile-A", "tile-b", "tile-a")]
    (repo / "catalogs/real/sources/items.ndjson").write_text("\n".join(lines) + "\n")
    res = stacgit(repo, "build", "-j", "1")
    assert res.exit_code == 1 and "'Tile-A' (catalogs/real/sources/items.ndjson:1) and 'tile-a' (catalogs/real/sources/items.ndjson:3)" in res.stderr
    assert "differ only in case" in res.stderr
    # in two source files of one collection
    (repo / "catalogs/real/catalog.yaml").write_text((repo / "catalogs/real/catalog.yaml").read_text().replace("items.ndjson", "*.ndjson"))
    (repo / "catalogs/real/sources/items.ndjson").write_text("\n".join(lines[:2]) + "\n")
    (repo / "catalogs/real/sources/more.ndjson").write_text(lines[2] + "\n")
    res = stacgit(repo, "build", "-j", "1")
    assert res.exit_code == 1 and "'Tile-A' (catalogs/real/sources/items.ndjson:1) and 'tile-a' (catalogs/real/sources/more.ndjson:1)" in res.stderr
    assert "differ only in case" in res.stderr and "Traceback" not in res.stderr
