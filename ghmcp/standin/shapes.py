"""The JSON GitHub answers for users, orgs, repositories, issues, pull requests and comments.

Plain functions of the request (for absolute URLs) and the model, so every subject's endpoints
render a resource the same way without reaching into one another. The ``*_page`` URLs are the
``html_url`` values, which ``pages.py`` serves.
"""

from __future__ import annotations

import zlib

from starlette.requests import Request

from ghmcp.standin.http import base_url
from ghmcp.standin.model import Comment, Issue, Repo, User, node_id


def user_page(base: str, user: User) -> str:
    return f"{base}/{user.login}"


def repo_page(base: str, owner: User, repo: Repo) -> str:
    return f"{base}/{owner.login}/{repo.name}"


def issue_page(base: str, owner: User, repo: Repo, issue: Issue) -> str:
    """GitHub's page of an issue, or of a pull request (``/pull/``), which the issues API reports too."""
    return f"{repo_page(base, owner, repo)}/{'issues' if issue.files is None else 'pull'}/{issue.number}"


def user_json(request: Request, user: User, *, full: bool) -> dict[str, object]:
    """``full`` is ``GET /user``'s profile; without it, the short form nested in other resources."""
    base = base_url(request)
    data: dict[str, object] = {
        "login": user.login,
        "id": user.id,
        "node_id": node_id("U", f"user:{user.id}"),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{user.id}?v=4",
        "gravatar_id": "",
        "url": f"{base}/users/{user.login}",
        "html_url": user_page(base, user),
        "type": "User",
        "site_admin": False,
    }
    if full:
        data.update(
            {
                "name": user.name,
                "company": user.company,
                "blog": user.blog,
                "location": user.location,
                "email": user.email,
                "hireable": None,
                "bio": user.bio,
                "twitter_username": None,
                "public_repos": sum(1 for r in user.repos if not r.private),
                "public_gists": 0,
                "followers": user.followers,
                "following": user.following,
                "created_at": user.created_at,
                "updated_at": user.updated_at,
            }
        )
    return data


def org_json(base: str, org: str) -> dict[str, object]:
    org_id = zlib.crc32(org.lower().encode()) % 10**8 + 1000
    return {
        "login": org,
        "id": org_id,
        "node_id": node_id("O", f"org:{org_id}"),
        "url": f"{base}/orgs/{org}",
        "repos_url": f"{base}/orgs/{org}/repos",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{org_id}?v=4",
        "description": None,
    }


def repo_id(owner: User, r: Repo) -> int:
    return r.id if r.id is not None else zlib.crc32(f"{owner.login}/{r.name}".encode())


def repo_json(request: Request, owner: User, r: Repo) -> dict[str, object]:
    base = base_url(request)
    return {
        "id": repo_id(owner, r),
        "node_id": node_id("R", f"{owner.login}/{r.name}"),
        "name": r.name,
        "full_name": f"{owner.login}/{r.name}",
        "owner": user_json(request, owner, full=False),
        "private": r.private,
        "visibility": "private" if r.private else "public",
        "html_url": repo_page(base, owner, r),
        "description": r.description,
        "fork": False,
        "url": f"{base}/repos/{owner.login}/{r.name}",
        "stargazers_count": r.stargazers_count,
        "watchers_count": r.stargazers_count,
        "forks_count": 0,
        "open_issues_count": sum(1 for i in r.issues if i.state == "open"),
        "language": "Python",
        "default_branch": "main",
        "archived": False,
        "created_at": owner.created_at,
        "updated_at": r.updated_at,
        "pushed_at": r.updated_at,
    }


def issue_json(request: Request, owner: User, repo: Repo, issue: Issue, author: User | None) -> dict[str, object]:
    """``author`` is ``None`` when the login is no account here; the issue then shows no user."""
    base = base_url(request)
    data: dict[str, object] = {
        "id": zlib.crc32(f"{owner.login}/{repo.name}#{issue.number}".encode()),
        "number": issue.number,
        "title": issue.title,
        "body": issue.body,
        "state": issue.state,
        "user": user_json(request, author, full=False) if author else None,
        "labels": [{"name": name, "color": "ededed"} for name in issue.labels],
        "comments": len(issue.comments),
        "html_url": issue_page(base, owner, repo, issue),
        "created_at": issue.created_at,
        "updated_at": issue.created_at,
    }
    if issue.files is not None:
        data["pull_request"] = {"url": f"{base}/repos/{owner.login}/{repo.name}/pulls/{issue.number}"}
    return data


def pull_json(request: Request, owner: User, repo: Repo, pull: Issue, author: User | None) -> dict[str, object]:
    """A pull request is its issue plus branch and diff figures, as GitHub serves it."""
    files = pull.files or []
    return issue_json(request, owner, repo, pull, author) | {
        "draft": False,
        "merged": False,
        "head": {"ref": pull.head},
        "base": {"ref": "main"},
        "additions": sum(f.additions for f in files),
        "deletions": sum(f.deletions for f in files),
        "changed_files": len(files),
    }


def comment_json(
    request: Request, owner: User, repo: Repo, issue: Issue, comment: Comment, author: User | None
) -> dict[str, object]:
    base = base_url(request)
    return {
        "id": comment.id,
        "body": comment.body,
        "user": user_json(request, author, full=False) if author else None,
        "html_url": f"{issue_page(base, owner, repo, issue)}#issuecomment-{comment.id}",
        "created_at": comment.created_at,
    }
