"""The OAuth 2.1 authorization server toward MCP clients, with user login delegated to GitHub.

Flow: `/authorize` (SDK) -> `authorize()` stores a pending request -> consent page
(consent.py) -> `approve()` mints our own GitHub `state` -> GitHub -> `/github/callback`
(routes.py) -> `complete_login()` mints an MCP code bound to that GitHub user -> `/token`
(SDK) -> our own opaque tokens. The user's GitHub token stays on this server, encrypted.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from dataclasses import dataclass
from typing import Literal

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    OAuthAuthorizationServerProvider,
    RefreshToken,
    TokenError,
    construct_redirect_uri,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyUrl, BaseModel, PrivateAttr

import audit
from admission import Admission
from cimd import ClientDocuments, DocumentError, is_document_url, verified_host
from crypto import Keyring, new_secret, s256, token_hash
from github_api import GitHubClient, GitHubError, GitHubOAuthError
from ratelimit import client_origin, wide_origin_key
from registration import Client, trim_registration
from scopes import DEFAULT_SCOPES, SCOPES, github_scopes
from settings import Settings
from storage import Family, Grant, PendingLimits, Released, Storage, TokenRecord, TokenRow, new_id
from token_cache import TokenCache

logger = logging.getLogger(__name__)

MAX_STATE = 500
PKCE_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # RFC 7636 §4.2: BASE64URL(SHA256(verifier)), unpadded
REFRESH_LEASE_SECONDS = 30.0  # longer than a GitHub call may take (github_api.TIMEOUT)
REFRESH_WAIT_SECONDS = 35.0


class GitHubAccessToken(AccessToken):
    grant_id: str
    family_id: str
    # The grant as read together with this token (at most token_cache.TTL_SECONDS old): a tool call
    # takes the GitHub token from it instead of reading the store again. Not part of the model's data.
    _grant: Grant | None = PrivateAttr(default=None)


class GitHubAuthorizationCode(AuthorizationCode):
    grant_id: str


class GitHubRefreshToken(RefreshToken):
    family_id: str
    generation: int


class PendingAuthorization(BaseModel):
    """What `/authorize` asked for, kept server-side until the callback."""

    client_id: str
    client_name: str
    redirect_uri: str
    redirect_uri_provided_explicitly: bool
    code_challenge: str
    scopes: list[str]
    resource: str
    client_state: str | None
    issuer: str
    client_host: str | None = None  # the host a metadata-document client is verified to come from

    def redirect(self, **params: str | None) -> str:
        # RFC 9207: `iss` on every authorization response, errors included, against mix-up attacks.
        return construct_redirect_uri(self.redirect_uri, state=self.client_state, iss=self.issuer, **params)


class AccountLogin(BaseModel):
    """A sign-in to the connected-apps page (account.py): it only proves who the user is."""

    kind: Literal["account"] = "account"


class ReconnectRequired(Exception):
    """The user's GitHub sign-in is gone; the MCP client must run OAuth again."""


@dataclass
class LoginOutcome:
    """Where the browser goes after the GitHub callback; `refused_login` is set for admission refusals."""

    redirect_to: str
    refused_login: str | None = None


