"""The README is read before anything runs: its commands, its map and its example must be true (issue 16)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from mcp import Client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser

import tools
from ghmcp.auth.records import GitHubAccessToken
from ghmcp.auth.scopes import TOOL_SCOPES
from ghmcp.storage import Grant
from ghmcp.web import build
from tests.fake_github import FakeGitHub
from tests.support import ROOT, in_process_settings

README = (ROOT / "README.md").read_text()


def test_the_readme_is_short_and_starts_with_the_two_commands() -> None:
    assert len(README.encode()) <= 15 * 1024
    first_screen = "\n".join(README.splitlines()[:30])
    assert "uv run main.py --demo" in first_screen and "uv run pytest" in first_screen
    assert "uv run pytest" in (ROOT / ".ci" / "run").read_text()


def _table(heading: str) -> list[str]:
    section = README.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`|]+)`", section, re.M) + [
        path
        for row in re.findall(r"^\| (`[^|]+`(?:, `[^|]+`)+) \|", section, re.M)
        for path in re.findall(r"`([^`]+)`", row)
    ]


def test_where_things_are_matches_the_tree() -> None:
    listed = set(_table("Where things are"))
    git = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    files = subprocess.run(git, cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    tracked = [path for path in files if (ROOT / path).exists()]
    top = {path.split("/")[0] + ("/" if "/" in path else "") for path in tracked if not path.startswith(".")}
    packages = {str(p.parent.relative_to(ROOT)) + "/" for p in (ROOT / "ghmcp").glob("*/__init__.py")}
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "ghmcp").glob("*.py") if p.name != "__init__.py"}
    expected = (top - {"LICENSE", "README.md", "pyproject.toml", "uv.lock", "ghmcp/"}) | packages | modules
    expected.add("ghmcp/templates/")
    assert all((ROOT / path).exists() for path in listed), sorted(p for p in listed if not (ROOT / p).exists())
    assert listed - {"ghmcp/config_docs.py"} >= expected - {"ghmcp/config_docs.py"}, sorted(expected - listed)


def _example_tool() -> str:
    section = README.split("## Add a tool\n", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    return "\n".join(line.removeprefix("   ") for line in code.group(1).splitlines()) + "\n"


@pytest.mark.anyio
async def test_the_add_a_tool_example_runs_as_written(
    monkeypatch: pytest.MonkeyPatch, github: FakeGitHub, github_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "more_tools"
    folder.mkdir()
    (folder / "stars.py").write_text(_example_tool())
    monkeypatch.setattr(tools, "__path__", [*tools.__path__, str(folder)])
    monkeypatch.setitem(TOOL_SCOPES, "count_stars", "")  # the example declares it; undone after the test
    app = build.build_app(in_process_settings(monkeypatch, github_url, tmp_path / "data"))
    provider = app.state.provider
    token = github.issue_token("alice").access_token
    grant = Grant("g1", "github:1", "c", "alice", provider.keyring.encrypt(token), None, None, None, "", False)
    access = GitHubAccessToken(
        token="t", client_id="c", scopes=["repo:read"], expires_at=None, grant_id="g1", family_id="f", grant=grant
    )
    context = auth_context_var.set(AuthenticatedUser(access))
    try:
        async with Client(app.state.mcp) as client:
            result = await client.call_tool("count_stars", {"owner": "bob", "repo": "hello-world"})
    finally:
        auth_context_var.reset(context)
        await provider.github.http.aclose()
    assert TOOL_SCOPES["count_stars"] == "repo:read"
    assert not result.is_error and result.structured_content == {"result": 3}  # the stand-in's bob/hello-world
