"""Rules this server relies on but does not implement itself: PKCE and the redirect URI binding are
checked by the SDK's /token handler, the consent form's CSRF token by consent.py. Nothing else here
would notice if an SDK upgrade or a refactoring dropped one, so each test refuses to pass without it.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from urllib.parse import urljoin

import httpx2
import pytest

from tests.fake_github import FakeGitHub
from tests.support import (
    CLIENT_REDIRECT,
    AuthorizeRequest,
    ServerProcess,
    approve_sign_in,
    authorize_request,
    exchange_code,
    form_fields,
    open_consent,
    register_client,
    submit_consent,
    table_rows,
)

pytestmark = pytest.mark.anyio

OTHER_REDIRECT = "http://127.0.0.1:2/other-callback"


def db(server: ServerProcess) -> Path:
    return server.data_dir / "mcp.sqlite3"


def families_of(server: ServerProcess, client_id: str) -> list[dict[str, object]]:
    """Token families minted for a client: one per successful code exchange."""
    return [row for row in table_rows(db(server), "families") if row["client_id"] == client_id]


def assert_refused_without_tokens(response: httpx2.Response, server: ServerProcess, client_id: str) -> None:
    assert response.status_code == 400, response.text
    assert "access_token" not in response.text and "refresh_token" not in response.text
    assert families_of(server, client_id) == []


async def token_request(http: httpx2.AsyncClient, server: ServerProcess, form: dict[str, str]) -> httpx2.Response:
    return await http.post(f"{server.url}/token", data=form)


def code_form(auth: AuthorizeRequest, code: str, **changes: str | None) -> dict[str, str]:
    """The genuine /token form for `code`, with some fields changed (None leaves one out)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": auth.redirect_uri,
        "client_id": auth.client_id,
        "code_verifier": auth.verifier,
    } | changes
    return {name: value for name, value in form.items() if value is not None}


async def test_code_with_a_wrong_code_verifier_is_refused_and_spends_nothing(
    github: FakeGitHub, server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    client_id = await register_client(http, server.url, [CLIENT_REDIRECT])
    auth = authorize_request(server.url, client_id, CLIENT_REDIRECT)
    code = (await approve_sign_in(http, auth))["code"]

    for wrong in (secrets.token_urlsafe(48), auth.verifier[:-1] + ("A" if auth.verifier[-1] != "A" else "B")):
        refused = await token_request(http, server, code_form(auth, code, code_verifier=wrong))
        # RFC 7636 §4.6: a verifier whose S256 is not the stored challenge gets invalid_grant, no tokens.
        assert_refused_without_tokens(refused, server, client_id)
        assert refused.json()["error"] == "invalid_grant"

    # A failed check spends nothing: whoever intercepted the code cannot void the user's sign-in by
    # guessing, and the genuine client, which alone holds the verifier, still gets its tokens once.
    genuine = await exchange_code(http, server.url, auth, code)
    assert genuine.status_code == 200, genuine.text
    assert len(families_of(server, client_id)) == 1


async def test_code_exchanged_with_another_redirect_uri_is_refused(
    github: FakeGitHub, server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    """Both URIs are registered to the client: only the binding of the code to its /authorize URI refuses it."""
    client_id = await register_client(http, server.url, [CLIENT_REDIRECT, OTHER_REDIRECT])
    auth = authorize_request(server.url, client_id, CLIENT_REDIRECT)
    code = (await approve_sign_in(http, auth))["code"]

    for changed in (OTHER_REDIRECT, f"{CLIENT_REDIRECT}/", None):
        refused = await token_request(http, server, code_form(auth, code, redirect_uri=changed))
        # RFC 6749 §4.1.3: redirect_uri must be present and identical to the one sent to /authorize.
        # (The SDK answers invalid_request; §5.2 would name it invalid_grant. Either refuses.)
        assert_refused_without_tokens(refused, server, client_id)
        assert refused.json()["error"] in ("invalid_request", "invalid_grant")

    genuine = await exchange_code(http, server.url, auth, code)
    assert genuine.status_code == 200, genuine.text


async def test_consent_token_of_one_request_does_not_approve_another_in_the_same_browser(
    github: FakeGitHub, server: ServerProcess, http: httpx2.AsyncClient
) -> None:
    """The browser binding holds (same cookie jar): only the request binding can refuse this."""
    client_a = await register_client(http, server.url, [CLIENT_REDIRECT], "App A")
    client_b = await register_client(http, server.url, [CLIENT_REDIRECT], "App B")
    page_a = await open_consent(http, authorize_request(server.url, client_a, CLIENT_REDIRECT))
    page_b = await open_consent(http, authorize_request(server.url, client_b, CLIENT_REDIRECT))
    fields_a, fields_b = form_fields(page_a.text), form_fields(page_b.text)
    assert fields_a["request"] != fields_b["request"] and fields_a["csrf"] != fields_b["csrf"]

    for action in ("approve", "deny"):
        swapped = fields_b | {"csrf": fields_a["csrf"], "action": action}
        refused = await http.post(urljoin(str(page_b.url), "/consent"), data=swapped)
        # OWASP CSRF: the token is bound to the session and to the request it was rendered for.
        assert 400 <= refused.status_code < 500, refused.text
        assert "location" not in refused.headers
        assert "code=" not in refused.text

    assert github.authorize_requests == []
    stages = {json.loads(r["record"])["client_id"]: r["stage"] for r in table_rows(db(server), "pending")}
    assert stages[client_a] == stages[client_b] == "consent"  # nothing approved, nothing denied
    # The refusal was the binding, not a dead request: B's own form still works.
    to_github = await submit_consent(http, page_b, "approve")
    assert to_github.status_code == 303 and "/login/oauth/authorize" in to_github.headers["location"]
