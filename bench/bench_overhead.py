"""This server against a plain, unauthenticated `MCPServer` doing the same work, side by side.

Both servers run as their own processes on 127.0.0.1 and call the same fake GitHub (its own
process). The plain server is configured as well as this one: same uvicorn, no access log, no
per-request `httpx2` INFO line, one shared HTTP client, the same `UserProfile` result model,
`gc.freeze()` after startup. 8 callers (one MCP session each, Streamable HTTP protocol
2025-06-18, one keep-alive connection each; this server's callers are 8 OAuth clients, each
signed in through the full flow) send `tools/call get_user_profile` (one upstream `GET /user`)
or `ping` back to back. Every round starts every server afresh (this one on the same store, so
the tokens stay good): one process's luck with memory layout and hash seed, worth several per
cent either way, would otherwise decide a whole run. Then the round runs the servers A B B A,
half the time each, so load that drifts during a round (other processes on a shared machine)
hits both alike, in an order that turns by one server each round: every server takes every place
equally often (the default 16 rounds are four turns of four servers). A server's place was worth
up to 3.6 % of CPU per call: in an A/A run, the same server measured in the middle of the order
came out that much dearer than at the ends. The summary is the median over rounds of the
per-round ratios, with the middle half of the rounds beside it (wide means a noisy machine: run
again, or more rounds). On two or more CPUs the servers run on CPU 0 and the callers and fake
GitHub on CPU 1.

Printed per round and as medians: calls/s, p50 and p99 latency, server CPU per call (the server
process's own utime+stime from /proc), and the ratios this/plain. Then a run with 50 ms of
upstream latency: the p50 this server adds. Targets: tools/call >= 0.95x calls/s and <= 1.05x
CPU per call; ping >= 0.95x calls/s; <= 1 ms added p50 at 50 ms upstream; one upstream request
per tool call (counted at the fake).

Two more runs of this server (SQLite), unless `--no-observability`: `this+metrics` with
`MCP_METRICS_PORT` set (every counter and histogram of docs/observability.md live, and the same targets
apply), and `this+tracing` exporting every span over OTLP/HTTP to a receiver in the bench process
(batched, as in production): its cost is reported, not judged.

`--sdk-auth-floor` adds a third server: the plain one behind the SDK's own bearer layers with a
verifier that accepts every token, the floor for any server using the SDK's authentication.

Per-request costs that remain in this server and not in the plain one (measured in-process by
driving both ASGI apps directly: about 19 µs of CPU per `ping`, 30-55 µs per `tools/call`, the
spread being one process's luck against another's):
- `bearer.BearerGate`, the one ASGI hop in front of the transport (`app.DirectToMcp` hands MCP
  calls straight to it, past the layers for anonymous traffic and Starlette's router):
  - the `Authorization` header found among the raw headers, SHA-256 of the bearer, and a dict hit
    in `token_cache.TokenCache` that returns the already built `GitHubAccessToken`. The store is
    asked at most once per token per `token_cache.TTL_SECONDS` (0.5 s) and again after any
    revocation or rotation on this process, so a revocation on another replica is honoured
    within 0.5 s (the promise is 1 s);
  - the expiry check and the RFC 8707 audience check (the URL comparison cached per value);
  - `scope["user"]` and the SDK's auth context set as the SDK's own layers set them, which the
    SDK's transport then reads on every request (session owner check): most of the cost. A gate
    that only set them, with no token check at all, measured 11-17 µs of the 19;
  - the body read into one bytes object and replayed, and, only for a body that may hold a
    `tools/call` (the literal bytes, or any backslash escape), the same `pydantic_core.from_json`
    parse the SDK does (~3 µs);
- the scope decision again inside the SDK (`scopes.ScopeCheck`, on what the SDK decoded), the
  argument-error and write-confirmation middlewares (each a pass-through for a read tool), and
  the grant's repository boundary set around the call (one `Boundary` per stored choice, cached);
- the GitHub token for a tool call: taken from the grant read together with the MCP token (no
  store read per call), the plaintext from a bounded in-memory map keyed by (grant, ciphertext):
  Fernet runs once per grant and token version. If GitHub answers 401 to that copy, the stored
  grant is read again: a newer token (refreshed or replaced elsewhere) gets one retry, and only
  the stored token's own refusal ends the grant. The decrypted copy lives only in this process's
  memory (at most `token_cache.MAX_ENTRIES` grants, dropped on any revocation); at rest the token
  stays encrypted;
- outside the process's own work: the request is ~60 bytes longer (the `Authorization` header)
  for uvicorn to read and parse.

Run: uv run python bench/bench_overhead.py            (about 10 minutes; --quick for a smoke run)
     uv run python bench/bench_overhead.py --storage-url sqlite --storage-url redis   (starts its own redis-server)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402
from mcp.server.auth.provider import AccessToken  # noqa: E402
from mcp.server.auth.settings import AuthSettings  # noqa: E402
from mcp.server.mcpserver import MCPServer  # noqa: E402

from ghmcp.upstream.api import GitHubClient, new_http_client  # noqa: E402
from tests.fake_github import FakeGitHub, running_fake_github  # noqa: E402
from tests.observe_support import OtlpReceiver  # noqa: E402
from tests.redis_support import running_redis  # noqa: E402
from tests.support import ServerProcess, free_port, sign_in_tokens  # noqa: E402
from tools.users import UserProfile  # noqa: E402  (the same result model: the same serialisation work)

CALLERS = 8
PROTOCOL = "2025-06-18"
TICKS = os.sysconf("SC_CLK_TCK")
LOGIN = "bench"


# --- The processes -----------------------------------------------------------------------------


def serve_fake() -> None:
    """Child process: the fake GitHub. Prints its URL and a GitHub token; stdin sets the latency."""
    fake = FakeGitHub()
    fake.add_user(LOGIN, id=4242, name="Bench User")
    fake.sign_in(LOGIN)
    token = fake.issue_token(LOGIN, ["read:user"]).access_token
    with running_fake_github(fake) as url:
        print(url, token, flush=True)
        # "latency <seconds>" | "count" (GET /user since the last count) | "login <name>" (who signs in next)
        while line := sys.stdin.readline():
            command, _, value = line.strip().partition(" ")
            if command == "login":  # GitHub keeps ten tokens per user and scopes: a user per server
                if value not in fake.users:
                    fake.add_user(value, id=5000 + len(fake.users), name="Bench User")
                fake.sign_in(value)
                print("ok", flush=True)
            elif command == "latency":
                fake.latency_seconds = float(value)
                print("ok", flush=True)
            elif command == "count":  # then forget: the stand-in keeps only its last 10,000 requests
                print(fake.count("/user", "GET"), flush=True)
                fake.requests.clear()


class AcceptAnyToken:
    """The SDK's bearer layers with nothing behind them: a verifier that accepts every token."""

    def __init__(self, resource: str) -> None:
        self.resource = resource

    async def verify_token(self, token: str) -> AccessToken:
        return AccessToken(token=token, client_id="bench", scopes=["user"], resource=self.resource)


