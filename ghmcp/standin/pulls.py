"""Pull requests: list, read, and the changed files; a pull request is an issue with ``files``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ghmcp.standin.api import ApiBase
from ghmcp.standin.http import by_state, paged
from ghmcp.standin.shapes import pull_json


class PullsApi(ApiBase):
    async def _pulls_endpoint(self, request: Request) -> Response:
        found = self._repo_request(request)
        if isinstance(found, Response):
            return found
        tok, user, owner, repo = found
        chunk, extra = paged(request, [i for i in by_state(request, repo.issues) if i.files is not None])
        items = [pull_json(request, owner, repo, i, self._user(i.author)) for i in chunk]
        return self._rest_json(request, tok, user, items, extra_headers=extra)

    async def _pull_endpoint(self, request: Request) -> Response:
        """One pull request, or (path ending ``/files``) its changed files, paged."""
        found = self._issue_request(request, pull=True)
        if isinstance(found, Response):
            return found
        tok, user, owner, repo, pull = found
        if request.url.path.endswith("/files"):
            chunk, extra = paged(request, pull.files or [])
            files = [vars(f) for f in chunk]
            return self._rest_json(request, tok, user, files, extra_headers=extra)
        return self._rest_json(request, tok, user, pull_json(request, owner, repo, pull, self._user(pull.author)))
