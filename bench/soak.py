"""A long run on one server process: does memory stay flat, and does the store shrink back?

10,000 sign-ins and 100,000 tool calls (`--sign-ins`, `--calls`) on ONE server process (`main.py`
in its own process, so its RSS is its own) against the GitHub stand-in (`ghmcp/standin`, in its own
process too), SQLite by default or Redis (`--redis` starts Debian's `redis-server` on a free port;
`--storage-url redis://...` uses one that holds no `mcp:` keys yet).

What one sign-in is (`soak_load.py`): the real flow, as a client and its user's browser do it:
`/authorize`, the consent page (a fresh cookie jar each time, so it is always shown and approved),
the stand-in's user picker, `/github/callback`, the redirect to the client with a code, the PKCE code
exchange at `/token`. Then one MCP session (initialize, `--calls / --sign-ins` x
`tools/call get_user_profile`, each one `GET /user` at the stand-in, DELETE), and the refresh token
revoked at `/revoke` (RFC 7009), which ends the family and releases the grant (and with the user's
last grant, the GitHub authorization). Many users (`--users`, 200) and many clients (`--clients`,
150) take turns, so every (user, client) pair, cache and limit keyed by them is exercised;
`--concurrency` (12) sign-ins run at once. Every tenth revoked sign-in first refreshes its tokens
(the superseded access token is left for the sweeper). The last `--live` (50) sign-ins are not
revoked: they are the live grants the store must come back to. Every 50th sign-in also brings a
client that registers, starts a sign-in and leaves it on the consent page, and one that never
exchanges its code (with users of their own): pending rows, codes, grants and unused clients for
the sweeper.

The server runs with settings for the soak (environment, as an operator would set them):
- `MCP_RATE_LIMIT` and `MCP_REGISTRATION_RATE_LIMIT` raised: all traffic comes from 127.0.0.1, far
  above the per-address limits meant for strangers; `MCP_MAX_PENDING_PER_CLIENT` raised likewise;
- `MCP_ALLOWED_GITHUB_USERS` lists every stand-in account, so admission runs on every sign-in and
  pins each login to its GitHub id (one record per user);
- the shortest lifetimes the settings allow, so that what is dead expires during the run:
  access tokens 60 s (the live ones are left to expire), codes and consent pages 30 s, the GitHub
  leg 60 s, never-used clients 60 s; the sweeper every 5 s. Refresh tokens live at least an hour
  (set to that), which is why the soak revokes rather than waits.

Printed: the server's RSS (VmRSS from /proc) at start, after warm-up (the first 10 % of
sign-ins), every 10 %, at the end and after the sweep; then, once the last lifetime has run out
and the sweeper has run, the store's records per kind against what the live set needs
(`soak_store.py`); then each live sign-in refreshes and calls a tool once, to show the sweeper
left them whole. Targets, PASS/FAIL: RSS growth after warm-up < 50 MB; the store back to the
live grants only; no request failed.

Run: nice -n 10 uv run python bench/soak.py [--redis] [--sign-ins 300 --calls 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx2
from soak_load import SignInJob, Tally
from soak_store import Expected, compare, redis_key_count, redis_records, sqlite_records

from ghmcp.standin import GitHubStandIn
from tests.fake_github import running_fake_github
from tests.redis_support import running_redis
from tests.support import Browser, ServerProcess

MB = 1024 * 1024
RSS_TARGET_MB = 50
SWEEP_SECONDS = 5
LONGEST_LIFETIME = 60  # access tokens, the GitHub leg and never-used clients (see SOAK_SETTINGS)
SOAK_SETTINGS = {
    "MCP_RATE_LIMIT": "1000000/minute",
    "MCP_REGISTRATION_RATE_LIMIT": "1000000/minute",
    "MCP_MAX_PENDING_PER_CLIENT": "10000",
    "MCP_ACCESS_TOKEN_SECONDS": "60",
    "MCP_REFRESH_TOKEN_SECONDS": "3600",
    "MCP_CODE_SECONDS": "30",
    "MCP_CONSENT_SECONDS": "30",
    "MCP_STATE_SECONDS": "60",
    "MCP_UNUSED_CLIENT_SECONDS": "60",
    "MCP_SWEEP_INTERVAL_SECONDS": str(SWEEP_SECONDS),
}
ABANDONERS = 5  # users of the sign-ins left unfinished


def logins(users: int) -> list[str]:
    return [f"soak-{n}" for n in range(users)] + [f"soak-abandoner-{n}" for n in range(ABANDONERS)]


def serve_standin(users: int) -> None:
    """Child process: the stand-in with the soak's accounts and nobody signed in (so the picker asks)."""
    standin = GitHubStandIn()
    for n, login in enumerate(logins(users)):
        standin.add_user(login, id=10_000 + n)
    with running_fake_github(standin) as url:
        print(url, flush=True)
        sys.stdin.read()  # until the parent closes it


