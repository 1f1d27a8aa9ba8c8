"""Repositories: the user's list, search, one repository, and its contents (files and directories)."""

from __future__ import annotations

import base64
import hashlib

from starlette.requests import Request
from starlette.responses import Response

from ghmcp.standin.api import ApiBase
from ghmcp.standin.http import error_body, paged
from ghmcp.standin.model import REST_DOCS_URI
from ghmcp.standin.shapes import repo_json


class ReposApi(ApiBase):
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
        items = [repo_json(request, user, r) for r in chunk]
        return self._rest_json(request, tok, user, items, accepted_scopes="", extra_headers=extra)

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
            "items": [repo_json(request, o, r) for o, r in chunk],
        }
        return self._rest_json(request, tok, user, data, extra_headers=extra)

    async def _repo_endpoint(self, request: Request) -> Response:
        found = self._repo_request(request)
        if isinstance(found, Response):
            return found
        tok, user, owner, repo = found
        return self._rest_json(request, tok, user, repo_json(request, owner, repo))

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

    async def _readme_endpoint(self, request: Request) -> Response:
        """GitHub's README lookup: the root file named README (any case, any extension), as contents."""
        found = self._repo_request(request)
        if isinstance(found, Response):
            return found
        tok, user, _, repo = found
        name = next((f for f in sorted(repo.files) if "/" not in f and f.lower().split(".")[0] == "readme"), None)
        if name is None:
            return self._rest_json(request, tok, user, error_body(404, "Not Found", REST_DOCS_URI), status=404)
        scope = {**request.scope, "path_params": {**request.path_params, "path": name}}
        return await self._contents_endpoint(Request(scope, request.receive))
