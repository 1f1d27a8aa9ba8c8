"""Per-process memory of GitHub answers, used by `github_api.GitHubClient`.

`ResponseCache` keeps GET bodies with their validators (ETag, Last-Modified) so repeats can be
revalidated: GitHub answers 304 without counting it against the rate limit. `RateLimitGate`
remembers until when GitHub told a user to stop. Callers key both by a hash of the user's token,
so one user's entries never answer another user.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Cached:
    body: bytes
    link: str | None
    etag: str | None
    last_modified: str | None

    def validators(self) -> dict[str, str]:
        headers = {"If-None-Match": self.etag} if self.etag else {}
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


class ResponseCache:
    """Least recently used GET answers, at most `max_bytes` of bodies in all (0 turns it off)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[str, Cached] = OrderedDict()

    def get(self, key: str) -> Cached | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: Cached) -> None:
        self._drop(key)
        if len(entry.body) > self.max_bytes:
            return
        self._entries[key] = entry
        self.size += len(entry.body)
        while self.size > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= len(old.body)


class RateLimitGate:
    """Per user: the time before which no request may leave, after GitHub named one."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def blocked_until(self, who: str) -> float | None:
        until = self._until.get(who)
        if until is not None and until > time.time():
            return until
        self._until.pop(who, None)
        return None

    def block(self, who: str, until: float) -> None:
        now = time.time()
        self._until = {k: v for k, v in self._until.items() if v > now}
        self._until[who] = until
