"""Boundaries the design relies on, checked on the source."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(package: str):
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, alias.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield path, node.module


def test_notifier_does_not_import_feed():
    offenders = [f"{p.relative_to(ROOT)}: {m}" for p, m in imported_modules("notifier") if m.split(".")[0] == "feed"]
    assert offenders == []


def test_the_check_itself_sees_imports():
    # feed does import notifier: proves the scan finds real imports.
    assert any(m == "notifier" or m.startswith("notifier.") for _, m in imported_modules("feed"))


def test_feed_does_not_use_model_signals_to_notify():
    offenders = [f"{p.relative_to(ROOT)}: {m}" for p, m in imported_modules("feed") if m.startswith("django.db.models.signals")]
    assert offenders == []
