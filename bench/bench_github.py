"""What a tool call costs GitHub, measured in one run against the fake GitHub.

100 identical `get_repository` calls through the real server (subprocess, streamable HTTP):
- upstream requests per tool call: target exactly 1 (no extra /user or token calls);
- share of those answered 304 Not Modified: target >= 90% (ETag revalidation from the cache);
- rate-limit units spent after the first call: target <= 1 (GitHub does not count a 304).

Run: uv run python bench/bench_github.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fake_github import FakeGitHub, running_fake_github
from tests.support import running_server, signed_in_client

CALLS = 100
PATH = "/repos/bob/website"


async def run(fake: FakeGitHub, github_url: str, data_dir: Path) -> None:
    with running_server(github_url, data_dir) as server:
        async with signed_in_client(server) as client:
            arguments = {"owner": "bob", "repo": "website"}
            first = await client.call_tool("get_repository", arguments)
            assert not first.is_error, first
            spent_after_first = fake.rate_used("alice")
            start = time.perf_counter()
            for _ in range(CALLS - 1):
                result = await client.call_tool("get_repository", arguments)
                assert not result.is_error, result
            elapsed = (time.perf_counter() - start) / (CALLS - 1)
    requests = fake.count(PATH) / CALLS
    not_modified = fake.count_304(PATH) / CALLS
    spent = fake.rate_used("alice") - spent_after_first
    rows = [
        ("upstream requests per tool call", requests, "== 1", requests == 1),
        ("share answered 304", not_modified, ">= 0.90", not_modified >= 0.9),
        ("rate-limit units after the first call", spent, "<= 1", spent <= 1),
    ]
    print(f"{CALLS} get_repository calls, {elapsed * 1e3:.1f} ms per call after the first")
    for name, value, target, ok in rows:
        print(f"{name:42s} {value:10.3f}  target {target:8s} {'PASS' if ok else 'FAIL'}")


def main() -> None:
    fake = FakeGitHub()
    fake.add_user("alice", id=1001, name="Alice Example")
    fake.add_user("bob", id=2002, name="Bob Example")
    fake.sign_in("alice")
    with running_fake_github(fake) as url, tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(fake, url, Path(tmp)))


if __name__ == "__main__":
    main()
