"""What authentication costs per request, as ratios measured in one run.

Targets (printed with PASS/FAIL, never asserted in tests):
- verifying a bearer token (SHA-256 + one SQLite join) costs < 10% of one GitHub API round trip
  on loopback, so auth is never the bottleneck of a tool call;
- one shared httpx2 client is > 2x cheaper per GitHub call than a client per call (the reason
  `github_api.py` shares one);
- issued tokens live on disk: Python heap growth < 2 KiB per issued token pair.

Run: uv run python bench/bench_auth.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcp.shared.auth import OAuthClientInformationFull

from ghmcp.auth.keys import new_secret, token_hash
from ghmcp.auth.records import GitHubAccessToken, GitHubAuthorizationCode
from ghmcp.config import Settings
from ghmcp.storage import Grant, new_id
from ghmcp.upstream.api import new_http_client
from ghmcp.web.build import build_app
from github_provider import GitHubOAuthProvider
from tests.fake_github import FakeGitHub, running_fake_github

CLIENT = OAuthClientInformationFull(client_id="bench", redirect_uris=["http://127.0.0.1:1/cb"])  # type: ignore[list-item]


async def issue_pair(provider: GitHubOAuthProvider, grant_id: str) -> str:
    code = new_secret()
    record = GitHubAuthorizationCode(
        code="",
        scopes=["user"],
        expires_at=time.time() + 300,
        client_id=CLIENT.client_id,
        code_challenge="x",
        redirect_uri=CLIENT.redirect_uris[0],  # type: ignore[index]
        redirect_uri_provided_explicitly=True,
        resource=provider.settings.resource_url,
        subject="github:1",
        grant_id=grant_id,
    )
    await provider.storage.save_code(token_hash(code), record.model_dump(mode="json"), grant_id, record.expires_at)
    loaded = await provider.load_authorization_code(CLIENT, code)
    assert loaded is not None
    return (await provider.exchange_authorization_code(CLIENT, loaded)).access_token


async def mean_seconds(n: int, fn: object) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await fn()  # type: ignore[operator]
    return (time.perf_counter() - start) / n


async def run(github_url: str, github_token: str, data_dir: Path) -> None:
    settings = Settings(
        github_client_id="fake-client-id",
        github_client_secret="fake-client-secret",  # type: ignore[arg-type]
        github_url=github_url,
        github_api_url=github_url,
        storage_url=f"sqlite:///{data_dir / 'bench.sqlite3'}",
        secret_key="bench-secret-key-0123456789abcdef",  # type: ignore[arg-type]
    )
    provider: GitHubOAuthProvider = build_app(settings).state.provider
    grant_id, _ = await provider.storage.upsert_grant(
        Grant(
            new_id(),
            "github:1",
            CLIENT.client_id,
            "bench",
            provider.keyring.encrypt(github_token),
            None,
            None,
            None,
            "",
            False,
        )
    )
    access = await issue_pair(provider, grant_id)
    verified = await provider.load_access_token(access)
    assert isinstance(verified, GitHubAccessToken)

    verify = await mean_seconds(2000, lambda: provider.load_access_token(access))
    shared = await mean_seconds(200, lambda: provider.github.get_user(github_token))

    async def fresh_client_call() -> None:
        async with new_http_client() as http:
            await http.get(f"{github_url}/user", headers={"Authorization": f"Bearer {github_token}"})

    fresh = await mean_seconds(20, fresh_client_call)

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    pairs = 2000
    for _ in range(pairs):
        await issue_pair(provider, grant_id)
    growth = (tracemalloc.get_traced_memory()[0] - before) / pairs
    tracemalloc.stop()

    rows = [
        ("token verification / GitHub round trip", verify / shared, "< 0.10", verify / shared < 0.10),
        ("client per call / shared client", fresh / shared, "> 2.0", fresh / shared > 2.0),
        ("heap bytes per issued token pair", growth, "< 2048", growth < 2048),
    ]
    print(
        f"verify {verify * 1e6:.0f} µs, GitHub call (shared client) {shared * 1e6:.0f} µs, "
        f"GitHub call (new client) {fresh * 1e6:.0f} µs"
    )
    for name, value, target, ok in rows:
        print(f"{name:42s} {value:10.3f}  target {target:8s} {'PASS' if ok else 'FAIL'}")
    await provider.github.http.aclose()
    await provider.storage.close()


def main() -> None:
    fake = FakeGitHub()
    fake.add_user("bench", id=1)
    token = fake.issue_token("bench", ["read:user"]).access_token
    with running_fake_github(fake) as url, tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(url, token, Path(tmp)))


if __name__ == "__main__":
    main()
