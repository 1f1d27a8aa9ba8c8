"""``PUT``/``DELETE /user/starred/{owner}/{repo}``: starring, which answers no JSON, only 204."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ghmcp.standin.api import ApiBase
from ghmcp.standin.http import rest_error
from ghmcp.standin.model import REST_DOCS_URI


class StarsApi(ApiBase):
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