@contextlib.contextmanager
def standin_process(users: int) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "_standin", str(users)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        url = process.stdout.readline().strip()
        if not url:
            raise RuntimeError("the GitHub stand-in did not start")
        yield url
    finally:
        process.stdin.close()
        process.wait(timeout=10)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / MB
    raise RuntimeError(f"no VmRSS for process {pid}")


class Soak:
    def __init__(self, args: argparse.Namespace, server: ServerProcess, storage_url: str) -> None:
        self.args = args
        self.server = server
        self.storage_url = storage_url
        assert server.process is not None
        self.pid = server.process.pid
        self.tally = Tally()
        self.rss: dict[str, float] = {"start": rss_mb(self.pid)}
        self.started = time.monotonic()
        self.finished = 0  # sign-ins run to their end, whatever happened

    def progress(self, label: str) -> None:
        self.rss[label] = rss = rss_mb(self.pid)
        done, errors = self.tally.done, sum(self.tally.errors.values())
        print(
            f"{label:>11s}  {done['sign-in']:7,d} sign-ins  {done['tool call']:8,d} tool calls  "
            f"{time.monotonic() - self.started:6.0f} s  RSS {rss:6.1f} MB  errors {errors}",
            flush=True,
        )

    def finish_one(self) -> None:
        """Count a sign-in run to its end; print a line at every tenth (the first ends the warm-up)."""
        self.finished += 1
        tenth = self.finished * 10 // self.args.sign_ins
        if 0 < tenth < 10 and (self.finished - 1) * 10 // self.args.sign_ins < tenth:
            self.progress("warm-up" if tenth == 1 else "middle" if tenth == 5 else f"{tenth * 10} %")

    async def load(self, job: SignInJob, clients: list[str]) -> None:
        indexes = iter(range(self.args.sign_ins))
        live_from = self.args.sign_ins - self.args.live

        async def worker() -> None:
            async with Browser() as browser:
                for i in indexes:  # one iterator shared by every worker: each index runs once
                    user = f"soak-{i % self.args.users}"
                    live = i >= live_from
                    await job.run(browser, clients[i % len(clients)], user, refresh=i % 10 == 5 and not live, live=live)
                    self.finish_one()
                    if i % 50 == 0 and not live:
                        await job.leave_code(browser, await job.register("never exchanges"), abandoner(i))
                    if i % 50 == 25 and not live:
                        await job.abandon_at_consent(browser, await job.register("leaves on the consent page"))

        await asyncio.gather(*(worker() for _ in range(self.args.concurrency)))
        self.progress("end")

    def records(self) -> tuple[dict[str, int], dict[str, int] | None]:
        if self.storage_url == "sqlite":
            return sqlite_records(self.server.data_dir / "mcp.sqlite3"), None
        records, indexes = redis_records(self.storage_url)
        return records, dict(indexes)

    async def settle(self, expected: Expected) -> tuple[dict[str, int], dict[str, int] | None]:
        """Wait out the longest lifetime and two sweeps, then up to four more sweeps for the counts to match."""
        waited = time.monotonic()
        await asyncio.sleep(max(0.0, self.tally.last_sign_in + LONGEST_LIFETIME + 2 * SWEEP_SECONDS - time.time()))
        for _ in range(4):
            records, indexes = self.records()
            if records == expected.records() and (indexes is None or indexes == expected.redis_indexes()):
                break
            await asyncio.sleep(SWEEP_SECONDS)
        print(f"\nwaited {time.monotonic() - waited:.0f} s for the lifetimes to run out and the sweeper to run")
        return records, indexes

    async def run(self) -> bool:
        args = self.args
        calls_per_sign_in = args.calls // args.sign_ins
        print(
            f"{args.sign_ins:,d} sign-ins x {calls_per_sign_in} tool calls, {args.users} users, "
            f"{args.clients} clients, {args.concurrency} at once, {args.live} left live; store: {self.storage_url}"
        )
        self.progress("start")
        async with httpx2.AsyncClient(timeout=30) as http:
            job = SignInJob(self.server, http, self.tally, calls_per_sign_in)
            clients = [await job.register(f"soak client {n}") for n in range(args.clients)]
            await self.load(job, clients)
            used = set(clients)
            expected = Expected(
                live=len(self.tally.live),
                clients=len(used),
                consents={pair for pair in self.tally.consents if pair[1] in used},
                logins=len({login for login, _ in self.tally.consents}),
            )
            records, indexes = await self.settle(expected)
            self.progress("swept")
            store_ok = compare("Store records after the sweep", records, expected.records())
            if indexes is not None:
                store_ok &= compare("Redis index keys (mcp:<family>:...)", indexes, dict(expected.redis_indexes()))
                print(f"  all mcp: keys          {redis_key_count(self.storage_url):8,d}")
            await job.check_live()
        return self.report(store_ok)

    def report(self, store_ok: bool) -> bool:
        tally = self.tally
        print(
            f"live sign-ins refreshed and called a tool after the sweep: {tally.done['live check']}/{len(tally.live)}"
        )
        for step, count in sorted(tally.errors.items()):
            print(f"errors in {step}: {count} (first: {tally.first_error[step]})")
        growth = self.rss["end"] - self.rss["warm-up"]
        rss = "  ".join(f"{label} {value:.1f}" for label, value in self.rss.items() if not label.endswith("%"))
        print(f"\nRSS (MB): {rss}")
        live_ok = tally.done["live check"] == len(tally.live)
        verdicts = [
            (f"RSS growth after warm-up {growth:+.1f} MB < {RSS_TARGET_MB} MB", growth < RSS_TARGET_MB),
            ("store back to the live grants only", store_ok),
            (f"no failed request ({sum(tally.errors.values())} failed)", not tally.errors and live_ok),
        ]
        for what, ok in verdicts:
            print(f"{'PASS' if ok else 'FAIL'}  {what}")
        return all(ok for _, ok in verdicts)


