"""A local stand-in for github.com: its OAuth web flow and the REST endpoints this server uses.

Two users: the test suite (``tests/fake_github.py`` serves it on its own port and turns its
knobs) and ``main.py --demo`` (``demo.py`` mounts it under ``/demo-github`` on the same server,
so a fresh clone runs the whole flow with no GitHub app).

It behaves as GitHub's documentation says rather than as is convenient: token-endpoint failures
are HTTP 200 with an ``error`` field, codes are single use and expire after ten minutes, PKCE is
S256 only, refresh tokens rotate, REST errors carry ``message``/``documentation_url``/``status``.
Where GitHub's docs are silent the choice is written next to the code. OAuth pages and REST API
share one root, like a GitHub Enterprise Server whose ``/api/v3`` is mounted at ``/``.

- ``model``: accounts, repositories, tokens, deterministic demo data, GitHub's redirect rule
- ``state``: state, test knobs, minting and killing tokens
- ``faults``: GitHub slow, answering 502 or dropping connections, switched on by ``fail``
- ``http``: GitHub's HTTP conventions (error bodies, token-endpoint encodings, paging, ETags)
- ``shapes``: the JSON of users, orgs, repositories, issues, pull requests, comments
- ``api``: what every REST endpoint shares (token check, rate limits, headers, repo/issue lookup)
- ``users``, ``repos``, ``issues``, ``pulls``, ``stars``: the REST endpoints, one subject each
- ``rest``: ``RestApi``, those subjects composed
- ``pages``: small HTML pages at the ``html_url`` of users, repositories, issues and pull requests
- ``oauth``: authorize (with a user picker when nobody is signed in), token, token/grant deletion;
  ``GitHubStandIn`` and its route table
"""

from ghmcp.standin.faults import Fault
from ghmcp.standin.model import (
    Comment,
    Issue,
    Repo,
    TokenPair,
    User,
    parse_scopes,
    pkce_challenge,
    redirect_uri_allowed,
)
from ghmcp.standin.oauth import GitHubStandIn

__all__ = [
    "Comment",
    "Fault",
    "GitHubStandIn",
    "Issue",
    "Repo",
    "TokenPair",
    "User",
    "parse_scopes",
    "pkce_challenge",
    "redirect_uri_allowed",
]
