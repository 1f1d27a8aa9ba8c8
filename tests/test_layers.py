"""Imports flow one way (issue 16): a module imports only from its own layer or the layers below."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import ROOT

# Lowest first. A package's modules may import each other; nothing imports upward.
LAYERS = [
    ["ghmcp.config", "ghmcp.config_loading", "ghmcp.audit", "ghmcp.sdk"],
    ["ghmcp"],  # the package docstring only
    ["ghmcp.storage"],
    ["ghmcp.observe"],
    ["ghmcp.asgi", "ghmcp.standin"],
    ["ghmcp.auth"],
    ["ghmcp.upstream"],
    ["github_provider"],
    ["tools"],
    ["ghmcp.web", "ghmcp.config_docs"],
    ["main"],
]


def layer_of(module: str) -> int | None:
    """The layer of the most specific name that covers `module` (ghmcp.auth before ghmcp)."""
    covering = [
        (len(name), rank)
        for rank, names in enumerate(LAYERS)
        for name in names
        if module == name or module.startswith(name + ".")
    ]
    return max(covering)[1] if covering else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def test_no_module_imports_a_layer_above_its_own() -> None:
    sources = [*ROOT.glob("*.py"), *ROOT.glob("tools/*.py"), *ROOT.glob("ghmcp/**/*.py")]
    upward = []
    for path in sources:
        source = module_name(path)
        rank = layer_of(source)
        assert rank is not None, f"{source} is in no layer: add it to LAYERS"
        for target in imports(path):
            target_rank = layer_of(target)
            if target_rank is not None and target_rank > rank:
                upward.append(f"{source} -> {target}")
    assert upward == []
