"""Handlers that turn every exception into an answer of their own (the SDK's /authorize, our
/revoke's parser guard) let an unreachable store through, so that it becomes a 503."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from urllib.parse import urlencode

import pytest
from mcp.shared.auth import OAuthClientInformationFull
from starlette.requests import Request
from starlette.types import Message

from ghmcp.storage import StoreUnavailable
from ghmcp.web.build import build_provider
from ghmcp.web.routes import Authorize, Revocation
from tests.support import free_port, in_process_settings

pytestmark = pytest.mark.anyio


def request(method: str, query: bytes = b"", body: bytes = b"") -> Request:
    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    headers = [(b"content-type", b"application/x-www-form-urlencoded")]
    scope = {"type": "http", "method": method, "path": "/", "query_string": query, "headers": headers}
    return Request(scope, receive)


async def test_authorize_and_revoke_raise_store_unavailable(
    monkeypatch: pytest.MonkeyPatch, github_url: str, tmp_path: Path
) -> None:
    nothing_listens = f"redis://127.0.0.1:{free_port()}/0"
    settings = in_process_settings(monkeypatch, github_url, tmp_path).model_copy(
        update={"storage_url": nothing_listens}
    )
    provider = build_provider(settings)
    try:
        with pytest.raises(StoreUnavailable):
            await Authorize(settings, provider).handle(request("GET", b"client_id=c&response_type=code"))
        with pytest.raises(StoreUnavailable):
            await Revocation(provider).handle(request("POST", body=b"client_id=c&token=t"))
    finally:
        await provider.github.http.aclose()
        await provider.storage.close()


async def test_authorize_raises_store_unavailable_when_the_pending_sign_in_cannot_be_stored(
    monkeypatch: pytest.MonkeyPatch, github_url: str, tmp_path: Path
) -> None:
    """The client loads, then storing the sign-in fails: the SDK would answer a server_error redirect."""
    settings = in_process_settings(monkeypatch, github_url, tmp_path)
    provider = build_provider(settings)
    client = OAuthClientInformationFull.model_validate(
        {"client_id": "c1", "redirect_uris": ["http://127.0.0.1:1/cb"], "token_endpoint_auth_method": "none"}
    )
    await provider.register_client(client)
    params = {
        "client_id": "c1",
        "response_type": "code",
        "redirect_uri": "http://127.0.0.1:1/cb",
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
        "state": "s",
    }
    writer = sqlite3.connect(tmp_path / "mcp.sqlite3", isolation_level=None)
    try:
        provider.storage._db.execute("PRAGMA busy_timeout = 100")  # type: ignore[attr-defined]  # fail fast here
        writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(StoreUnavailable):
            await Authorize(settings, provider).handle(request("GET", urlencode(params).encode()))
    finally:
        with contextlib.suppress(sqlite3.Error):
            writer.execute("ROLLBACK")
        writer.close()
        await provider.github.http.aclose()
        await provider.storage.close()
