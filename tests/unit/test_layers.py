"""The import layering of STYLE.md, enforced with import-linter."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_layers_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is a test dependency"
    proc = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _imports(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_state_package_imports_sqlite3():
    """One owner of the build state: every other module goes through ``stacgit.state``."""
    package = ROOT / "stacgit"
    importers = sorted(p.relative_to(package).as_posix() for p in package.rglob("*.py") if "sqlite3" in _imports(p))
    assert importers and all(p.startswith("state/") for p in importers), importers


def test_no_sql_outside_the_state_package():
    """SQL text of the build state lives in ``stacgit/state/`` only: other modules call its named
    operations. (The pgstac publish target speaks SQL to a PostgreSQL target, not to the state.)"""
    import re

    sql = re.compile(r"\b(SELECT .+ FROM|INSERT (OR \w+ )?INTO|DELETE FROM|UPDATE \w+ SET|CREATE (TEMP )?TABLE)\b")
    package = ROOT / "stacgit"
    speakers = sorted(p.relative_to(package).as_posix() for p in package.rglob("*.py") if sql.search(p.read_text()))
    assert speakers and all(p.startswith("state/") or p == "publishing/pgstac_db.py" for p in speakers), speakers
