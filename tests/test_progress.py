"""Progress notifications: tools that page through GitHub report each page to a caller that asked."""

from __future__ import annotations

import pytest

from tests.fake_github import FakeGitHub
from tests.support import ServerProcess, signed_in_client

pytestmark = pytest.mark.anyio


class Heard:
    def __init__(self) -> None:
        self.updates: list[tuple[float, float | None, str | None]] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.updates.append((progress, total, message))


async def test_each_github_page_is_reported(server: ServerProcess, github: FakeGitHub) -> None:
    issues, pulls = Heard(), Heard()
    async with signed_in_client(server) as client:
        listed = await client.call_tool(
            "list_issues", {"owner": "bob", "repo": "hello-world", "limit": 2}, progress_callback=issues
        )
        await client.call_tool("list_pull_requests", {"owner": "bob", "repo": "hello-world"}, progress_callback=pulls)
        quiet = await client.call_tool("list_issues", {"owner": "bob", "repo": "hello-world", "limit": 2})
    # Page 1 held issue #3 and pull request #2 (left out); page 2 held issue #1.
    assert github.count("/repos/bob/hello-world/issues") == 4
    assert issues.updates == [(1, 2, "1 of up to 2 items"), (2, 2, "2 of up to 2 items")]
    assert pulls.updates == [(1, 30, "1 of up to 30 items")]
    assert listed.structured_content == quiet.structured_content  # asking for progress changes nothing else
