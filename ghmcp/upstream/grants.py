"""Each grant's hold on GitHub: the GitHub token tools call with, its refresh, and its end.

A grant is one user's sign-in through one MCP client. It holds that user's GitHub token
(encrypted). This module hands the token to tools (refreshing a GitHub App token first, with one
winner across processes), ends grants that GitHub or the allow-lists no longer honour, and revokes
GitHub tokens at GitHub when no grant holds them any more.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import Any

from ghmcp import audit
from ghmcp.auth.keys import Keyring
from ghmcp.auth.records import GitHubAccessToken, ReconnectRequired
from ghmcp.auth.token_cache import TokenCache
from ghmcp.storage import Grant, Released, Storage
from ghmcp.upstream.admission import Admission
from ghmcp.upstream.api import GitHubClient
from ghmcp.upstream.errors import GitHubError, GitHubOAuthError

logger = logging.getLogger(__name__)

REFRESH_LEASE_SECONDS = 30.0  # longer than a GitHub call may take (MCP_GITHUB_TIMEOUT_SECONDS, at most 25)
REFRESH_WAIT_SECONDS = 35.0


class GitHubGrants:
    def __init__(
        self, storage: Storage, keyring: Keyring, github: GitHubClient, admission: Admission, cache: TokenCache[Any]
    ) -> None:
        self.storage = storage
        self.keyring = keyring
        self.github = github
        self.admission = admission
        self.cache = cache

    # The GitHub token for tools
    async def token_for(self, access: GitHubAccessToken) -> str:
        """The caller's GitHub token, from the grant read with the MCP token (no store read per call),
        refreshed first if it is a GitHub App token about to expire."""
        return await self.token(await self.grant_for(access))

    async def grant_for(self, access: GitHubAccessToken) -> Grant:
        """The caller's live grant, as read with the MCP token (at most token_cache.TTL_SECONDS old)."""
        grant = access.grant or await self.storage.get_grant(access.grant_id)
        if grant is None or grant.dead:
            raise ReconnectRequired()
        return grant

    async def token_refused(self, access: GitHubAccessToken, refused: str) -> str:
        """GitHub answered 401 to `refused`. The grant read with the MCP token may be up to
        token_cache.TTL_SECONDS old: if the store now holds a newer GitHub token (a refresh or a new
        sign-in, here or on another replica), that one is returned to try again; if it still holds
        `refused`, GitHub no longer honours this grant and it ends (ReconnectRequired)."""
        grant = await self.storage.get_grant(access.grant_id)
        if grant is None or grant.dead:
            raise ReconnectRequired()
        token = await self.token(grant)
        if hmac.compare_digest(token, refused):
            await self.revoked_at_github(grant.grant_id)
            raise ReconnectRequired()
        return token

    async def token(self, grant: Grant) -> str:
        if _expiring(grant):
            grant = await self._refreshed(grant.grant_id)
        token = self.cache.github_token(grant.grant_id, grant.token_enc)
        if token is None:
            raise ReconnectRequired()
        return token

    async def _refreshed(self, grant_id: str) -> Grant:
        """GitHub App refresh tokens are single use: one process refreshes (it holds the lease in the
        store), the others wait for its result, so no two processes spend the same refresh token."""
        give_up = time.monotonic() + REFRESH_WAIT_SECONDS
        while True:
            grant = await self.storage.get_grant(grant_id)
            if grant is None or grant.dead:
                raise ReconnectRequired()
            if not _expiring(grant):
                return grant  # another request or process refreshed it
            now = time.time()
            if await self.storage.lease_grant_refresh(grant_id, grant.refresh_enc, now, now + REFRESH_LEASE_SECONDS):
                return await self._refresh_leased(grant)
            if time.monotonic() > give_up:
                raise GitHubError("GitHub sign-in is being refreshed; try again")
            await asyncio.sleep(0.1)

    async def _refresh_leased(self, grant: Grant) -> Grant:
        refresh = self.keyring.decrypt(grant.refresh_enc) if grant.refresh_enc else None
        if refresh is None:
            await self.revoked_at_github(grant.grant_id)
            raise ReconnectRequired()
        try:
            tokens = await self.github.refresh(refresh)
        except GitHubOAuthError:
            await self.revoked_at_github(grant.grant_id)
            raise ReconnectRequired() from None
        token_enc = self.keyring.encrypt(tokens.access_token)
        refresh_enc = self.keyring.encrypt(tokens.refresh_token) if tokens.refresh_token else None
        if not await self.storage.update_grant_tokens(
            grant.grant_id, grant.refresh_enc, token_enc, refresh_enc, tokens.expires_at, tokens.refresh_expires_at
        ):
            return await self._refreshed(grant.grant_id)  # a new sign-in replaced the grant meanwhile
        grant.token_enc, grant.refresh_enc, grant.expires_at = token_enc, refresh_enc, tokens.expires_at
        return grant

    # Admission: existing sign-ins are re-checked at start and at every refresh.
    async def still_admitted(self, grant: Grant) -> bool:
        admitted = await self.admission.by_lists(grant)
        if admitted is not None:
            return admitted
        try:
            return await self.admission.is_member(await self.token(grant))
        except ReconnectRequired:
            return False

    async def enforce_admission(self) -> int:
        """At start: end every grant whose user the allow-lists no longer admit. Returns how many."""
        ended = 0
        for grant in await self.storage.grants():
            if await self.admission.by_lists(grant) is False:
                logger.info("Allow-lists no longer admit %s: their sign-ins are revoked", grant.github_login)
                await self.end(grant, "not_admitted")
                ended += 1
        return ended

    # Ending grants
    async def disconnect(self, subject: str, grant_id: str) -> bool | None:
        """The user ends one app's access: its MCP tokens and its GitHub token (or, if it was the
        last, the user's whole GitHub authorization of this server). None if there was no such
        grant; else whether GitHub confirmed the revocation (the MCP tokens end either way)."""
        connected = await self.storage.connected(subject)
        grant = next((g for g, _ in connected if g.grant_id == grant_id), None)
        if grant is None:
            return None
        await self.storage.kill_grant(grant_id)
        self.cache.invalidate()
        audit.event("grant_killed", login=grant.github_login, client_id=grant.client_id, reason="user_disconnected")
        return await self.release(Released(grant, last_of_subject=len(connected) == 1))

    async def end(self, grant: Grant, reason: str) -> None:
        audit.event("grant_killed", login=grant.github_login, client_id=grant.client_id, reason=reason)
        await self.storage.kill_grant(grant.grant_id)
        self.cache.invalidate()
        await self.revoke_upstream(grant.token_enc)

    async def revoked_at_github(self, grant_id: str) -> None:
        """GitHub no longer honours this grant: every MCP token on it stops working."""
        logger.info("GitHub grant %s is no longer valid; its MCP tokens are revoked", grant_id)
        audit.event("grant_killed", grant_id=grant_id, reason="github_refused")
        await self.storage.kill_grant(grant_id)
        self.cache.invalidate()

    async def release(self, released: Released) -> bool:
        """A grant is gone: its GitHub token goes too, and with the user's last grant the whole
        GitHub authorization, so that GitHub asks for consent again next time."""
        return await self.revoke_upstream(released.grant.token_enc, whole_grant=released.last_of_subject)

    async def revoke_upstream(self, token_enc: str, *, keep: str | None = None, whole_grant: bool = False) -> bool:
        """Revoke a stored (encrypted) GitHub token at GitHub, unless it is `keep`. Best effort:
        False when GitHub could not confirm it."""
        token = self.keyring.decrypt(token_enc)
        if not token or token == keep:
            return True
        if not await (self.github.revoke_grant(token) if whole_grant else self.github.revoke(token)):
            logger.warning("Could not revoke a GitHub token at GitHub (it stays valid there until it expires)")
            return False
        return True


def _expiring(grant: Grant) -> bool:
    return grant.expires_at is not None and grant.expires_at - 60 < time.time()
