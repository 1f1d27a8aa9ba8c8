"""The soak's load: one sign-in as a client and its user's browser do it, its tool calls, its end.

`SignInJob.run` is a whole life: the real browser leg through `/authorize`, the consent page and the
stand-in's user picker to the client's redirect URI (the test suite's `Browser`), the code exchange,
one MCP session with its tool calls (`bench_overhead.Caller`: raw HTTP/1.1, so the load generator
stays cheap), sometimes a refresh, then revocation unless the sign-in is one of the live set.
Every failure is counted by step, never raised: a soak reports what broke and goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx2
from bench_overhead import Caller, Target

from tests.support import CLIENT_REDIRECT, Browser, BrowserStopped, ManualClient, ServerProcess, query


@dataclass
class Tally:
    """What happened so far: counts by step, the first error of each step, and the live sign-ins."""

    done: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    first_error: dict[str, str] = field(default_factory=dict)
    consents: set[tuple[str, str]] = field(default_factory=set)  # (login, client_id) approved
    live: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (client_id, /token answer)
    last_sign_in: float = 0.0

    def fail(self, step: str, detail: str) -> None:
        self.errors[step] += 1
        self.first_error.setdefault(step, detail[:300])


@dataclass
class SignInJob:
    server: ServerProcess
    http: httpx2.AsyncClient  # /register, /token and /revoke: no cookies involved
    tally: Tally
    calls_per_sign_in: int

    async def register(self, name: str) -> str:
        body = {"redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": "none", "client_name": name}
        response = await self.http.post(f"{self.server.url}/register", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"registration answered HTTP {response.status_code}: {response.text[:200]}")
        return str(response.json()["client_id"])

    async def browser_leg(self, browser: Browser, client_id: str, login: str) -> str | None:
        """From `/authorize` to the client's redirect URI with a fresh cookie jar; the code, or None."""
        browser.http.cookies.clear()
        browser.github_login = login
        try:
            params = query(await browser.run(ManualClient(self.server, client_id).authorize_url()))
        except (BrowserStopped, httpx2.HTTPError, AssertionError) as exc:
            self.tally.fail("sign-in", str(exc))
            return None
        if "code" not in params:
            self.tally.fail("sign-in", f"redirect without a code: error={params.get('error')}")
            return None
        self.tally.consents.add((login, client_id))
        return params["code"]

    async def token(self, client_id: str, step: str, **form: str) -> dict[str, Any] | None:
        response = await self.http.post(f"{self.server.url}/token", data={"client_id": client_id, **form})
        if response.status_code != 200:
            self.tally.fail(step, f"HTTP {response.status_code}: {response.text[:200]}")
            return None
        return dict(response.json())

    async def exchange(self, client_id: str, code: str) -> dict[str, Any] | None:
        verifier = ManualClient(self.server, client_id).verifier
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CLIENT_REDIRECT}
        return await self.token(client_id, "code exchange", code_verifier=verifier, **form)

    async def refresh(self, client_id: str, tokens: dict[str, Any]) -> dict[str, Any] | None:
        return await self.token(client_id, "refresh", grant_type="refresh_token", refresh_token=tokens["refresh_token"])

    async def tool_calls(self, bearer: str, calls: int) -> None:
        """One MCP session (initialize, `calls` x get_user_profile, DELETE), as a client does it."""
        caller = Caller(Target("soak", self.server.url, [], lambda: 0), bearer)
        try:
            await caller.open()
            for _ in range(calls):
                await caller.call("tools/call")
                self.tally.done["tool call"] += 1
        except (RuntimeError, OSError, asyncio.IncompleteReadError) as exc:
            self.tally.fail("tool call", str(exc))
        finally:
            await caller.close()

    async def revoke(self, client_id: str, tokens: dict[str, Any]) -> None:
        form = {"client_id": client_id, "token": tokens["refresh_token"]}
        response = await self.http.post(f"{self.server.url}/revoke", data=form)
        if response.status_code != 200:
            self.tally.fail("revoke", f"HTTP {response.status_code}: {response.text[:200]}")

    async def run(self, browser: Browser, client_id: str, login: str, *, refresh: bool, live: bool) -> None:
        code = await self.browser_leg(browser, client_id, login)
        tokens = None if code is None else await self.exchange(client_id, code)
        self.tally.last_sign_in = time.time()
        if tokens is None:
            return
        self.tally.done["sign-in"] += 1
        await self.tool_calls(tokens["access_token"], self.calls_per_sign_in)
        if refresh:  # the superseded access token is left for the sweeper
            tokens = await self.refresh(client_id, tokens) or tokens
        if live:
            self.tally.live.append((client_id, tokens))
        else:
            await self.revoke(client_id, tokens)

    async def abandon_at_consent(self, browser: Browser, client_id: str) -> None:
        """A user who closes the tab on the consent page: a pending sign-in for the sweeper."""
        browser.http.cookies.clear()
        response = await browser.http.get(ManualClient(self.server, client_id).authorize_url())
        if response.status_code != 302 or (await browser.http.get(response.headers["location"])).status_code != 200:
            self.tally.fail("abandoned sign-in", f"HTTP {response.status_code} at /authorize")

    async def leave_code(self, browser: Browser, client_id: str, login: str) -> None:
        """A client that never exchanges its code: a code and a grant for the sweeper."""
        await self.browser_leg(browser, client_id, login)

    async def check_live(self) -> None:
        """After the sweep: every live sign-in refreshes (its access token has expired) and calls a tool."""
        for client_id, tokens in self.tally.live:
            fresh = await self.refresh(client_id, tokens)
            if fresh is not None:
                await self.tool_calls(fresh["access_token"], 1)
                self.tally.done["live check"] += 1
