"""Self-test: the fake must answer the way github.com documents, or tests lie."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from tests.fake_github import FakeGitHub, pkce_challenge, running_fake_github

REDIRECT = "http://127.0.0.1:9/oauth/callback"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeGitHub, str]]:
    """One uvicorn for the module keeps the suite fast; ``gh`` resets state per test."""
    fake = FakeGitHub()
    with running_fake_github(fake) as base:
        yield fake, base


@pytest.fixture
def gh(server: tuple[FakeGitHub, str]) -> Iterator[FakeGitHub]:
    fake, _ = server
    fake.reset()
    fake.expiring_tokens = False
    yield fake
    fake.reset()
    fake.expiring_tokens = False


@pytest.fixture
def client(server: tuple[FakeGitHub, str]) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=server[1], follow_redirects=False, timeout=5) as c:
        yield c


def authorize(client: httpx2.Client, **extra: str) -> dict[str, list[str]]:
    params = {
        "client_id": "fake-client-id",
        "redirect_uri": REDIRECT,
        "state": "s t+/=",
    }
    params.update(extra)
    resp = client.get("/login/oauth/authorize", params=params)
    assert resp.status_code == 302, resp.text
    location = resp.headers["location"]
    assert location.startswith(REDIRECT)
    return parse_qs(urlsplit(location).query)


def exchange(client: httpx2.Client, **form: str) -> dict[str, object]:
    body = {"client_id": "fake-client-id", "client_secret": "fake-client-secret"}
    body.update(form)
    resp = client.post("/login/oauth/access_token", data=body, headers={"Accept": "application/json"})
    assert resp.status_code == 200  # GitHub reports token errors with HTTP 200
    data: dict[str, object] = resp.json()
    return data


def login_flow(gh: FakeGitHub, client: httpx2.Client, scope: str = "") -> str:
    verifier = secrets.token_urlsafe(48)
    query = authorize(
        client,
        scope=scope,
        code_challenge=pkce_challenge(verifier),
        code_challenge_method="S256",
    )
    token = exchange(client, code=query["code"][0], redirect_uri=REDIRECT, code_verifier=verifier)
    return str(token["access_token"])


def test_code_flow_with_pkce(gh: FakeGitHub, client: httpx2.Client) -> None:
    gh.add_user("octocat", id=1, name="The Octocat")
    gh.current_login = "octocat"
    verifier = secrets.token_urlsafe(48)
    query = authorize(
        client,
        scope="read:user read:org",
        code_challenge=pkce_challenge(verifier),
        code_challenge_method="S256",
    )
    assert query["state"] == ["s t+/="]
    assert gh.authorize_requests[-1]["code_challenge"] == pkce_challenge(verifier)
    code = query["code"][0]
    assert exchange(client, code=code, code_verifier="x" * 43)["error"] == ("bad_verification_code")
    query = authorize(client, code_challenge=pkce_challenge(verifier), code_challenge_method="S256")
    # Form-encoded unless JSON is asked for, like GitHub.
    resp = client.post(
        "/login/oauth/access_token",
        data={"code": query["code"][0], "code_verifier": verifier},
        auth=("fake-client-id", "fake-client-secret"),
    )
    assert resp.headers["content-type"].startswith("application/x-www-form-urlencoded")
    form = parse_qs(resp.text)
    assert form["access_token"][0].startswith("gho_")
    assert form["token_type"] == ["bearer"]
    token = login_flow(gh, client, scope="read:user read:org")
    assert exchange(client, code="nope")["error"] == "bad_verification_code"
    assert gh.live_tokens_for("octocat")[-1] == token


def test_code_is_single_use_and_secret_checked(gh: FakeGitHub, client: httpx2.Client) -> None:
    gh.add_user("octocat", id=1)
    gh.current_login = "octocat"
    code = authorize(client, scope="repo")["code"][0]
    assert exchange(client, code=code, client_secret="wrong")["error"] == ("incorrect_client_credentials")
    first = exchange(client, code=code)
    assert first["scope"] == "repo" and first["token_type"] == "bearer"
    again = exchange(client, code=code)
    assert again["error"] == "bad_verification_code"
    assert str(again["error_uri"]).startswith("https://docs.github.com/")
    code = authorize(client)["code"][0]
    assert exchange(client, code=code, redirect_uri="http://evil/")["error"] == ("redirect_uri_mismatch")


def test_user_auth_etag_and_rate_limit(gh: FakeGitHub, client: httpx2.Client) -> None:
    assert client.get("/user").json()["message"] == "Requires authentication"
    bad = client.get("/user", headers={"Authorization": "Bearer gho_unknown"})
    assert bad.status_code == 401 and bad.json()["message"] == "Bad credentials"
    gh.add_user("octocat", id=1, email="o@example.com")
    token = gh.issue_token("octocat", ["read:org", "repo"]).access_token
    ok = client.get("/user", headers={"Authorization": f"token {token}"})
    assert ok.status_code == 200
    assert ok.json()["login"] == "octocat" and ok.json()["type"] == "User"
    assert ok.headers["x-oauth-scopes"] == "read:org, repo"
    assert ok.headers["x-ratelimit-remaining"] == "4999"
    etag = ok.headers["etag"]
    cached = client.get("/user", headers={"Authorization": f"Bearer {token}", "If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.headers["x-ratelimit-remaining"] == "4999"
    gh.expire_token(token)
    assert client.get("/user", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert gh.count("/user") == 5
    missing = client.get("/nope")  # not GitHub's 404: a tool would call it "not found, or no access"
    assert missing.status_code == 501
    where = "ghmcp/standin/ (routes in oauth.py)"
    assert missing.json()["message"] == f"GET /nope is not in the demo stand-in: add it in {where}"


def test_expiring_tokens_refresh_rotation(gh: FakeGitHub, client: httpx2.Client) -> None:
    gh.expiring_tokens = True
    gh.add_user("octocat", id=1)
    gh.current_login = "octocat"
    grant = exchange(client, code=authorize(client, scope="repo")["code"][0])
    assert str(grant["access_token"]).startswith("ghu_")
    assert str(grant["refresh_token"]).startswith("ghr_")
    assert grant["expires_in"] == 28800 and grant["refresh_token_expires_in"] == 15897600
    assert grant["scope"] == ""
    gh.expire_all_access_tokens()
    auth = {"Authorization": f"Bearer {grant['access_token']}"}
    assert client.get("/user", headers=auth).status_code == 401
    new = exchange(client, grant_type="refresh_token", refresh_token=str(grant["refresh_token"]))
    assert new["access_token"] != grant["access_token"]
    assert client.get("/user", headers={"Authorization": f"Bearer {new['access_token']}"}).status_code == 200
    reused = exchange(client, grant_type="refresh_token", refresh_token=str(grant["refresh_token"]))
    assert reused["error"] == "bad_refresh_token"
    gh.refuse_refresh = True
    refused = exchange(client, grant_type="refresh_token", refresh_token=str(new["refresh_token"]))
    assert refused["error"] == "bad_refresh_token"


def test_deny_and_not_signed_in_picks_a_user(gh: FakeGitHub, client: httpx2.Client) -> None:
    gh.add_user("octocat", id=1)
    gh.current_login = "octocat"
    gh.deny_next = True
    query = authorize(client, state="xyz")
    assert query["error"] == ["access_denied"] and query["state"] == ["xyz"]
    assert "code" not in query and gh.deny_next is False
    gh.current_login = None  # nobody signed in: the picker asks who you are, as GitHub's login page would
    params = {"client_id": "fake-client-id", "redirect_uri": REDIRECT, "state": "xyz"}
    picker = client.get("/login/oauth/authorize", params=params)
    assert picker.status_code == 200 and 'data-login="octocat"' in picker.text
    picked = client.get("/login/oauth/authorize", params=params | {"login": "octocat"})
    assert picked.status_code == 302 and parse_qs(urlsplit(picked.headers["location"]).query)["state"] == ["xyz"]
    assert "code" in parse_qs(urlsplit(picked.headers["location"]).query)
    assert client.get("/login/oauth/authorize", params=params | {"login": "nobody"}).status_code == 400
    unknown = client.get("/login/oauth/authorize", params={"client_id": "other"})
    assert unknown.status_code == 404 and "location" not in unknown.headers


def test_revoke_endpoint(gh: FakeGitHub, client: httpx2.Client) -> None:
    gh.add_user("octocat", id=1)
    token = gh.issue_token("octocat").access_token
    path = "/applications/fake-client-id/token"
    body = {"access_token": token}
    assert client.request("DELETE", path, json=body).status_code == 401
    gh.fail_revocations = True
    creds = ("fake-client-id", "fake-client-secret")
    assert client.request("DELETE", path, json=body, auth=creds).status_code == 500
    gh.fail_revocations = False
    assert client.request("DELETE", path, json=body, auth=creds).status_code == 204
    assert gh.revocations == [token]
    assert client.get("/user", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.request("DELETE", path, json=body, auth=creds).status_code == 404


def test_org_membership_and_repos(gh: FakeGitHub, client: httpx2.Client) -> None:
    gh.add_user("octocat", id=1, orgs=["GitHub"])
    scoped = {"Authorization": f"Bearer {gh.issue_token('octocat', ['read:org']).access_token}"}
    bare = {"Authorization": f"Bearer {gh.issue_token('octocat').access_token}"}
    member = client.get("/user/memberships/orgs/github", headers=scoped)
    assert member.status_code == 200
    assert member.json()["state"] == "active"
    assert member.json()["organization"]["login"] == "GitHub"
    assert client.get("/user/memberships/orgs/other", headers=scoped).status_code == 404
    assert client.get("/user/memberships/orgs/github", headers=bare).status_code == 403
    public = client.get("/user/repos", headers=bare).json()
    assert all(not r["private"] for r in public) and len(public) == 3
    repo = {"Authorization": f"Bearer {gh.issue_token('octocat', ['repo']).access_token}"}
    page = client.get("/user/repos", headers=repo, params={"per_page": 2, "page": 3})
    assert [r["full_name"] for r in page.json()] == ["octocat/website"]
    assert 'rel="prev"' in page.headers["link"]
