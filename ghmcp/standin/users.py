"""``GET /user``, ``/user/memberships/orgs/{org}`` and ``/users/{login}``: the token's user, orgs, other accounts."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ghmcp.standin.api import ApiBase
from ghmcp.standin.http import base_url, error_body
from ghmcp.standin.model import ORG_READ_SCOPES, REST_DOCS_URI
from ghmcp.standin.shapes import org_json, user_json


class UsersApi(ApiBase):
    async def _user_endpoint(self, request: Request) -> Response:
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        tok, user = auth
        return self._rest_json(request, tok, user, user_json(request, user, full=True))

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
            "user": user_json(request, user, full=False),
        }
        return self._rest_json(request, tok, user, membership, accepted_scopes=accepted)

    async def _account_endpoint(self, request: Request) -> Response:
        """``GET /users/{login}``: a user's public profile, or an organisation's (GitHub answers both)."""
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        tok, user = auth
        wanted = str(request.path_params["login"])
        with self._lock:
            account = self.users.get(wanted.lower())
            org = next((o for u in self.users.values() for o in u.orgs if o.lower() == wanted.lower()), None)
        if account is not None:
            return self._rest_json(request, tok, user, user_json(request, account, full=False))
        if org is not None:
            return self._rest_json(request, tok, user, org_json(base_url(request), org))
        body = error_body(404, "Not Found", f"{REST_DOCS_URI}/users/users#get-a-user")
        return self._rest_json(request, tok, user, body, status=404)
