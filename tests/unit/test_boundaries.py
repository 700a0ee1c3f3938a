"""Import boundaries: clients stay light, the node stays free of UI toolkits.

Each check runs in a fresh interpreter, imports one module and looks at ``sys.modules``;
anything imported by the test process itself cannot hide a violation.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import zmn.api

ROOT = Path(__file__).resolve().parents[2]
CLIENT_FORBIDDEN = ["sqlalchemy", "textual", "prompt_toolkit", "typer"]
NODE_FORBIDDEN = ["typer", "textual", "prompt_toolkit"]
API_MODULES = sorted(
    f"zmn.api.{m.name}"
    for m in pkgutil.iter_modules(zmn.api.__path__)
    if not m.name.startswith("_")
)

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
forbidden = json.loads(sys.argv[2])
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & set(forbidden))))
"""


def imported(module: str, forbidden: list[str]) -> list[str]:
    """The forbidden top-level packages that importing ``module`` pulls in."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, module, json.dumps(forbidden)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    found: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return found


def test_api_modules_are_found() -> None:
    assert {"zmn.api.errors", "zmn.api.message", "zmn.api.wire", "zmn.api.querylang"} <= set(
        API_MODULES
    )


@pytest.mark.parametrize("module", ["zmn.client", "zmn.api", *API_MODULES])
def test_client_side_modules_stay_light(module: str) -> None:
    assert imported(module, CLIENT_FORBIDDEN) == [], f"{module} imports a heavy package"


def test_node_does_not_import_ui_toolkits() -> None:
    assert imported("zmn.core.node", NODE_FORBIDDEN) == []


def test_the_probe_sees_real_imports() -> None:
    """Guard against a probe that always answers 'nothing'."""
    assert imported("zmn.core.node", ["sqlalchemy"]) == ["sqlalchemy"]
