"""`main.py --demo`: the whole flow on one loopback server, with nothing to set up and nothing kept.

A stand-in for GitHub (`github_standin`, the same one the tests use) is mounted under
`/demo-github` on this server, and the settings point the GitHub URLs at it (settings.py refuses
`--demo` on a non-loopback address: anyone reaching the picker may sign in as any demo user).
The store and the generated key live in a temporary directory removed at exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from ghmcp.asgi import pages
from ghmcp.auth.keys import new_secret
from ghmcp.config import Settings
from ghmcp.standin import GitHubStandIn

PREFIX = "/demo-github"
CLIENT_ID = "demo-client-id"
CLIENT_SECRET = "demo-client-secret"  # noqa: S105 (the stand-in's app, reachable on loopback only)
USERS: tuple[
    tuple[str, int, str, list[str]], ...
] = (  # (login, id, name, orgs): deterministic, so the README and tests can name them
    ("octocat", 583231, "The Octocat", ["github"]),
    ("monalisa", 2, "Mona Lisa Octocat", ["github", "octo-org"]),
    ("hubot", 480938, "Hubot", []),
)

logger = logging.getLogger("mcp_server")


@contextlib.contextmanager
def settings_overrides() -> Iterator[dict[str, Any]]:
    """What `--demo` sets: the stand-in's app credentials, and a store and key in a fresh temporary directory,
    removed when the block ends (main.py ends on SIGTERM as on Ctrl+C, so `kill` removes it too)."""
    with tempfile.TemporaryDirectory(prefix="mcp-demo-", ignore_cleanup_errors=True) as data_dir:
        # The key is made here rather than by keys.py, whose log line would ask to keep this throw-away file safe.
        key = os.open(Path(data_dir) / "secret_key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(key, "w") as f:
            f.write(new_secret())
        yield {
            "demo": True,
            "github_client_id": CLIENT_ID,
            "github_client_secret": CLIENT_SECRET,
            "storage_url": f"sqlite:///{data_dir}/mcp.sqlite3",
        }


def standin(settings: Settings) -> GitHubStandIn:
    github = GitHubStandIn(CLIENT_ID, CLIENT_SECRET, callback_url=settings.callback_url)
    for login, user_id, name, orgs in USERS:
        github.add_user(login, id=user_id, name=name, email=f"{login}@example.com", orgs=orgs)
    return github


def mount(app: Starlette, settings: Settings) -> None:
    """Serve the stand-in under PREFIX, and say loudly, in the log and on every page, that this is a demo."""
    app.router.routes.insert(0, Mount(PREFIX, app=standin(settings).app))
    app.add_middleware(LoopbackHostOnly)
    pages.DEMO = True
    logger.warning(
        "DEMO MODE: GitHub is replaced by a built-in stand-in at %s (pick a demo user there); the store and its "
        "key are temporary, in %s, removed at exit. Do not use it for anything real.",
        settings.github_url,
        Path(settings.storage_url.removeprefix("sqlite:///")).parent,
    )


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class LoopbackHostOnly:
    """DNS rebinding: a page on another site whose name resolves to 127.0.0.1 must not drive the demo.

    The stand-in's user picker signs anyone in as anyone; only a browser that asked for this server
    by a loopback name reaches it (or any other page). Others get 421 Misdirected Request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _host_name(scope) not in LOOPBACK_NAMES:
            body = b"This demo server answers only on 127.0.0.1, localhost or [::1]."
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 421, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def _host_name(scope: Scope) -> str:
    host = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"host"), "")
    name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    return (name if port.isdigit() else host).lower()