class GitHubOAuthProvider(
    OAuthAuthorizationServerProvider[GitHubAuthorizationCode, GitHubRefreshToken, GitHubAccessToken]
):
    """The SDK's provider protocol, backed by `Storage` and GitHub."""

    def __init__(self, settings: Settings, storage: Storage, keyring: Keyring, github: GitHubClient) -> None:
        self.settings = settings
        self.storage = storage
        self.keyring = keyring
        self.github = github
        self.admission = Admission(settings, storage, github)
        # Its own connection pool: slow client sites must not hold connections that tool calls need.
        self.documents = ClientDocuments(settings.allowed_redirect_schemes, settings.cimd_allow_http_loopback)
        self.pending_limits = PendingLimits(
            settings.max_pending_per_client, settings.max_pending_per_client, settings.max_pending_authorizations
        )
        self.cache: TokenCache[tuple[float, GitHubAccessToken]] = TokenCache(keyring.decrypt)

    # Clients (RFC 7591)
    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        if is_document_url(client_id, self.settings.cimd_allow_http_loopback):
            try:
                document = await self.documents.get(client_id)
            except DocumentError:
                return None  # the /authorize page says why (routes.Authorize); /token just refuses
            document.scope = " ".join(SCOPES)  # as for registered clients: the user consents per request
            return document
        info_json = await self.storage.get_client(client_id)
        if info_json is None:
            return None
        client = Client.model_validate_json(info_json)
        if client.client_secret:
            client.client_secret = self.keyring.decrypt_client_secret(client.client_secret)
        return client

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        trim_registration(client_info, self.settings.allowed_redirect_schemes)
        stored = client_info.model_copy()
        # The registered scope is only a ceiling: the user consents to each request's scopes.
        stored.scope = " ".join(SCOPES)
        if stored.client_secret:
            stored.client_secret = self.keyring.encrypt_client_secret(stored.client_secret)
        await self.storage.save_client(client_info.client_id, stored.model_dump_json(exclude_none=True), time.time())

    # Authorization: the SDK has checked client, redirect_uri, PKCE method and scope ceiling.
    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        resource = params.resource or self.settings.resource_url
        if resource.rstrip("/") != self.settings.resource_url:
            # RFC 8707 §2: tokens are only minted for this server's own resource.
            raise AuthorizeError("invalid_target", "This server only issues tokens for its own MCP endpoint")
        if params.state is not None and len(params.state) > MAX_STATE:
            raise AuthorizeError("invalid_request", f"state must be at most {MAX_STATE} characters")
        if not PKCE_CHALLENGE.match(params.code_challenge):
            raise AuthorizeError("invalid_request", "code_challenge must be 43 base64url characters (S256)")
        pending = PendingAuthorization(
            client_id=client.client_id,
            client_name=client.client_name or client.client_id,
            redirect_uri=str(params.redirect_uri),
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            code_challenge=params.code_challenge,
            scopes=list(dict.fromkeys(params.scopes or DEFAULT_SCOPES)),
            resource=self.settings.resource_url,
            client_state=params.state,
            issuer=self.settings.server_url,
            client_host=verified_host(client.client_id)
            if is_document_url(client.client_id, self.settings.cimd_allow_http_loopback)
            else None,
        )
        request_id = new_secret()
        now = time.time()
        full = await self.storage.add_pending(
            token_hash(request_id),
            pending.model_dump(),
            client_id=client.client_id,
            origin=client_origin.get(),
            wide_origin=wide_origin_key(client_origin.get()),
            expires_at=now + self.settings.consent_seconds,
            limits=self.pending_limits,
            now=now,
        )
        if full is not None:
            logger.warning("Sign-in refused: too many sign-ins under way (per %s)", full)
            raise AuthorizeError("temporarily_unavailable", "Too many sign-ins in progress; try again shortly")
        return f"{self.settings.server_url}/consent?request={request_id}"

    async def pending(self, request_id: str) -> PendingAuthorization | None:
        record = await self.storage.get_pending(token_hash(request_id), time.time())
        return None if record is None else PendingAuthorization.model_validate(record)

    async def approve(self, request_id: str) -> tuple[str, str] | None:
        """Consent given: mint the GitHub `state` (never the client's) and return (GitHub URL, state)."""
        pending = await self.pending(request_id)
        if pending is None:
            return None
        state = new_secret()  # RFC 6749 §10.12: our own unguessable, single-use state
        if not await self.storage.approve_pending(
            token_hash(request_id), token_hash(state), self.settings.state_seconds, time.time()
        ):
            return None
        url = self.github.authorize_url(
            redirect_uri=self.settings.callback_url,
            state=state,
            scopes=github_scopes(pending.scopes, orgs_configured=bool(self.settings.allowed_github_orgs)),
            code_challenge=s256(self._github_verifier(state)),
        )
        return url, state

    async def deny(self, request_id: str) -> str | None:
        record = await self.storage.take_pending(token_hash(request_id), time.time())
        if record is None:
            return None
        pending = PendingAuthorization.model_validate(record)
        audit.event("consent_denied", client_id=pending.client_id, scopes=pending.scopes)
        return pending.redirect(error="access_denied")

    def _github_verifier(self, state: str) -> str:
        """PKCE verifier toward GitHub, derived from the secret state so it need not be stored."""
        return self.keyring.derive_secret("github-pkce", state)

    async def take_login(self, state: str) -> PendingAuthorization | AccountLogin | None:
        """Consume the pending sign-in a GitHub callback names (single use)."""
        record = await self.storage.take_pending_by_state(token_hash(state), time.time())
        if record is None:
            return None
        if record.get("kind") == "account":
            return AccountLogin.model_validate(record)
        return PendingAuthorization.model_validate(record)

    # The connected-apps page (account.py): its own GitHub sign-in, which keeps no GitHub token.
    async def start_account_sign_in(self) -> tuple[str, str] | None:
        """(GitHub URL, state) for a sign-in to the account page, or None when too many are under way."""
        origin, now = client_origin.get(), time.time()
        key, state = token_hash(new_secret()), new_secret()
        full = await self.storage.add_pending(
            key,
            AccountLogin().model_dump(),
            client_id=f"account:{origin}",
            origin=origin,
            wide_origin=wide_origin_key(origin),
            expires_at=now + self.settings.consent_seconds,
            limits=self.pending_limits,
            now=now,
        )
        if full is not None or not await self.storage.approve_pending(
            key, token_hash(state), self.settings.state_seconds, now
        ):
            return None
        url = self.github.authorize_url(
            redirect_uri=self.settings.callback_url,
            state=state,
            scopes=[],  # identity only: GitHub's /user needs no scope
            code_challenge=s256(self._github_verifier(state)),
        )
        return url, state

    async def account_identity(self, state: str, code: str) -> tuple[str, str] | None:
        """(subject, login) of the user who signed in to the account page; their token is revoked at once."""
        try:
            tokens = await self.github.exchange_code(
                code, redirect_uri=self.settings.callback_url, code_verifier=self._github_verifier(state)
            )
        except GitHubError:
            return None
        try:
            github_id, login = await self.github.identity(tokens.access_token)
        except GitHubError:
            return None
        finally:
            await self.github.revoke(tokens.access_token)
        return f"github:{github_id}", login

    async def disconnect(self, subject: str, grant_id: str) -> bool:
        """The user ends one app's access: its MCP tokens and its GitHub token (or, if it was the
        last, the user's whole GitHub authorization of this server)."""
        connected = await self.storage.connected(subject)
        grant = next((g for g, _ in connected if g.grant_id == grant_id), None)
        if grant is None:
            return False
        await self.storage.kill_grant(grant_id)
        self.cache.invalidate()
        audit.event("grant_killed", login=grant.github_login, client_id=grant.client_id, reason="user_disconnected")
        await self._release_upstream(Released(grant, last_of_subject=len(connected) == 1))
        return True

    async def complete_login(self, pending: PendingAuthorization, state: str, code: str) -> LoginOutcome:
        """Exchange GitHub's code, admit the user, and mint an MCP code bound to them."""
        failed = LoginOutcome(pending.redirect(error="server_error", error_description="GitHub sign-in failed"))
        try:
            tokens = await self.github.exchange_code(
                code, redirect_uri=self.settings.callback_url, code_verifier=self._github_verifier(state)
            )
        except GitHubError as exc:
            logger.warning("GitHub sign-in failed: %s", exc)
            return failed
        try:
            github_id, login = await self.github.identity(tokens.access_token)
        except GitHubError as exc:
            # Fail closed: nothing is stored, and the fresh GitHub token is not left behind.
            logger.warning("GitHub sign-in failed: %s", exc)
            await self.github.revoke(tokens.access_token)
            return failed
        try:
            admitted_via = await self.admission.at_sign_in(login, github_id, tokens.access_token)
        except GitHubError as exc:
            logger.warning("GitHub sign-in failed: membership could not be checked (%s)", exc)
            await self.github.revoke(tokens.access_token)
            return failed
        if admitted_via is None:
            audit.event("admission_refused", login=login, github_id=github_id, client_id=pending.client_id)
            await self.github.revoke(tokens.access_token)  # nothing is kept for a refused user
            denied = pending.redirect(error="access_denied", error_description="This GitHub account is not allowed")
            return LoginOutcome(denied, refused_login=login)

        subject = f"github:{github_id}"
        now = time.time()
        grant_id, replaced = await self.storage.upsert_grant(
            Grant(
                grant_id=new_id(),
                subject=subject,
                client_id=pending.client_id,
                github_login=login,
                token_enc=self.keyring.encrypt(tokens.access_token),
                refresh_enc=self.keyring.encrypt(tokens.refresh_token) if tokens.refresh_token else None,
                expires_at=tokens.expires_at,
                refresh_expires_at=tokens.refresh_expires_at,
                github_scopes=tokens.scopes,
                dead=False,
                admitted_via=admitted_via,
            )
        )
        if replaced is not None:
            self.cache.invalidate()  # tokens cached here carry the replaced GitHub token
            await self._revoke_upstream(replaced, keep=tokens.access_token)
        await self.storage.record_consent(
            subject, pending.client_id, pending.redirect_uri, " ".join(pending.scopes), now
        )
        audit.event("sign_in", login=login, github_id=github_id, client_id=pending.client_id, scopes=pending.scopes)
        code = new_secret()
        record = GitHubAuthorizationCode(
            code="",
            scopes=pending.scopes,
            expires_at=now + self.settings.code_seconds,
            client_id=pending.client_id,
            code_challenge=pending.code_challenge,
            redirect_uri=AnyUrl(pending.redirect_uri),
            redirect_uri_provided_explicitly=pending.redirect_uri_provided_explicitly,
            resource=pending.resource,
            subject=subject,
            grant_id=grant_id,
        )
        await self.storage.save_code(token_hash(code), record.model_dump(mode="json"), grant_id, record.expires_at)
        return LoginOutcome(pending.redirect(code=code))

    # Admission: existing sign-ins are re-checked at start and at every refresh.
    async def _still_admitted(self, grant: Grant) -> bool:
        admitted = await self.admission.by_lists(grant)
        if admitted is not None:
            return admitted
        try:
            return await self.admission.is_member(await self._github_token(grant))
        except ReconnectRequired:
            return False

    async def enforce_admission(self) -> int:
        """At start: end every grant whose user the allow-lists no longer admit. Returns how many."""
        ended = 0
        for grant in await self.storage.grants():
            if await self.admission.by_lists(grant) is False:
                logger.info("Allow-lists no longer admit %s: their sign-ins are revoked", grant.github_login)
                await self._end_grant(grant)
                ended += 1
        return ended

    # Token endpoint
    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> GitHubAuthorizationCode | None:
        code_hash = token_hash(authorization_code)
        found = await self.storage.get_code(code_hash)
        if found is None:
            return None
        record, used = found
        if used:
            await self._revoke_code(code_hash)
            return None
        code = GitHubAuthorizationCode.model_validate(record | {"code": authorization_code})
        return code if code.client_id == client.client_id else None

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: GitHubAuthorizationCode
    ) -> OAuthToken:
        code_hash = token_hash(authorization_code.code)
        now = time.time()
        family = Family(
            family_id=new_id(),
            grant_id=authorization_code.grant_id,
            client_id=client.client_id,
            subject=authorization_code.subject or "",
            scopes=authorization_code.scopes,
            resource=authorization_code.resource or self.settings.resource_url,
            code_hash=code_hash,
            generation=0,
            rotated_at=now,
            revoked=False,
            signed_in_at=now,
        )
        access, refresh = new_secret(), new_secret()
        # RFC 9700 §2.1.1: single-use code; using it and creating its family is one atomic step.
        if not await self.storage.redeem_code(code_hash, family, self._token_rows(family, access, refresh), now):
            await self._revoke_code(code_hash)  # a replay that lost the race to the first use
            raise TokenError("invalid_grant", "authorization code was already used or is no longer valid")
        await self.storage.touch_client(client.client_id, now)
        return self._answer(family, access, refresh, now)

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> GitHubRefreshToken | None:
        record = await self.storage.get_token(token_hash(refresh_token))
        # Older generations load too: `exchange_refresh_token` must see them to detect reuse (RFC 9700 §4.14.2).
        if record is None or record.token.kind != "refresh" or not _alive(record, any_generation=True):
            return None
        if record.family.client_id != client.client_id:
            return None
        return GitHubRefreshToken(
            token=refresh_token,
            client_id=record.family.client_id,
            scopes=record.family.scopes,
            expires_at=int(record.token.expires_at),
            resource=record.family.resource,
            subject=record.family.subject,
            family_id=record.family.family_id,
            generation=record.token.generation,
        )

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: GitHubRefreshToken, scopes: list[str]
    ) -> OAuthToken:
        now = time.time()
        record = await self._current(refresh_token)
        if now >= self._deadline(record.family):
            await self._revoke_family(record.family)
            raise TokenError("invalid_grant", "this sign-in has reached its maximum age; sign in again")
        try:
            admitted = await self._still_admitted(record.grant)
        except GitHubError:
            # Fail closed without ending the sign-in: GitHub could not confirm membership right now.
            raise TokenError("invalid_request", "GitHub could not confirm this account's access; try again") from None
        if not admitted:
            await self._end_grant(record.grant)
            raise TokenError("invalid_grant", "this GitHub account is no longer allowed here")
        access = self.keyring.derive_secret("rotated-access", refresh_token.token)
        refresh = self.keyring.derive_secret("rotated-refresh", refresh_token.token)
        # A refresh may narrow scopes (the SDK refuses widening); the family keeps the narrowed set.
        rotated = record.family
        rotated.generation, rotated.scopes = refresh_token.generation + 1, scopes
        rows = self._token_rows(rotated, access, refresh)
        # RFC 9700 §4.14.2: single-use refresh token; rotation and its new tokens are one atomic step.
        if await self.storage.rotate_family(refresh_token.family_id, refresh_token.generation, scopes, rows, now):
            audit.event("token_refreshed", login=record.grant.github_login, client_id=client.client_id)
            self.cache.invalidate()  # the family's previous access token stops working now
            await self.storage.touch_client(client.client_id, now)
            return self._answer(rotated, access, refresh, now)
        family = (await self._current(refresh_token)).family
        within_grace = now - family.rotated_at <= self.settings.refresh_grace_seconds
        if family.generation == refresh_token.generation + 1 and within_grace and not family.revoked:
            # A retry of a refresh whose answer was lost: the same new pair again (storing is
            # idempotent, so a retry racing the winner on another replica is served too).
            await self.storage.add_tokens(self._token_rows(family, access, refresh))
            return self._answer(family, access, refresh, now)
        # RFC 9700 §4.14.2: refresh token reuse revokes the whole family.
        logger.warning("Refresh token reuse detected; revoking token family %s", family.family_id)
        audit.event("refresh_reuse", login=record.grant.github_login, client_id=client.client_id)
        await self._revoke_family(family)
        raise TokenError("invalid_grant", "refresh token was already used")

    async def _current(self, refresh_token: GitHubRefreshToken) -> TokenRecord:
        record = await self.storage.get_token(token_hash(refresh_token.token))
        if record is None:
            raise TokenError("invalid_grant", "refresh token does not exist")
        return record

    def _token_rows(self, family: Family, access: str, refresh: str) -> list[tuple[str, TokenRow]]:
        """The stored form of a token pair: hashes only, never past the sign-in's maximum age."""
        now, settings = time.time(), self.settings
        pair = ((access, "access", settings.access_token_seconds), (refresh, "refresh", settings.refresh_token_seconds))
        return [
            (
                token_hash(token),
                TokenRow(kind, family.family_id, family.generation, min(self._deadline(family), now + s)),
            )
            for token, kind, s in pair
        ]

    def _answer(self, family: Family, access: str, refresh: str, now: float) -> OAuthToken:
        return OAuthToken(
            access_token=access,
            token_type="Bearer",  # noqa: S106 (a token type, not a secret)
            expires_in=max(1, int(min(self.settings.access_token_seconds, self._deadline(family) - now))),
            refresh_token=refresh,
            scope=" ".join(family.scopes),
        )

    def _deadline(self, family: Family) -> float:
        """MCP_SIGN_IN_MAX_SECONDS: no token of a sign-in outlives it, refreshed or not."""
        return family.signed_in_at + self.settings.sign_in_max_seconds

    async def load_access_token(self, token: str) -> GitHubAccessToken | None:
        key = token_hash(token)
        cached = self.cache.get(key)  # token_cache.py: at most TTL_SECONDS old, dropped on any local revocation
        if cached is not None:
            expires_at, access = cached
            return access if expires_at > time.time() else None
        epoch = self.cache.epoch
        record = await self.storage.get_token(key)
        if record is None or record.token.kind != "access" or not _alive(record):
            return None
        access = GitHubAccessToken(
            token=token,
            client_id=record.family.client_id,
            scopes=record.family.scopes,
            expires_at=int(record.token.expires_at),
            resource=record.family.resource,
            subject=record.family.subject,
            grant_id=record.grant.grant_id,
            family_id=record.family.family_id,
        )
        access._grant = record.grant
        self.cache.put(key, (record.token.expires_at, access), epoch)
        return access

    # Revocation (RFC 7009)
    async def revoke_token(self, token: GitHubAccessToken | GitHubRefreshToken) -> None:
        record = await self.storage.get_token(token_hash(token.token))
        if record is not None:
            await self._revoke_family(record.family)

    async def revoke(self, client_id: str, token: str) -> None:
        """Revoke the family of `token` (access or refresh) if it belongs to `client_id`."""
        record = await self.storage.get_token(token_hash(token))
        if record is not None and record.family.client_id == client_id:
            audit.event("revocation", login=record.grant.github_login, client_id=client_id)
            await self._revoke_family(record.family)

    async def _revoke_code(self, code_hash: str) -> None:
        # RFC 6749 §4.1.2: a replayed code revokes every token issued from it.
        released_grants = await self.storage.revoke_code_families(code_hash, time.time())
        self.cache.invalidate()
        for released in released_grants:
            await self._release_upstream(released)

    async def _revoke_family(self, family: Family) -> None:
        released = await self.storage.revoke_family(family.family_id, time.time())
        self.cache.invalidate()
        if released is not None:
            await self._release_upstream(released)

    async def _release_upstream(self, released: Released) -> None:
        """A grant is gone: its GitHub token goes too, and with the user's last grant the whole
        GitHub authorization, so that GitHub asks for consent again next time."""
        await self._revoke_upstream(released.grant.token_enc, whole_grant=released.last_of_subject)

    async def _revoke_upstream(self, token_enc: str, *, keep: str | None = None, whole_grant: bool = False) -> None:
        """Revoke a stored (encrypted) GitHub token at GitHub, unless it is `keep`. Best effort."""
        token = self.keyring.decrypt(token_enc)
        if not token or token == keep:
            return
        if not await (self.github.revoke_grant(token) if whole_grant else self.github.revoke(token)):
            logger.warning("Could not revoke a GitHub token at GitHub (it stays valid there until it expires)")

    async def _end_grant(self, grant: Grant) -> None:
        audit.event("grant_killed", login=grant.github_login, client_id=grant.client_id, reason="not_admitted")
        await self.storage.kill_grant(grant.grant_id)
        self.cache.invalidate()
        await self._revoke_upstream(grant.token_enc)

    # GitHub token for tools
    async def github_token(self, access: GitHubAccessToken) -> str:
        """The caller's GitHub token, from the grant read with the MCP token (no store read per call),
        refreshed first if it is a GitHub App token about to expire."""
        grant = access._grant or await self.storage.get_grant(access.grant_id)
        if grant is None or grant.dead:
            raise ReconnectRequired()
        return await self._github_token(grant)

    async def github_token_refused(self, access: GitHubAccessToken, refused: str) -> str:
        """GitHub answered 401 to `refused`. The grant read with the MCP token may be up to
        token_cache.TTL_SECONDS old: if the store now holds a newer GitHub token (a refresh or a new
        sign-in, here or on another replica), that one is returned to try again; if it still holds
        `refused`, GitHub no longer honours this grant and it ends (ReconnectRequired)."""
        grant = await self.storage.get_grant(access.grant_id)
        if grant is None or grant.dead:
            raise ReconnectRequired()
        token = await self._github_token(grant)
        if hmac.compare_digest(token, refused):
            await self.grant_revoked(grant.grant_id)
            raise ReconnectRequired()
        return token

    async def _github_token(self, grant: Grant) -> str:
        if _expiring(grant):
            grant = await self._refreshed_grant(grant.grant_id)
        token = self.cache.github_token(grant.grant_id, grant.token_enc)
        if token is None:
            raise ReconnectRequired()
        return token

    async def _refreshed_grant(self, grant_id: str) -> Grant:
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
            await self.grant_revoked(grant.grant_id)
            raise ReconnectRequired()
        try:
            tokens = await self.github.refresh(refresh)
        except GitHubOAuthError:
            await self.grant_revoked(grant.grant_id)
            raise ReconnectRequired() from None
        token_enc = self.keyring.encrypt(tokens.access_token)
        refresh_enc = self.keyring.encrypt(tokens.refresh_token) if tokens.refresh_token else None
        if not await self.storage.update_grant_tokens(
            grant.grant_id, grant.refresh_enc, token_enc, refresh_enc, tokens.expires_at, tokens.refresh_expires_at
        ):
            return await self._refreshed_grant(grant.grant_id)  # a new sign-in replaced the grant meanwhile
        grant.token_enc, grant.refresh_enc, grant.expires_at = token_enc, refresh_enc, tokens.expires_at
        return grant

    async def sweep(self) -> dict[str, int]:
        """Delete expired rows; GitHub tokens no grant holds any more are revoked at GitHub too."""
        swept = await self.storage.sweep(
            time.time(), self.settings.unused_client_seconds, self.settings.idle_client_seconds
        )
        for released in swept.released:
            await self._release_upstream(released)
        return swept.counts

    async def grant_revoked(self, grant_id: str) -> None:
        """GitHub no longer honours this grant: every MCP token on it stops working."""
        logger.info("GitHub grant %s is no longer valid; its MCP tokens are revoked", grant_id)
        audit.event("grant_killed", grant_id=grant_id, reason="github_refused")
        await self.storage.kill_grant(grant_id)
        self.cache.invalidate()


def _expiring(grant: Grant) -> bool:
    return grant.expires_at is not None and grant.expires_at - 60 < time.time()


def _alive(record: TokenRecord, *, any_generation: bool = False) -> bool:
    return (
        not record.family.revoked
        and not record.grant.dead
        and (any_generation or record.token.generation == record.family.generation)
        and record.token.expires_at > time.time()
    )