def abandoner(i: int) -> str:
    return logins(0)[i // 50 % ABANDONERS]


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sign-ins", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=100_000, help="tool calls in all (spread over the sign-ins)")
    parser.add_argument("--users", type=int, default=200, help="stand-in accounts taking turns")
    parser.add_argument("--clients", type=int, default=150, help="registered MCP clients taking turns")
    parser.add_argument("--live", type=int, default=50, help="sign-ins left live at the end")
    parser.add_argument("--concurrency", type=int, default=12)
    store = parser.add_mutually_exclusive_group()
    store.add_argument("--redis", action="store_true", help="start Debian's redis-server on a free port")
    store.add_argument("--storage-url", default="sqlite", help="redis://... holding no mcp: keys (default SQLite)")
    args = parser.parse_args(argv)
    if not 0 < args.live <= min(args.users, args.clients, args.sign_ins) or args.calls < args.sign_ins:
        parser.error("--live must be at most --users, --clients and --sign-ins; --calls at least --sign-ins")
    if args.storage_url != "sqlite" and redis_key_count(args.storage_url):
        parser.error(f"{args.storage_url} already holds mcp: keys; the soak counts them all, so give it an empty one")
    return args


def main(argv: list[str]) -> int:
    if argv[:1] == ["_standin"]:
        serve_standin(int(argv[1]))
        return 0
    args = arguments(argv)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        storage_url = args.storage_url
        if args.redis:
            storage_url = stack.enter_context(running_redis(Path(tmp) / "redis")).url
        github_url = stack.enter_context(standin_process(args.users))
        env: dict[str, str | None] = dict(SOAK_SETTINGS)
        env["MCP_ALLOWED_GITHUB_USERS"] = ",".join(logins(args.users))  # admission by login pins each login
        if storage_url != "sqlite":
            env["MCP_STORAGE_URL"] = storage_url
        server = ServerProcess(github_url, Path(tmp) / "server", env=env)
        server.start()
        stack.callback(server.stop)
        ok = asyncio.run(Soak(args, server, storage_url).run())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
