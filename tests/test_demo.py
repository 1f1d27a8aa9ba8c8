"""`main.py --demo`: a fresh clone runs the whole flow with no GitHub app and no settings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from tests.support import ROOT, McpUser, ServerProcess, running_server

pytestmark = pytest.mark.anyio


async def test_fresh_clone_demo_signs_in_and_calls_tools(tmp_path: Path) -> None:
    # cwd is an empty temp dir and no MCP_* variable is set: nothing but the clone itself.
    with running_server("", tmp_path, demo=True) as server:
        async with McpUser(server, github_login="octocat") as user:
            profile = await user.call("get_user_profile")
            assert profile.structured_content["login"] == "octocat"
            repo = await user.call("get_repository", {"owner": "octocat", "repo": "hello-world"})
            assert repo.structured_content["full_name"] == "octocat/hello-world"
            visited = " ".join(user.browser.visited)
        assert "/consent" in visited and "/demo-github/login/oauth/authorize" in visited
        async with httpx2.AsyncClient(timeout=10) as http:
            page = await http.get(f"{server.url}/github/callback")
        assert page.status_code == 400 and "Demo mode" in page.text  # the banner is on every page
        first_line = server.log().splitlines()[0]
        assert "WARNING mcp_server: DEMO MODE" in first_line and "key are temporary" in first_line, first_line
        assert "keep that file safe" not in server.log()  # its throw-away key
    assert not _leftovers(tmp_path, server.log())


def _leftovers(cwd: Path, log: str) -> list[Path]:
    """Files the demo left: anything in its cwd but the log, and its temporary data directory."""
    temporary = re.search(r"the store and its key are temporary, in (\S+), removed at exit", log)
    assert temporary is not None, log
    data_dir = Path(temporary.group(1))
    return [p for p in cwd.iterdir() if p.name != "server.log"] + ([data_dir] if data_dir.exists() else [])


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--host", "0.0.0.0"], {}), ([], {"MCP_HOST": "0.0.0.0"})],  # noqa: S104 (refused, never bound)
    ids=["flag", "env"],
)
def test_demo_refuses_a_non_loopback_address(tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
    clean = ServerProcess("", tmp_path, demo=True).environment()  # no MCP_* at all
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--demo", *args],
        cwd=tmp_path,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--demo serves on loopback only" in lines[0] and "MCP_HOST" in lines[0], done.stderr


async def test_stand_in_is_unreachable_without_demo(server: ServerProcess) -> None:
    async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
        for path in ("/demo-github/user", "/demo-github/login/oauth/authorize", "/demo-github/user/repos"):
            assert (await http.get(path)).status_code == 404, path
        page = await http.get("/github/callback")
        assert page.status_code == 400 and "Demo mode" not in page.text
