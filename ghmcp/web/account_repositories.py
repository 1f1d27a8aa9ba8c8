"""Narrowing a connected app's repositories on `/account` (issue 19): never wider, only narrower.

The user keeps some of the app's chosen repositories (checkboxes) and may type names to limit it
further, including an app that reaches everything. The new choice is the intersection with the
current one (`Choice.narrowed_to`), stored by compare-and-set, so no form (a stale tab, a replayed
post) can widen a grant: widening takes a new sign-in from the app. The change holds on this
replica at once and on the others within the token cache's bound (auth/token_cache.py TTL_SECONDS).
"""

from __future__ import annotations

from starlette.datastructures import FormData

from ghmcp.auth.records import ReconnectRequired
from ghmcp.auth.repositories import Choice, decode, encode, parse_names
from ghmcp.storage import Grant
from ghmcp.upstream import choosing
from ghmcp.upstream.errors import GitHubError
from github_provider import GitHubOAuthProvider


def shown(grant: Grant) -> list[str] | None:
    """The grant's repositories as names (None: every repository the user can reach)."""
    choice = decode(grant.repositories)
    return None if choice.entries is None else [entry.name for entry in choice.entries]


async def narrow(provider: GitHubOAuthProvider, grant: Grant, form: FormData) -> tuple[str, str]:
    """(title, sentence) saying what happened; ValueError with a sentence when nothing can be done."""
    current = decode(grant.repositories)
    kept = {str(name).lower() for name in form.getlist("keep")}
    wanted = Choice(tuple(e for e in current.entries or () if e.name.lower() in kept))
    typed = parse_names(str(form.get("typed", ""))[:4000])
    if typed:
        try:
            found = await choosing.resolved(provider.github, await provider.grants.token(grant), typed)
        except (GitHubError, ReconnectRequired):
            raise ValueError("GitHub did not answer; try again.") from None
        wanted = Choice((*(wanted.entries or ()), *(found.entries or ())))
    elif current.entries is None:
        raise ValueError("Type the owners or repositories this app may keep.")
    narrowed = current.narrowed_to(wanted)
    if not narrowed.entries:
        raise ValueError("That would leave this app no repository: disconnect it instead.")
    if narrowed == current:
        return "Nothing changed", "The app keeps the repositories it had."
    # Compare-and-set: a change made meanwhile (another tab, another replica) is not overwritten.
    if not await provider.storage.replace_grant_repositories(grant.grant_id, grant.repositories, encode(narrowed)):
        raise ValueError("This app's repositories changed meanwhile: reload the page and try again.")
    provider.grants.cache.invalidate()
    names = ", ".join(entry.name for entry in narrowed.entries)
    return "Repositories narrowed", f"From now on this app reaches only: {names}."