def serve_plain(port: int, github_url: str, token: str, sdk_auth: bool) -> None:
    """Child process: the baseline, a plain `MCPServer` with the same tool and the same upstream call.

    With `sdk_auth`, the SDK's own bearer layers guard it, with a verifier that accepts any token:
    the floor that any server using the SDK's auth pays, before any token lookup of its own.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    resource = f"http://127.0.0.1:{port}/mcp"
    auth = {"issuer_url": "http://127.0.0.1:1", "resource_server_url": resource, "validate_token_resource": True}
    mcp = (
        MCPServer("plain", token_verifier=AcceptAnyToken(resource), auth=AuthSettings.model_validate(auth))
        if sdk_auth
        else MCPServer("plain")
    )
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    github = GitHubClient(new_http_client(), github_url, github_url, "plain", "plain")

    @mcp.tool()
    async def get_user_profile() -> UserProfile:
        """The user's GitHub profile."""
        return UserProfile.model_validate(await github.get_user(token))

    app = mcp.streamable_http_app(host="127.0.0.1")
    gc.freeze()  # as main.py does
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="info")


class FakeProcess:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "_fake"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.url, self.token = self._answer().split()

    def _answer(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the fake GitHub did not start")
        return line.strip()

    def command(self, line: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self._answer()

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


@dataclass
class Target:
    """One server under test: its name, the bearer tokens of its 8 callers, and its process.

    `restart` stops the process and starts a fresh one on the same port and store: every round
    does so, so no single process's luck (memory layout, hash seed) decides a whole run.
    """

    name: str
    url: str
    bearers: list[str | None]
    restart: Callable[[], int]
    pid: int = 0
    judged: bool = True  # False: its ratios are reported without a verdict (tracing has no target)


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited early")
        with contextlib.suppress(OSError), socket_to(url):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not start in 20 s")


@contextlib.contextmanager
def socket_to(url: str) -> Iterator[None]:
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=1):
        yield


@contextlib.contextmanager
def plain_server(fake: FakeProcess, log_dir: Path, sdk_auth: bool = False) -> Iterator[Target]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, __file__, "_plain", str(port), fake.url, fake.token, "sdk-auth" if sdk_auth else "none"]
    processes: list[subprocess.Popen[bytes]] = []

    def restart() -> int:
        stop_plain(processes)
        with (log_dir / "plain.log").open("ab") as log:
            processes.append(subprocess.Popen(command, stdout=log, stderr=log))
        wait_healthy(url, processes[-1])
        pin(processes[-1].pid, 0)
        return processes[-1].pid

    try:
        if sdk_auth:
            target = Target("plain+sdk-auth", url, ["any-token"] * CALLERS, restart)
        else:
            target = Target("plain", url, [None] * CALLERS, restart)
        target.pid = restart()
        yield target
    finally:
        stop_plain(processes)


