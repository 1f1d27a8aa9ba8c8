"""The stand-in's web pages: every `html_url` it hands out opens a small page naming the thing, escaped."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from tests.fake_github import FakeComment, FakeGitHub

HELLO = "/repos/bob/hello-world"


@pytest.fixture
def rest(github: FakeGitHub, github_url: str) -> Iterator[httpx2.Client]:
    """A client of the fake GitHub; REST calls carry alice's token, and redirects are not followed."""
    token = github.issue_token("alice", ["repo"]).access_token
    with httpx2.Client(base_url=github_url, timeout=10, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


def html_url(rest: httpx2.Client, path: str) -> str:
    answer = rest.get(path)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["html_url"])


def page(url: str) -> httpx2.Response:
    """What a browser gets: no token, a fragment dropped."""
    return httpx2.get(url, timeout=10)


@pytest.mark.parametrize(
    ("path", "ends_with", "names"),
    [
        ("/user", "/alice", ["alice", "Alice Example", "hello-world"]),
        (HELLO, "/bob/hello-world", ["bob/hello-world", "bob&#39;s first repo", "Crash on start", "src/main.py"]),
        (f"{HELLO}/issues/1", "/bob/hello-world/issues/1", ["Crash on start #1", "It crashes.", "bob: Same here"]),
        (f"{HELLO}/pulls/2", "/bob/hello-world/pull/2", ["Add a feature #2", "src/main.py +3 -1", "feature into main"]),
        (f"{HELLO}/issues/2", "/bob/hello-world/pull/2", ["Add a feature #2"]),  # the issues API names the pull
    ],
)
def test_each_html_url_opens_a_page_naming_the_thing(
    rest: httpx2.Client, github_url: str, path: str, ends_with: str, names: list[str]
) -> None:
    url = html_url(rest, path)
    assert url == f"{github_url}{ends_with}"
    shown = page(url)
    assert shown.status_code == 200 and shown.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in shown.headers["content-security-policy"]
    assert "stand-in for GitHub" in shown.text
    for name in names:
        assert name in shown.text, (name, shown.text)


def test_a_comments_html_url_opens_its_issue(rest: httpx2.Client) -> None:
    comment = rest.get(f"{HELLO}/issues/1/comments").json()[0]
    assert comment["html_url"].endswith("/bob/hello-world/issues/1#issuecomment-101")
    assert "Same here" in page(comment["html_url"]).text


def test_every_value_is_escaped(github: FakeGitHub, github_url: str, rest: httpx2.Client) -> None:
    bob = github.users["bob"]
    bob.bio = "<b>bold</b>"
    bob.repos[0].description = "<script>alert(1)</script>"
    issue = bob.repos[0].issues[0]
    issue.title = '"><img src=x onerror=alert(1)>'
    issue.comments.append(FakeComment(103, "bob", "<iframe src=//evil.example>"))
    urls = [f"{github_url}/bob", html_url(rest, HELLO), html_url(rest, f"{HELLO}/issues/1")]
    shown = " ".join(page(url).text for url in urls)
    for raw in ("<b>bold", "<script>alert", "<img src=x", "<iframe"):
        assert raw not in shown
    for escaped in ("&lt;b&gt;bold", "&lt;script&gt;alert(1)", "&#34;&gt;&lt;img src=x", "&lt;iframe src"):
        assert escaped in shown


def test_issue_and_pull_paths_lead_to_each_other(github_url: str, github: FakeGitHub) -> None:
    to_pull = httpx2.get(f"{github_url}/bob/hello-world/issues/2", timeout=10)
    to_issue = httpx2.get(f"{github_url}/bob/hello-world/pull/1", timeout=10)
    assert (to_pull.status_code, to_pull.headers["location"]) == (302, f"{github_url}/bob/hello-world/pull/2")
    assert (to_issue.status_code, to_issue.headers["location"]) == (302, f"{github_url}/bob/hello-world/issues/1")


def test_a_private_repository_page_says_it_is_private(github_url: str, github: FakeGitHub) -> None:
    shown = page(f"{github_url}/bob/notes")
    assert shown.status_code == 200 and "Visibility: private" in shown.text and "todo.txt" in shown.text
    assert "notes (private)" in page(f"{github_url}/bob").text


@pytest.mark.parametrize("path", ["/bob/nope", "/bob/hello-world/issues/99", "/bob/hello-world/pull/99"])
def test_a_thing_a_known_account_lacks_is_a_404_page(github_url: str, github: FakeGitHub, path: str) -> None:
    shown = page(f"{github_url}{path}")
    assert shown.status_code == 404 and shown.headers["content-type"].startswith("text/html")
    assert "Not Found" in shown.text and "stand-in for GitHub" in shown.text


@pytest.mark.parametrize("path", ["/rate_limit", "/users/alice/gists", "/orgs/acme", "/nobody/hello-world"])
def test_a_path_that_is_no_accounts_page_is_still_a_missing_endpoint(
    rest: httpx2.Client, github: FakeGitHub, path: str
) -> None:
    """A forker's new REST call must keep hearing that the stand-in lacks it, not a page's 404."""
    missing = rest.get(path)
    assert missing.status_code == 501
    where = "ghmcp/standin/ (routes in oauth.py)"
    assert missing.json()["message"] == f"GET {path} is not in the demo stand-in: add it in {where}"
