"""What the user keeps of the scopes an app asked for: a checkbox each on the consent page, and
narrowing later on `/account`. One rule for both, and one for what a token may then do.

The sign-in scope (`user`) cannot be unchecked: signing in hands this server the user's GitHub
identity and public profile whatever is chosen (GitHub's `/user` answers any token, with or without
scopes), and the MCP tokens are bound to that identity, so "Read your GitHub profile" is the one
scope a sign-in cannot honestly leave out. `repo:read` needs no GitHub scope either, but it lets
the app read repositories as the user (with the user's rate limit), which a user may well refuse.
"""

from __future__ import annotations

from collections.abc import Iterable

from ghmcp.auth.scopes import SCOPES

SIGN_IN_SCOPE = "user"


def offered(requested: Iterable[str]) -> list[str]:
    """The requested scopes a page shows as checkboxes, in the order asked (only known scopes are shown)."""
    return [s for s in dict.fromkeys(requested) if s in SCOPES]


def kept(shown: list[str], submitted: Iterable[str]) -> list[str] | None:
    """The scopes the user kept of `shown`, or None when `submitted` names one that was not shown.

    Least privilege: only what was shown can be kept (a forged extra scope refuses the whole form),
    and the sign-in scope stays whatever was submitted, since its checkbox cannot be unchecked.
    """
    chosen = set(submitted)
    if not chosen <= set(shown):
        return None
    return [s for s in shown if s in chosen or s == SIGN_IN_SCOPE]


def within(scopes: Iterable[str], ceiling: str | None) -> list[str]:
    """What a token of a grant may use: its own scopes, bounded by the grant's (None: no bound, a grant
    stored before grants carried scopes)."""
    if ceiling is None:
        return list(scopes)
    allowed = set(ceiling.split())
    return [s for s in scopes if s in allowed]