def stop_plain(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


@contextlib.contextmanager
def this_server(
    fake: FakeProcess, storage_url: str, data_dir: Path, extra: dict[str, str | None] | None = None, name: str = ""
) -> Iterator[Target]:
    # As deployed: confirmed writes on (the default; the tests' ServerProcess turns them off).
    env: dict[str, str | None] = {"MCP_CONFIRM_WRITES": None, **(extra or {})}
    if storage_url != "sqlite":
        env["MCP_STORAGE_URL"] = storage_url
    server = ServerProcess(fake.url, data_dir, env=env)
    server.start()
    fake.command(f"login {LOGIN}-{data_dir.name}")

    def restart() -> int:
        server.stop()
        server.start()  # the same store: the callers' tokens stay good
        assert server.process is not None
        pin(server.process.pid, 0)
        return server.process.pid

    try:

        async def sign_in_all() -> list[str | None]:
            return [(await sign_in_tokens(server)).access for _ in range(CALLERS)]

        bearers = asyncio.run(sign_in_all())
        assert server.process is not None
        pin(server.process.pid, 0)
        label = "sqlite" if storage_url == "sqlite" else storage_url.split(":", 1)[0]
        yield Target(name or f"this ({label})", server.url, bearers, restart, server.process.pid)
    finally:
        server.stop()


# --- The load: a minimal HTTP/1.1 client, so the callers cost little CPU of their own --------------


class Caller:
    """One MCP session over one keep-alive connection."""

    def __init__(self, target: Target, bearer: str | None) -> None:
        self.target = target
        self.headers = {
            "Host": target.url.removeprefix("http://"),
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        }
        if bearer:
            self.headers["Authorization"] = f"Bearer {bearer}"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.next_id = 1

    async def open(self) -> None:
        host, port = self.headers["Host"].split(":")
        self.reader, self.writer = await asyncio.open_connection(host, int(port))
        initialize = {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}
        status, headers, _ = await self._post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": initialize})
        if status != 200:
            raise RuntimeError(f"{self.target.name}: initialize answered HTTP {status}")
        self.headers["Mcp-Session-Id"] = headers["mcp-session-id"]
        self.headers["MCP-Protocol-Version"] = PROTOCOL
        await self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def close(self) -> None:
        """End the session as a well-behaved client does (DELETE), so idle sessions do not pile up."""
        if self.writer is not None and "Mcp-Session-Id" in self.headers:
            await self._send("DELETE", b"")
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()

    async def call(self, method: str) -> None:
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if method == "tools/call":
            message["params"] = {"name": "get_user_profile", "arguments": {}}
        status, _, body = await self._post(message)
        if status != 200 or b'"result"' not in body or b'"isError":true' in body:
            raise RuntimeError(f"{self.target.name} {method}: HTTP {status} {body[:300]!r}")

    async def _post(self, message: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        return await self._send("POST", json.dumps(message).encode())

    async def _send(self, method: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        assert self.reader is not None and self.writer is not None
        head = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        self.writer.write(f"{method} /mcp HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if headers.get("transfer-encoding") == "chunked":
            chunks = []
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                chunks.append((await self.reader.readexactly(size + 2))[:-2])
            await self.reader.readuntil(b"\r\n")
            return status, headers, b"".join(chunks)
        return status, headers, await self.reader.readexactly(int(headers.get("content-length", "0")))


def pin(pid: int, cpu: int) -> None:
    """Servers on CPU 0, callers and fake GitHub on CPU 1: the server under test never shares a core with them."""
    if len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(pid, {cpu})


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc/<pid>/stat (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass
class Sample:
    calls_per_second: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_call: float


@dataclass
class Slice:
    """One timed stretch of load on one server."""

    wall: float = 0.0
    cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def __add__(self, other: Slice) -> Slice:
        return Slice(self.wall + other.wall, self.cpu + other.cpu, self.latencies + other.latencies)

    def sample(self) -> Sample:
        lat = sorted(self.latencies)
        n = len(lat)
        return Sample(n / self.wall, lat[n // 2] * 1e3, lat[int(n * 0.99)] * 1e3, self.cpu / n * 1e3)


async def measure(target: Target, method: str, seconds: float, warmup: float) -> Slice:
    callers = [Caller(target, bearer) for bearer in target.bearers]
    await asyncio.gather(*(c.open() for c in callers))
    latencies: list[float] = []
    measuring = False
    stop = time.perf_counter() + warmup + seconds

    async def loop(caller: Caller) -> None:
        while (start := time.perf_counter()) < stop:
            await caller.call(method)
            if measuring:
                latencies.append(time.perf_counter() - start)

    tasks = [asyncio.create_task(loop(c)) for c in callers]
    try:
        await asyncio.sleep(warmup)
        measuring = True
        cpu0, wall0 = cpu_seconds(target.pid), time.perf_counter()
        await asyncio.gather(*tasks)
        cpu1, wall1 = cpu_seconds(target.pid), time.perf_counter()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*(c.close() for c in callers))
    return Slice(wall1 - wall0, cpu1 - cpu0, latencies)


# --- Rounds and report -------------------------------------------------------------------------


@dataclass
class Series:
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, name: str, sample: Sample) -> None:
        self.samples.setdefault(name, []).append(sample)


def fmt(s: Sample) -> str:
    return (
        f"{s.calls_per_second:7.0f}/s  p50 {s.p50_ms:6.2f} ms  p99 {s.p99_ms:6.2f} ms  "
        f"cpu {s.cpu_ms_per_call:5.3f} ms/call"
    )


def run_rounds(
    targets: list[Target], method: str, rounds: int, seconds: float, warmup: float, label: str
) -> dict[str, list[Sample]]:
    series = Series()
    for r in range(rounds):
        for target in targets:
            target.pid = target.restart()
        # A B B A (half the time each): a load that drifts during the round hits both servers alike. The
        # order turns by one server each round, so every server takes every place equally often: in an A/A
        # run, the same server measured in the middle of the order came out 3.6 % dearer than at the ends.
        turn = r % len(targets)
        order = targets[turn:] + targets[:turn]
        slices = {target.name: Slice() for target in targets}
        for target in [*order, *order[::-1]]:
            slices[target.name] += asyncio.run(measure(target, method, seconds / 2, warmup))
        for name, combined in slices.items():
            series.add(name, combined.sample())
        plain = series.samples["plain"][-1]
        print(f"{label} round {r + 1}")
        for target in targets:
            sample = series.samples[target.name][-1]
            ratios = (
                ""
                if target.name == "plain"
                else f"  | x{sample.calls_per_second / plain.calls_per_second:.3f} calls/s"
                f"  x{sample.cpu_ms_per_call / plain.cpu_ms_per_call:.3f} cpu"
            )
            print(f"  {target.name:16s} {fmt(sample)}{ratios}", flush=True)
    return series.samples


def median_sample(samples: list[Sample]) -> Sample:
    return Sample(
        statistics.median(s.calls_per_second for s in samples),
        statistics.median(s.p50_ms for s in samples),
        statistics.median(s.p99_ms for s in samples),
        statistics.median(s.cpu_ms_per_call for s in samples),
    )


def ratios(mine: list[Sample], plain: list[Sample], attr: str) -> list[float]:
    """Per-round ratios: each round's pair ran interleaved, so drift cancels within a ratio."""
    return [getattr(a, attr) / getattr(b, attr) for a, b in zip(mine, plain, strict=True)]


def spread(values: list[float]) -> str:
    """The middle half of the rounds: wide means a noisy machine, so run again."""
    if len(values) < 4:
        return ""
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"(middle half {q1:.3f}-{q3:.3f})"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(results: dict[str, dict[str, list[Sample]]], targets: list[Target], upstream_per_call: float) -> None:
    print("\nMedians")
    for method, samples in results.items():
        for target in targets:
            print(f"  {method:22s} {target.name:16s} {fmt(median_sample(samples[target.name]))}")
    print("\nTargets (median of per-round ratios)")
    for target in targets[1:]:
        name = target.name
        tools, ping, slow = results["tools/call"], results["ping"], results["tools/call @50ms"]
        rows = [
            ("tools/call calls/s", ratios(tools[name], tools["plain"], "calls_per_second"), ">= 0.95", 0.95, 1),
            ("tools/call cpu/call", ratios(tools[name], tools["plain"], "cpu_ms_per_call"), "<= 1.05", 1.05, -1),
            ("ping calls/s", ratios(ping[name], ping["plain"], "calls_per_second"), ">= 0.95", 0.95, 1),
            ("ping cpu/call", ratios(ping[name], ping["plain"], "cpu_ms_per_call"), "(report)", 0, 0),
        ]
        for what, values, goal, bound, sign in rows:
            value = statistics.median(values)
            goal = goal if target.judged else "(report)"
            mark = "    " if sign == 0 or not target.judged else verdict(value * sign >= bound * sign)
            print(f"  {name:16s} {what:22s} x{value:6.3f}   {goal:9s} {mark} {spread(values)}")
        added = [a.p50_ms - b.p50_ms for a, b in zip(slow[name], slow["plain"], strict=True)]
        value = statistics.median(added)
        ok = verdict(value <= 1.0) if target.judged else "    "
        goal = "<= 1 ms " if target.judged else "(report)"
        print(f"  {name:16s} {'added p50 @50ms':22s} {value:+6.2f} ms  {goal}   {ok} {spread(added)}")
    print(f"  upstream GET /user per tool call: {upstream_per_call:.3f}  (target 1)  {verdict(upstream_per_call == 1)}")


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    return f"{os.cpu_count()} CPUs ({model}), load average {os.getloadavg()[0]:.2f}, Python {sys.version.split()[0]}"


def main(argv: list[str]) -> int:
    if argv[:1] == ["_fake"]:
        serve_fake()
        return 0
    if argv[:1] == ["_plain"]:
        serve_plain(int(argv[1]), argv[2], argv[3], argv[4] == "sdk-auth")
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=16, help="rounds of A B B A (default 16)")
    parser.add_argument("--seconds", type=float, default=1.0, help="measured seconds per server per round")
    parser.add_argument(
        "--storage-url",
        action="append",
        help="MCP_STORAGE_URL for this server, or `redis` for a redis-server the bench starts on a free port; "
        "repeat to compare stores side by side (default: SQLite in a temp dir)",
    )
    parser.add_argument(
        "--sdk-auth-floor",
        action="store_true",
        help="also run the plain server behind the SDK's own bearer layers (a verifier accepting any token)",
    )
    parser.add_argument("--no-observability", action="store_true", help="skip the this+metrics and this+tracing runs")
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run (figures are not meaningful)")
    args = parser.parse_args(argv)
    rounds, seconds, warmup = (1, 0.4, 0.1) if args.quick else (args.rounds, args.seconds, 0.3)
    print(machine())
    fake = FakeProcess()
    pin(fake.process.pid, 1)
    pin(os.getpid(), 1)
    try:
        with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
            targets = [stack.enter_context(plain_server(fake, Path(tmp)))]
            if args.sdk_auth_floor:
                targets.append(stack.enter_context(plain_server(fake, Path(tmp), sdk_auth=True)))
            for i, url in enumerate(args.storage_url or ["sqlite"]):
                if url == "redis":  # a redis-server of the bench's own, on the callers' CPU like the fake GitHub
                    redis_server = stack.enter_context(running_redis(Path(tmp) / f"redis{i}"))
                    assert redis_server.process is not None
                    pin(redis_server.process.pid, 1)
                    url = redis_server.url
                targets.append(stack.enter_context(this_server(fake, url, Path(tmp) / f"server{i}")))
            if not args.no_observability:
                targets += observed_servers(stack, fake, Path(tmp))
            results = {m: run_rounds(targets, m, rounds, seconds, warmup, m) for m in ("tools/call", "ping")}
            fake.command("count")  # empties the stand-in's request log
            calls = 20
            asyncio.run(call_n(next(t for t in targets if t.name.startswith("this (")), calls))
            upstream_per_call = int(fake.command("count")) / calls
            fake.command("latency 0.05")
            results["tools/call @50ms"] = run_rounds(targets, "tools/call", rounds, seconds, warmup, "tools/call @50ms")
            report(results, targets, upstream_per_call)
    finally:
        fake.stop()
    return 0


def observed_servers(stack: contextlib.ExitStack, fake: FakeProcess, tmp: Path) -> list[Target]:
    """This server with metrics on, and with tracing on exporting to an OTLP receiver that only counts."""
    metrics: dict[str, str | None] = {"MCP_METRICS_PORT": str(free_port())}
    receiver = OtlpReceiver(keep=False)
    stack.callback(receiver.stop)
    tracing: dict[str, str | None] = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "bench"}
    with_metrics = stack.enter_context(this_server(fake, "sqlite", tmp / "metrics", metrics, "this+metrics"))
    with_tracing = stack.enter_context(this_server(fake, "sqlite", tmp / "tracing", tracing, "this+tracing"))
    with_tracing.judged = False
    return [with_metrics, with_tracing]


async def call_n(target: Target, n: int) -> None:
    caller = Caller(target, target.bearers[0])
    await caller.open()
    try:
        for _ in range(n):
            await caller.call("tools/call")
    finally:
        await caller.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
