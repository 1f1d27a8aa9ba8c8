"""GitHub's REST endpoints the server and its tools use, over the stand-in's state."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import zlib
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ghmcp.standin.http import (
    base_url,
    by_state,
    error_body,
    etag_matches,
    org_json,
    paged,
    rest_error,
)
from ghmcp.standin.model import (
    ORG_READ_SCOPES,
    RATE_LIMIT,
    RATE_WINDOW,
    REST_DOCS_URI,
    Comment,
    Issue,
    Repo,
    User,
    _AccessToken,
    node_id,
)
from ghmcp.standin.state import StandInState, record


class RestApi(StandInState):
    # --------------------------------------------------------------- REST API

    def _authenticate(self, request: Request) -> tuple[_AccessToken, User] | Response:
        header = request.headers.get("authorization")
        if not header:
            return rest_error(401, "Requires authentication")
        scheme, _, value = header.partition(" ")
        with self._lock:
            tok = self._live_access(value.strip()) if scheme.lower() in ("bearer", "token") else None
            user = self._user(tok.login) if tok is not None else None
        if tok is None or user is None:
            return rest_error(401, "Bad credentials")
        with self._lock:
            retry_after, self.secondary_limit_next = self.secondary_limit_next, 0
            remaining, reset = self._rate.get(user.login.lower(), (RATE_LIMIT, 0))
        docs = f"{REST_DOCS_URI}/using-the-rest-api/rate-limits-for-the-rest-api"
        if retry_after:
            response = rest_error(403, "You have exceeded a secondary rate limit. Please wait a few minutes.", docs)
            response.headers["retry-after"] = str(retry_after)
            return response
        if remaining == 0 and self.now() < reset:
            response = rest_error(403, f"API rate limit exceeded for user ID {user.id}.", docs)
            response.headers.update(
                {"x-ratelimit-limit": str(RATE_LIMIT), "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
            )
            return response
        return tok, user

    def _rest_json(
        self,
        request: Request,
        tok: _AccessToken,
        user: User,
        data: object,
        *,
        status: int = 200,
        accepted_scopes: str = "",
        extra_headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Serialise with GitHub's headers; a 304 does not count against the limit."""
        body = json.dumps(data, separators=(",", ":")).encode()
        etag = 'W/"' + hashlib.sha256(body).hexdigest() + '"'
        not_modified = status == 200 and etag_matches(request.headers.get("if-none-match"), etag)
        with self._lock:
            now = int(self.now())
            remaining, reset = self._rate.get(user.login.lower(), (RATE_LIMIT, now + RATE_WINDOW))
            if now >= reset:
                remaining, reset = RATE_LIMIT, now + RATE_WINDOW
            if not not_modified:
                remaining = max(remaining - 1, 0)
            self._rate[user.login.lower()] = (remaining, reset)
        headers = {
            "x-ratelimit-limit": str(RATE_LIMIT),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": str(reset),
            "x-ratelimit-used": str(RATE_LIMIT - remaining),
            "x-ratelimit-resource": "core",
            "x-oauth-scopes": ", ".join(tok.scopes),
            "x-accepted-oauth-scopes": accepted_scopes,
            "x-github-media-type": "github.v3; format=json",
            "x-github-api-version-selected": "2022-11-28",
            "x-github-request-id": secrets.token_hex(8).upper(),
            "vary": "Accept, Authorization, Cookie, X-GitHub-OTP",
            **(extra_headers or {}),
        }
        if tok.expires_at is not None:
            headers["github-authentication-token-expiration"] = time.strftime(
                "%Y-%m-%d %H:%M:%S UTC", time.gmtime(tok.expires_at)
            )
        if status == 200:
            headers["etag"] = etag
        if not_modified:
            with self._lock:
                record(self.not_modified, (request.method, str(request.scope["path"])))
            return Response(status_code=304, headers=headers)
        return Response(
            body,
            status_code=status,
            headers=headers,
            media_type="application/json; charset=utf-8",
        )

    async def _user_endpoint(self, request: Request) -> Response:
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        tok, user = auth
        return self._rest_json(request, tok, user, self._user_json(request, user, full=True))

    async def _membership_endpoint(self, request: Request) -> Response:
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        tok, user = auth
        docs = f"{REST_DOCS_URI}/orgs/members#get-an-organization-membership-for-the-authenticated-user"
        accepted = "admin:org, read:org, repo, user, write:org"
        # GitHub App user tokens carry no scopes; assume the app may read members.
        if not self.expiring_tokens and not ORG_READ_SCOPES.intersection(tok.scopes):
            message = "You need at least read:org scope or user scope to list your organization memberships."
            return self._rest_json(
                request,
                tok,
                user,
                error_body(403, message, docs),
                status=403,
                accepted_scopes=accepted,
            )
        wanted = str(request.path_params["org"])
        org = next((o for o in user.orgs if o.lower() == wanted.lower()), None)
        if org is None:
            return self._rest_json(
                request,
                tok,
                user,
                error_body(404, "Not Found", docs),
                status=404,
                accepted_scopes=accepted,
            )
        base = base_url(request)
        membership = {
            "url": f"{base}/orgs/{org}/memberships/{user.login}",
            "state": "active",
            "role": "member",
            "organization_url": f"{base}/orgs/{org}",
            "organization": org_json(base, org),
            "user": self._user_json(request, user, full=False),
        }
        return self._rest_json(request, tok, user, membership, accepted_scopes=accepted)

    async def _star_endpoint(self, request: Request) -> Response:
        """Star/unstar: 204; OAuth tokens need public_repo or repo, else 404 as GitHub does."""
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        tok, user = auth
        if not self.expiring_tokens and not {"repo", "public_repo"} & set(tok.scopes):
            return rest_error(404, "Not Found", f"{REST_DOCS_URI}/activity/starring")
        name = f"{request.path_params['owner']}/{request.path_params['repo']}"
        with self._lock:
            if request.method == "PUT":
                user.starred.add(name)
            else:
                user.starred.discard(name)
        return Response(status_code=204)

    async def _repos_endpoint(self, request: Request) -> Response:
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        tok, user = auth
        visibility = request.query_params.get("visibility", "all")
        repos = sorted(
            (r for r in user.repos if self._may_see(tok, user, user, r)),
            key=lambda r: r.name.lower(),  # GitHub's default sort is full_name, ascending
        )
        if visibility in ("public", "private"):
            repos = [r for r in repos if r.private == (visibility == "private")]
        chunk, extra = paged(request, repos)
        items = [self._repo_json(request, user, r) for r in chunk]
        return self._rest_json(request, tok, user, items, accepted_scopes="", extra_headers=extra)

    def _may_see(self, tok: _AccessToken, user: User, owner: User, repo: Repo) -> bool:
        """Private repos need the owner's token with `repo` scope; GitHub App tokens are assumed to have it."""
        return not repo.private or (owner is user and (self.expiring_tokens or "repo" in tok.scopes))

    def _repo_json(self, request: Request, owner: User, r: Repo) -> dict[str, object]:
        base = base_url(request)
        return {
            "id": zlib.crc32(f"{owner.login}/{r.name}".encode()),
            "node_id": node_id("R", f"{owner.login}/{r.name}"),
            "name": r.name,
            "full_name": f"{owner.login}/{r.name}",
            "owner": self._user_json(request, owner, full=False),
            "private": r.private,
            "visibility": "private" if r.private else "public",
            "html_url": f"{base}/{owner.login}/{r.name}",
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

    def _repo_request(
        self, request: Request, *, write: bool = False
    ) -> tuple[_AccessToken, User, User, Repo] | Response:
        """Authenticate and find ``{owner}/{repo}``: 404 when missing or not visible, as GitHub does."""
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        tok, user = auth
        owner = self._user(str(request.path_params["owner"]))
        wanted = str(request.path_params["repo"]).lower()
        repo = next((r for r in owner.repos if r.name.lower() == wanted), None) if owner else None
        if owner is None or repo is None or not self._may_see(tok, user, owner, repo):
            return self._rest_json(request, tok, user, error_body(404, "Not Found", REST_DOCS_URI), status=404)
        needed = {"repo"} if repo.private else {"repo", "public_repo"}
        if write and not self.expiring_tokens and not needed & set(tok.scopes):
            # GitHub's docs do not say whether this is 403 or 404; 403 with the accepted scopes is documented.
            body = error_body(403, "Resource not accessible by OAuth App", REST_DOCS_URI)
            accepted = ", ".join(sorted(needed))
            return self._rest_json(request, tok, user, body, status=403, accepted_scopes=accepted)
        return tok, user, owner, repo

    async def _repo_endpoint(self, request: Request) -> Response:
        found = self._repo_request(request)
        if isinstance(found, Response):
            return found
        tok, user, owner, repo = found
        return self._rest_json(request, tok, user, self._repo_json(request, owner, repo))

    async def _contents_endpoint(self, request: Request) -> Response:
        """Files as base64 (no content above 1 MB), directories as lists; only the ``main`` ref exists."""
        found = self._repo_request(request)
        if isinstance(found, Response):
            return found
        tok, user, _, repo = found
        path = str(request.path_params.get("path", "")).strip("/")
        ref = request.query_params.get("ref", "main")
        if ref != "main":
            body = error_body(404, f"No commit found for the ref {ref}", REST_DOCS_URI)
            return self._rest_json(request, tok, user, body, status=404)
        if path in repo.files:
            raw = repo.files[path]
            large = len(raw) > 1024 * 1024
            encoded = base64.b64encode(raw).decode()
            data: object = {
                "type": "file",
                "encoding": "none" if large else "base64",
                "size": len(raw),
                "name": path.rsplit("/", 1)[-1],
                "path": path,
                "sha": hashlib.sha1(raw).hexdigest(),  # noqa: S324 (git's blob naming)
                "content": "" if large else "\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60)),
            }
        else:
            prefix = f"{path}/" if path else ""
            names = sorted({f[len(prefix) :].split("/")[0] for f in repo.files if f.startswith(prefix)})
            if not names:
                return self._rest_json(request, tok, user, error_body(404, "Not Found", REST_DOCS_URI), status=404)
            data = [
                {
                    "type": "file" if f"{prefix}{n}" in repo.files else "dir",
                    "name": n,
                    "path": f"{prefix}{n}",
                    "size": len(repo.files.get(f"{prefix}{n}", b"")),
                }
                for n in names
            ]
        return self._rest_json(request, tok, user, data)

    async def _search_endpoint(self, request: Request) -> Response:
        """Words match name or description; ``user:LOGIN`` narrows to an owner; 422 without ``q``."""
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        tok, user = auth
        q = request.query_params.get("q", "").strip()
        if not q:
            body = {"message": "Validation Failed", "errors": [{"resource": "Search", "field": "q", "code": "missing"}]}
            return self._rest_json(request, tok, user, body, status=422)
        words = [w.lower() for w in q.split() if not w.startswith("user:")]
        owners = [w[5:].lower() for w in q.split() if w.startswith("user:")]
        with self._lock:
            found = [
                (owner, r)
                for owner in self.users.values()
                for r in owner.repos
                if self._may_see(tok, user, owner, r)
                and (not owners or owner.login.lower() in owners)
                and all(w in f"{r.name} {r.description or ''}".lower() for w in words)
            ]
        chunk, extra = paged(request, found)
        data = {
            "total_count": len(found),
            "incomplete_results": False,
            "items": [self._repo_json(request, o, r) for o, r in chunk],
        }
        return self._rest_json(request, tok, user, data, extra_headers=extra)

    def _issue_json(self, request: Request, owner: User, repo: Repo, issue: Issue) -> dict[str, object]:
        base = base_url(request)
        author = self._user(issue.author)
        data: dict[str, object] = {
            "id": zlib.crc32(f"{owner.login}/{repo.name}#{issue.number}".encode()),
            "number": issue.number,
            "title": issue.title,
            "body": issue.body,
            "state": issue.state,
            "user": self._user_json(request, author, full=False) if author else None,
            "labels": [{"name": name, "color": "ededed"} for name in issue.labels],
            "comments": len(issue.comments),
            "html_url": f"{base}/{owner.login}/{repo.name}/issues/{issue.number}",
            "created_at": issue.created_at,
            "updated_at": issue.created_at,
        }
        if issue.files is not None:
            data["pull_request"] = {"url": f"{base}/repos/{owner.login}/{repo.name}/pulls/{issue.number}"}
        return data

    def _issue_request(
        self, request: Request, *, pull: bool, write: bool = False
    ) -> tuple[_AccessToken, User, User, Repo, Issue] | Response:
        """``_repo_request`` plus issue (or, with ``pull``, pull request) ``{number}``: 404 when missing."""
        found = self._repo_request(request, write=write)
        if isinstance(found, Response):
            return found
        tok, user, owner, repo = found
        number = str(request.path_params["number"])
        issue = next((i for i in repo.issues if str(i.number) == number), None)
        if issue is None or (pull and issue.files is None):
            return self._rest_json(request, tok, user, error_body(404, "Not Found", REST_DOCS_URI), status=404)
        return tok, user, owner, repo, issue

    async def _issues_endpoint(self, request: Request) -> Response:
        """List (pull requests included, as GitHub does) or create (422 without a title)."""
        found = self._repo_request(request, write=request.method == "POST")
        if isinstance(found, Response):
            return found
        tok, user, owner, repo = found
        if request.method == "POST":
            params: Any = json.loads(await request.body() or b"{}")
            title = params.get("title") if isinstance(params, dict) else None
            if not isinstance(title, str) or not title.strip():
                body = {
                    "message": "Validation Failed",
                    "errors": [{"resource": "Issue", "field": "title", "code": "missing_field"}],
                }
                return self._rest_json(request, tok, user, body, status=422)
            with self._lock:
                issue = Issue(
                    len(repo.issues) + 1, title, user.login, params.get("body"), labels=list(params.get("labels", []))
                )
                repo.issues.append(issue)
            return self._rest_json(request, tok, user, self._issue_json(request, owner, repo, issue), status=201)
        labels = {x for x in request.query_params.get("labels", "").split(",") if x}
        chunk, extra = paged(request, [i for i in by_state(request, repo.issues) if labels <= set(i.labels)])
        items = [self._issue_json(request, owner, repo, i) for i in chunk]
        return self._rest_json(request, tok, user, items, extra_headers=extra)

    async def _issue_endpoint(self, request: Request) -> Response:
        found = self._issue_request(request, pull=False)
        if isinstance(found, Response):
            return found
        tok, user, owner, repo, issue = found
        return self._rest_json(request, tok, user, self._issue_json(request, owner, repo, issue))

    async def _comments_endpoint(self, request: Request) -> Response:
        found = self._issue_request(request, pull=False, write=request.method == "POST")
        if isinstance(found, Response):
            return found
        tok, user, owner, repo, issue = found
        base = base_url(request)

        def comment_json(c: Comment) -> dict[str, object]:
            author = self._user(c.author)
            return {
                "id": c.id,
                "body": c.body,
                "user": self._user_json(request, author, full=False) if author else None,
                "html_url": f"{base}/{owner.login}/{repo.name}/issues/{issue.number}#issuecomment-{c.id}",
                "created_at": c.created_at,
            }

        if request.method == "POST":
            params: Any = json.loads(await request.body() or b"{}")
            text = params.get("body") if isinstance(params, dict) else None
            if not isinstance(text, str) or not text:
                body = {
                    "message": "Validation Failed",
                    "errors": [{"resource": "IssueComment", "field": "body", "code": "missing_field"}],
                }
                return self._rest_json(request, tok, user, body, status=422)
            with self._lock:
                comment = Comment(1000 + sum(len(i.comments) for i in repo.issues), user.login, text)
                issue.comments.append(comment)
            return self._rest_json(request, tok, user, comment_json(comment), status=201)
        chunk, extra = paged(request, issue.comments)
        return self._rest_json(request, tok, user, [comment_json(c) for c in chunk], extra_headers=extra)

    def _pull_json(self, request: Request, owner: User, repo: Repo, pull: Issue) -> dict[str, object]:
        files = pull.files or []
        return self._issue_json(request, owner, repo, pull) | {
            "draft": False,
            "merged": False,
            "head": {"ref": pull.head},
            "base": {"ref": "main"},
            "additions": sum(f.additions for f in files),
            "deletions": sum(f.deletions for f in files),
            "changed_files": len(files),
        }

    async def _pulls_endpoint(self, request: Request) -> Response:
        found = self._repo_request(request)
        if isinstance(found, Response):
            return found
        tok, user, owner, repo = found
        chunk, extra = paged(request, [i for i in by_state(request, repo.issues) if i.files is not None])
        items = [self._pull_json(request, owner, repo, i) for i in chunk]
        return self._rest_json(request, tok, user, items, extra_headers=extra)

    async def _pull_endpoint(self, request: Request) -> Response:
        found = self._issue_request(request, pull=True)
        if isinstance(found, Response):
            return found
        tok, user, owner, repo, pull = found
        if request.url.path.endswith("/files"):
            chunk, extra = paged(request, pull.files or [])
            files = [vars(f) for f in chunk]
            return self._rest_json(request, tok, user, files, extra_headers=extra)
        return self._rest_json(request, tok, user, self._pull_json(request, owner, repo, pull))

    def _user_json(self, request: Request, user: User, *, full: bool) -> dict[str, object]:
        base = base_url(request)
        data: dict[str, object] = {
            "login": user.login,
            "id": user.id,
            "node_id": node_id("U", f"user:{user.id}"),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{user.id}?v=4",
            "gravatar_id": "",
            "url": f"{base}/users/{user.login}",
            "html_url": f"{base}/{user.login}",
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
