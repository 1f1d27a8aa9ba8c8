"""The one place GitHub requests meet the grant's repositories (issue 19).

`GitHubClient` (api.py) asks `RepositoryGuard.check` before it sends any request and filters
every listing it returns, so a tool (a forker's new one too) cannot reach a repository outside the
grant without writing a line: it never sees a URL, only path segments, and the guard reads them.

The boundary of the call under way is a ContextVar set by `within` (tools/core.py GitHubCaller.call
sets it from the grant). A request that names a repository while none is set is refused: fail closed.
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any

from ghmcp import audit
from ghmcp.auth.repositories import ALL, OWNER, REPO, Bound, Boundary, Entry, decode, listed_repository
from ghmcp.auth.scopes import CALLED
from ghmcp.storage import Grant
from ghmcp.upstream.errors import GitHubInvalidInput

CURRENT: ContextVar[Boundary | None] = ContextVar("repository_boundary", default=None)
# No limit: for the sign-in itself (the picker lists the user's repositories to choose from; no grant yet).
EVERYTHING = Boundary("", ALL, Bound())
REFUSED = "Refused:"  # how a refusal's sentence starts: the caller's to fix, not a server fault
VERIFIED_SECONDS = 60.0
VERIFIED_MAX = 10_000


class RepositoryRefused(Exception):
    """A request named a repository (or owner) outside the grant's boundary: nothing was sent."""

    def __init__(self, name: str, reason: str = "is not among the repositories this sign-in may reach") -> None:
        super().__init__(f"{name} {reason}")
        self.name = name


def boundary_of(grant: Grant, bound: Bound) -> Boundary:
    """What a call on this grant may reach: the user's choice, within the server's bound."""
    return _boundary(grant.grant_id, grant.repositories, bound)


@functools.lru_cache(maxsize=4096)
def _boundary(grant_id: str, repositories: str, bound: Bound) -> Boundary:
    # Keyed by the stored choice itself: a narrowed grant carries another string, so another boundary.
    return Boundary(grant_id, decode(repositories), bound)


def refusal(exc: RepositoryRefused, login: str, server_url: str) -> str:
    """The audit event (what was called, never its arguments) and the sentence the caller reads."""
    owner, _, repo = exc.name.partition("/")
    method, name = CALLED.get()
    audit.event(
        "repository_refused", tool=method if method == "resources/read" else name, login=login, owner=owner, repo=repo
    )
    return (
        f"{REFUSED} {exc}, so the request was not sent. To reach it, reconnect this server in your MCP client "
        f"and choose it on the consent page; {server_url}/account shows what each sign-in may reach."
    )


class within:
    """Every GitHub request made inside (in this task) is held to `boundary`.

    A class, not a generator: it runs on every tool call, and costs a third as much."""

    __slots__ = ("_boundary", "_reset")

    def __init__(self, boundary: Boundary) -> None:
        self._boundary = boundary

    def __enter__(self) -> None:
        self._reset: Token[Boundary | None] = CURRENT.set(self._boundary)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        CURRENT.reset(self._reset)


def named_repository(path: tuple[str, ...]) -> tuple[str, str] | None:
    """(owner, repo) when the path names one: `repos/{o}/{r}/...` or `user/starred/{o}/{r}`."""
    head = tuple(segment.lower() for segment in path[:2])
    if len(path) >= 3 and head[0] == "repos":
        return path[1], path[2]
    if len(path) >= 4 and head == ("user", "starred"):
        return path[2], path[3]
    return None


def _climbs(segment: str) -> bool:
    # A segment is percent-encoded whole, but a proxy that decodes %2F could read "a/../b" as a climb.
    return any(part in (".", "..") for part in segment.replace("\\", "/").split("/"))


# What resolves a name to GitHub's answer for it (GET /repos/{o}/{r}, sent past the guard).
Lookup = Callable[[tuple[str, ...]], Awaitable[Any]]


class RepositoryGuard:
    """Checks paths against the current boundary; remembers for VERIFIED_SECONDS which names GitHub
    reported with the expected id, so a tool call does not cost a second request every time."""

    def __init__(self) -> None:
        self._verified: OrderedDict[tuple[str, str, int, int | None], float] = OrderedDict()

    async def check(self, path: tuple[str, ...], params: dict[str, str] | None, lookup: Lookup) -> None:
        boundary = CURRENT.get()
        named = named_repository(path)
        first = path[0].lower() if path else ""
        if any(_climbs(segment) for segment in path):
            raise GitHubInvalidInput("a name or path segment may not be '.' or '..', nor contain them between slashes")
        if first == "graphql" and (boundary is None or not boundary.everything):
            # A GraphQL query can name any repository in its body: only a grant that reaches all may send one.
            raise RepositoryRefused("GraphQL", "requests cannot be held to chosen repositories")
        if first == "repositories" or (first == "search" and params and "q" in params):
            if boundary is None:
                raise RepositoryRefused("/".join(path[:2]), "cannot be reached outside a signed-in call")
            if first == "repositories" and not boundary.everything:
                # Addressed by id alone: allowed only when every repository is (no name to check).
                raise RepositoryRefused(f"repository #{path[1] if len(path) > 1 else ''}")
            refused = boundary.refused_in_search(params["q"]) if first == "search" and params else None
            if refused is not None:
                raise RepositoryRefused(refused)
        if named is None:
            return
        if boundary is None:
            raise RepositoryRefused("/".join(named), "cannot be reached outside a signed-in call")
        if not (OWNER.fullmatch(named[0]) and REPO.fullmatch(named[1])):
            raise RepositoryRefused("/".join(named), "is not a GitHub owner/repository name")
        entry = boundary.admits(*named)
        if entry is False:
            raise RepositoryRefused("/".join(named))
        if isinstance(entry, Entry):
            await self._verify(boundary.grant_id, named, entry, lookup)

    async def _verify(self, grant_id: str, named: tuple[str, str], entry: Entry, lookup: Lookup) -> None:
        """The name is in the set; GitHub must still report the chosen repository (or owner) for it:
        a name taken over after a rename or transfer carries another id and is refused."""
        key = (grant_id, f"{named[0]}/{named[1]}".lower(), entry.owner_id, entry.repo_id)
        now = time.monotonic()
        if self._verified.get(key, 0.0) > now:
            return
        data = await lookup(("repos", *named))
        data = data if isinstance(data, dict) else {}
        owner = data.get("owner")
        owner_id = owner.get("id") if isinstance(owner, dict) else None
        same = data.get("id") == entry.repo_id if entry.repo is not None else owner_id == entry.owner_id
        if not same:
            raise RepositoryRefused("/".join(named), "now names a different repository than the one chosen")
        self._verified[key] = now + VERIFIED_SECONDS
        self._verified.move_to_end(key)
        while len(self._verified) > VERIFIED_MAX:
            self._verified.popitem(last=False)

    def filtered(self, items: list[Any]) -> list[Any]:
        """A listing without the repositories outside the boundary (all of them when none is set)."""
        boundary = CURRENT.get()
        if boundary is not None and boundary.everything:
            return items
        return [item for item in items if _kept(boundary, item)]


def _kept(boundary: Boundary | None, item: Any) -> bool:
    listed = listed_repository(item)
    if listed is None:
        return True
    return boundary is not None and boundary.keeps(*listed)
