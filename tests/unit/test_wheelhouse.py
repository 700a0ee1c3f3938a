"""The agent's wheelhouse: only pure-Python wheels, made on the node without an index."""

from __future__ import annotations

import importlib.metadata
import zipfile
from pathlib import Path

import pytest

from zmn.api.errors import OperationFailed
from zmn.services.kvm.wheelhouse import ensure_wheelhouse, repack, shipped_distributions


def test_typer_and_its_requirements_ship_but_not_what_the_host_provides() -> None:
    names = {d.metadata["Name"].lower() for d in shipped_distributions()}
    assert {"typer", "rich", "shellingham"} <= names
    assert not names & {"pyyaml", "libvirt-python", "pydantic", "pydantic-core"}


def test_the_wheelhouse_holds_only_pure_wheels_that_match_the_installed_files(
    tmp_path: Path,
) -> None:
    wh = ensure_wheelhouse(tmp_path)
    wheels = sorted(p.name for p in tmp_path.glob("*.whl"))
    assert wh.agent_wheel in wheels and all(w.endswith("-py3-none-any.whl") for w in wheels)
    typer_wheel = next(tmp_path.glob("typer-*.whl"))
    dist = importlib.metadata.distribution("typer")
    with zipfile.ZipFile(typer_wheel) as zf:
        names = set(zf.namelist())
        assert "typer/main.py" in names and not any(n.endswith(".pyc") for n in names)
        info = next(n for n in names if n.endswith(".dist-info/RECORD"))
        assert zf.read("typer/main.py") == Path(str(dist.locate_file("typer/main.py"))).read_bytes()
        record = zf.read(info).decode()
        assert "typer/main.py,sha256=" in record and "INSTALLER" not in record
    (tmp_path / "PyYAML-6.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"old release")
    again = ensure_wheelhouse(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.whl")) == wheels  # stale ones removed
    assert again == wh


def test_a_compiled_distribution_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OperationFailed) as refused:
        repack(importlib.metadata.distribution("msgspec"), tmp_path)
    assert refused.value.code == "KVM.WHEELHOUSE_FAILED"
    assert "not a pure-Python distribution" in refused.value.message


def test_every_zmn_module_the_agent_imports_ships_in_its_wheel() -> None:
    """A host has only the agent's wheel: an agent import of a zmn module left out of
    ``_CONTRACT`` would keep the agent from starting there (found by the KVM e2e, once)."""
    import ast

    from zmn.services.kvm.wheelhouse import _CONTRACT

    root = Path(__file__).resolve().parents[2]
    imported: set[str] = set()
    for path in (root / "agent").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("zmn"):
                imported.add(str(node.module))
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names if a.name.startswith("zmn"))
    files = {m: m.replace(".", "/") for m in imported}
    missing = {m for m, f in files.items() if not {f"{f}.py", f"{f}/__init__.py"} & set(_CONTRACT)}
    assert missing == set()
