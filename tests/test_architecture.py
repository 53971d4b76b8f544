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


def module_imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions, relative imports resolved."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_imports_run_one_way_between_the_parts_that_used_to_import_each_other():
    def imports(relative: str) -> set[str]:
        return module_imports(ROOT / relative)

    # The publisher and its gate know nothing of batches; a batch uses both.
    assert not {m for m in imports("notifier/push/publisher.py") | imports("notifier/push/gate.py")
                if m.startswith("notifier.push.batch")}
    assert "notifier.push.publisher" in imports("notifier/push/batch.py")
    # The fan-out takes its locks from feed.locks, never from the services that schedule it.
    assert not {m for m in imports("feed/fanout.py") if m.startswith("feed.services")}
    assert "feed.fanout" in imports("feed/services.py")


def test_only_the_emulator_command_imports_the_emulator():
    """The web path (and Lambda) never loads notifier.localiot: it talks to the emulator over HTTP
    with boto3, exactly as to AWS."""
    allowed = {ROOT / "notifier/management/commands/runlocaliot.py"}
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("notifier", "feed", "config")
        for path in (ROOT / package).rglob("*.py")
        if path not in allowed and not path.is_relative_to(ROOT / "notifier/localiot")
        and any(m.startswith("notifier.localiot") for m in module_imports(path))
    ]
    assert offenders == []
    assert any(m.startswith("notifier.localiot") for m in module_imports(next(iter(allowed))))
