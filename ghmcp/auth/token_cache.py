"""In-process memory of verified access tokens, so the store is not asked on every MCP request.

Consistency rule (what keeps revocation exact enough):
- Same process: every revocation, rotation or grant kill made by this process
  calls `invalidate()` after its store write, so the next request here asks the store again. A
  store read that began before the invalidation is not kept (`epoch`), so a slow read cannot put
  a pre-revocation answer back.
- Other replicas sharing the store: an entry is trusted for at most `TTL_SECONDS` after it was
  read, so a revocation made elsewhere is honoured here within that time (the promise is < 1 s).
- Expiry is not cached: the caller checks the token's expiry on every use.
- A cached access token carries the grant read with it, and a tool call takes the GitHub token
  from there (no store read per call). That copy may be up to `TTL_SECONDS` old: a GitHub 401 to
  it makes the provider read the stored grant again and retry with a newer token if there is one
  (`GitHubGrants.token_refused`), so a stale copy never ends a newer sign-in.
- Decrypted GitHub tokens (`TokenCache.github_token`) are keyed by grant and by the ciphertext they came
  from, so a refreshed or replaced token can never yield the old plaintext; there are at most
  `MAX_ENTRIES` of them (least recently used dropped first), they live only in this process's
  memory, never in the store or a log, and `invalidate()` drops them all. At rest the token
  stays encrypted.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

TTL_SECONDS = 0.5
MAX_ENTRIES = 10_000

V = TypeVar("V")


class TokenCache(Generic[V]):
    """token hash -> a token the store accepted (for `TTL_SECONDS`), and decrypted GitHub tokens.

    Only accepted tokens are kept: an unknown or refused one is looked up in the store every time.
    """

    def __init__(self, decrypt: Callable[[str], str | None], ttl: float = TTL_SECONDS) -> None:
        self.ttl = ttl
        self.epoch = 0  # read it before a store read; pass it to `put`
        self.hits = 0  # answered without the store (the metric mcp_token_cache_hits_total reads it)
        self._decrypt = decrypt
        self._records: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._github: OrderedDict[str, tuple[str, str]] = OrderedDict()  # grant id -> (ciphertext, plaintext)

    def get(self, token_hash: str) -> V | None:
        entry = self._records.get(token_hash)
        if entry is None:
            return None
        if time.monotonic() - entry[0] > self.ttl:
            del self._records[token_hash]
            return None
        self.hits += 1
        return entry[1]

    def put(self, token_hash: str, value: V, epoch: int) -> None:
        if epoch != self.epoch:
            return  # invalidated while the store was being read: the answer may predate a revocation
        self._records[token_hash] = (time.monotonic(), value)
        self._records.move_to_end(token_hash)
        _bound(self._records)

    def github_token(self, grant_id: str, token_enc: str) -> str | None:
        """The plaintext of `token_enc`: Fernet runs once per grant and ciphertext, not per tool call."""
        entry = self._github.get(grant_id)
        if entry is not None and entry[0] == token_enc:
            self._github.move_to_end(grant_id)
            return entry[1]
        token = self._decrypt(token_enc)
        if token is None:
            self._github.pop(grant_id, None)
            return None
        self._github[grant_id] = (token_enc, token)
        self._github.move_to_end(grant_id)
        _bound(self._github)
        return token

    def invalidate(self) -> None:
        """After any revocation, rotation or grant change made by this process (see the module docstring)."""
        self.epoch += 1
        self._records.clear()
        self._github.clear()


def _bound(entries: OrderedDict[str, Any]) -> None:
    while len(entries) > MAX_ENTRIES:
        entries.popitem(last=False)  # least recently stored or used
