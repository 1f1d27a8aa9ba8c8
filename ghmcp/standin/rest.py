"""GitHub's REST endpoints the server and its tools use: one mixin per subject over the shared state.

A new endpoint goes in its subject's module (or a new one listed here) and its route in
``oauth.py``'s ``_build_app``, where the whole URL map is read in one place.
"""

from __future__ import annotations

from ghmcp.standin.issues import IssuesApi
from ghmcp.standin.pulls import PullsApi
from ghmcp.standin.repos import ReposApi
from ghmcp.standin.stars import StarsApi
from ghmcp.standin.users import UsersApi


class RestApi(UsersApi, ReposApi, IssuesApi, PullsApi, StarsApi):
    """Every REST subject at once; ``GitHubStandIn`` adds the OAuth flow and routes them."""
