"""GitHub's web pages for what the stand-in hands out as ``html_url``: users, repositories, issues, pulls.

A tool result carries these links and an MCP client shows them; in ``--demo`` they lead here, under
``/demo-github``, and each answers a small page saying it is the stand-in. A path is a page only
when its first segment is an account here: any other is a REST endpoint the stand-in lacks
(``http.not_served``), so a forker's call to a new endpoint keeps the 501 that says where to add it.

The web side has no sign-in (the picker serves the OAuth flow only), so a private repository's page
is shown too, marked private: all of it is made-up demo data.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ghmcp.asgi import pages
from ghmcp.standin.http import base_url, not_served
from ghmcp.standin.model import Issue, Repo, User
from ghmcp.standin.shapes import issue_page, repo_page, user_page
from ghmcp.standin.state import StandInState

Items = list[tuple[str, str | None]]  # (text, link or None)


class WebPages(StandInState):
    async def _user_page(self, request: Request) -> Response:
        owner = self._user(str(request.path_params["owner"]))
        if owner is None:
            return not_served(request)
        base = base_url(request)
        repos: Items = [
            (f"{r.name} (private)" if r.private else r.name, repo_page(base, owner, r))
            for r in sorted(owner.repos, key=lambda r: r.name.lower())
        ]
        facts = [("Name", owner.name), ("Bio", owner.bio), ("Company", owner.company), ("Location", owner.location)]
        return _page(
            "User",
            owner.login,
            summary=f"{owner.followers} followers, {owner.following} following",
            facts=facts,
            sections=[("Repositories", repos)],
        )

    async def _repo_page(self, request: Request) -> Response:
        found = self._find_repo(request)
        if not isinstance(found, tuple):
            return found
        owner, repo = found
        base = base_url(request)
        links = [(i, (f"#{i.number} {i.title}", issue_page(base, owner, repo, i))) for i in repo.issues[::-1]]
        issues: Items = [link for i, link in links if i.files is None]
        pulls: Items = [link for i, link in links if i.files is not None]
        return _page(
            "Repository",
            f"{owner.login}/{repo.name}",
            summary=repo.description,
            facts=[
                ("Visibility", "private" if repo.private else "public"),
                ("Stars", str(repo.stargazers_count)),
                ("Default branch", "main"),
            ],
            sections=[
                ("Files", [(path, None) for path in sorted(repo.files)]),
                ("Issues", issues),
                ("Pull requests", pulls),
            ],
            up=(owner.login, user_page(base, owner)),
        )

    async def _issue_page(self, request: Request) -> Response:
        """``/issues/N`` and ``/pull/N``; the wrong one of the two redirects to the other, as GitHub does."""
        found = self._find_repo(request)
        if not isinstance(found, tuple):
            return found
        owner, repo = found
        number = str(request.path_params["number"])
        issue = next((i for i in repo.issues if str(i.number) == number), None)
        if issue is None:
            return _not_found(f"{owner.login}/{repo.name} has no issue or pull request #{number} here.")
        base = base_url(request)
        if request.url.path.split("/")[-2] != ("issues" if issue.files is None else "pull"):
            return RedirectResponse(issue_page(base, owner, repo, issue), status_code=302)
        return _page(
            "Issue" if issue.files is None else "Pull request",
            f"{issue.title} #{issue.number}",
            summary=f"{issue.state.capitalize()}, opened by {issue.author} in {owner.login}/{repo.name}",
            facts=_issue_facts(issue),
            sections=[
                ("Description", [(issue.body or "No description.", None)]),
                ("Changed files", [(f"{f.filename} +{f.additions} -{f.deletions}", None) for f in issue.files or []]),
                ("Comments", [(f"{c.author}: {c.body}", None) for c in issue.comments]),
            ],
            up=(f"{owner.login}/{repo.name}", repo_page(base, owner, repo)),
        )

    def _find_repo(self, request: Request) -> tuple[User, Repo] | Response:
        owner = self._user(str(request.path_params["owner"]))
        if owner is None:
            return not_served(request)
        wanted = str(request.path_params["repo"]).lower()
        repo = next((r for r in owner.repos if r.name.lower() == wanted), None)
        if repo is None:
            return _not_found(f"{owner.login} has no repository named {request.path_params['repo']!r} here.")
        return owner, repo


def _issue_facts(issue: Issue) -> list[tuple[str, str | None]]:
    labels = ", ".join(issue.labels) or None
    branches = f"{issue.head} into main" if issue.files is not None else None
    return [("Labels", labels), ("Branches", branches), ("Opened", issue.created_at)]


def _page(
    kind: str,
    title: str,
    *,
    summary: str | None = None,
    facts: Sequence[tuple[str, str | None]] = (),
    sections: Sequence[tuple[str, Items]] = (),
    up: tuple[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return pages.render(
        "github_standin_page.html",
        app_name="GitHub stand-in",
        status_code=status_code,
        kind=kind,
        title=title,
        summary=summary,
        facts=[(label, value) for label, value in facts if value],
        sections=[(heading, items) for heading, items in sections if items],
        up=up,
    )


def _not_found(detail: str) -> Response:
    return _page("Not found", "Not Found", summary=detail, status_code=404)
