"""One request to GitHub: a bounded total time, and at most one retry, for a safe read only.

httpx's timeouts bound each phase (a connect, each read, the wait for a pooled connection), not a
whole call: a GitHub that trickles its answer could hold a call, and the pooled connection under it,
for much longer. `anyio.fail_after` bounds everything together: the pool wait, sending, reading the
whole body, the pause and the retry. Cancelling a request closes its connection, so the pool gets
the slot back at once.

The retry: only GET and HEAD (RFC 9110 §9.2.1: safe methods), only after a 500/502/503/504 or a
dropped or refused connection, only once, after a short jittered pause, and within the same budget.
Writes are never sent twice: GitHub may have acted on a request whose answer was lost (an issue
created twice), and the OAuth token endpoint's code and refresh token are single use (RFC 9700
§2.1.1; §4.14 for rotated refresh tokens), so a second try would at best fail and at worst spend the user's sign-in.
"""

from __future__ import annotations

import random
from typing import Any

import anyio
import httpx2

from ghmcp.upstream.errors import GitHubError, GitHubUnavailable

SAFE_METHODS = frozenset({"GET", "HEAD"})
RETRY_STATUSES = frozenset({500, 502, 503, 504})  # 501 means "no such endpoint": asking again cannot help
RETRY_PAUSE_SECONDS = (0.05, 0.25)


async def request(http: httpx2.AsyncClient, method: str, url: str, *, budget: float, **options: Any) -> httpx2.Response:
    """The answer to one request (body read); `GitHubUnavailable` for an outage, after any retry.

    A 5xx other than 501 is an outage too: every caller would otherwise turn it into the same error.
    """
    try:
        with anyio.fail_after(budget):
            response = await _attempts(http, method, url, **options)
    except TimeoutError:
        unit = "second" if budget == 1 else "seconds"
        raise GitHubUnavailable(f"GitHub did not answer within {budget:g} {unit}") from None
    if response.status_code >= 500 and response.status_code != 501:
        raise GitHubUnavailable(f"GitHub answered HTTP {response.status_code}, a failure on its side")
    return response


async def _attempts(http: httpx2.AsyncClient, method: str, url: str, **options: Any) -> httpx2.Response:
    retries = 1 if method in SAFE_METHODS else 0
    while True:
        try:
            response = await http.request(method, url, **options)
        except httpx2.TimeoutException:
            raise GitHubUnavailable("GitHub did not answer in time") from None
        except httpx2.TransportError as exc:  # refused, reset, or closed before the whole answer
            if retries == 0:
                raise _outage(exc) from None
        except httpx2.HTTPError as exc:
            raise GitHubError(f"GitHub's answer could not be read ({type(exc).__name__})") from None
        else:
            if retries == 0 or response.status_code not in RETRY_STATUSES:
                return response
        retries -= 1
        await anyio.sleep(random.uniform(*RETRY_PAUSE_SECONDS))  # noqa: S311 (jitter, not a secret)


def _outage(exc: httpx2.TransportError) -> GitHubUnavailable:
    if isinstance(exc, httpx2.ConnectError):
        return GitHubUnavailable("GitHub is unreachable (no connection could be made)")
    if isinstance(exc, (httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.WriteError)):
        return GitHubUnavailable("GitHub dropped the connection before its answer was complete")
    return GitHubUnavailable(f"GitHub is unreachable ({type(exc).__name__})")
