"""`main.py --demo`: a fresh clone runs the whole flow with no GitHub app and no settings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

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


async def test_every_html_url_in_demo_results_is_a_stand_in_page(tmp_path: Path) -> None:
    """A client shows a result's links: each must open a page under /demo-github naming the thing."""
    with running_server("", tmp_path, demo=True) as server:
        async with McpUser(server, github_login="octocat") as user, user.connect() as client:
            hello = {"owner": "octocat", "repo": "hello-world"}
            results = [
                await client.call_tool("get_user_profile", {}),
                await client.call_tool("get_repository", hello),
                await client.call_tool("get_issue", hello | {"number": 1}),
                await client.call_tool("get_pull_request", hello | {"number": 2}),
            ]
        links = [link for result in results for link in _html_urls(result.structured_content)]
        async with httpx2.AsyncClient(timeout=10) as http:
            pages = {url: await http.get(url) for url, _ in links}
    assert {name for _, name in links} == {"octocat", "octocat/hello-world", "Crash on start", "Add a feature"}
    assert len(links) == 6  # the profile, the repository, the issue and its two comments, the pull request
    for url, name in links:
        page = pages[url]
        assert url.startswith(f"http://127.0.0.1:{server.port}/demo-github/"), url
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), (url, page.text)
        assert name in page.text and "stand-in" in page.text and "Demo mode" in page.text, (url, page.text)


def _html_urls(result: Any, name: str = "") -> list[tuple[str, str]]:
    """Every `html_url` in a tool result, with the login, full name or title of what it belongs to."""
    if isinstance(result, list):
        return [link for item in result for link in _html_urls(item, name)]
    if not isinstance(result, dict):
        return []
    name = result.get("full_name") or result.get("title") or result.get("login") or name
    here = [(str(result["html_url"]), name)] if result.get("html_url") else []
    return here + [link for value in result.values() for link in _html_urls(value, name)]


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
