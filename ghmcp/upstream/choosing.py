"""Choosing a grant's repositories after the GitHub sign-in: what to offer, and names to GitHub ids.

Both run with the user's new GitHub token before any MCP token exists, under `EVERYTHING` (the
user is choosing among their own repositories; nothing reaches a client from here).
"""

from __future__ import annotations

from typing import Any

from ghmcp.auth.repositories import Choice, Entry
from ghmcp.upstream.api import GitHubClient
from ghmcp.upstream.boundary import EVERYTHING, within
from ghmcp.upstream.errors import GitHubForbidden, GitHubInvalidInput, GitHubNotFound

MAX_OFFERED = 100  # repositories listed to pick from; more can be typed


class NotResolved(ValueError):
    """A typed name GitHub does not show this user: the sentence says which."""


async def offered(github: GitHubClient, token: str) -> list[str]:
    """The user's own and organisation repositories (`owner/repo`), most recently updated first."""
    params = {"affiliation": "owner,organization_member", "sort": "updated"}
    with within(EVERYTHING):
        items = await github.paginate(token, ("user", "repos"), params, MAX_OFFERED)
    return [str(item["full_name"]) for item in items if isinstance(item, dict) and "full_name" in item]


async def resolved(github: GitHubClient, token: str, names: list[tuple[str, str | None]]) -> Choice:
    """Each name as GitHub spells it now, with its ids (the repository's and its owner's)."""
    entries = [await _entry(github, token, owner, repo) for owner, repo in names]
    return Choice(tuple(dict.fromkeys(entries)))


async def _entry(github: GitHubClient, token: str, owner: str, repo: str | None) -> Entry:
    name = owner if repo is None else f"{owner}/{repo}"
    try:
        with within(EVERYTHING):
            data: Any = await github.get(token, ("users", owner) if repo is None else ("repos", owner, repo))
    except (GitHubNotFound, GitHubForbidden, GitHubInvalidInput):
        raise NotResolved(f"GitHub shows you no {'account' if repo is None else 'repository'} named {name}.") from None
    if repo is None:
        return Entry(str(data["login"]), None, owner_id=int(data["id"]))
    found_owner, _, found_repo = str(data["full_name"]).partition("/")
    return Entry(found_owner, found_repo, owner_id=int(data["owner"]["id"]), repo_id=int(data["id"]))
