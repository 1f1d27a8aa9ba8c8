"""What the authorization server hands around: its tokens and codes as the SDK types them, and a
sign-in waiting for the user's consent or GitHub's answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mcp.server.auth.provider import AccessToken, AuthorizationCode, RefreshToken, construct_redirect_uri
from pydantic import BaseModel, Field, SkipValidation

from ghmcp.auth.choice import within
from ghmcp.storage import Grant, TokenRecord


class GitHubAccessToken(AccessToken):
    grant_id: str
    family_id: str
    # The grant as read together with this token (at most token_cache.TTL_SECONDS old): a tool call
    # takes the GitHub token from it instead of reading the store again. Left out of every dump and
    # repr; a field, not a private attribute, because pydantic reads those through a slow __getattr__.
    grant: SkipValidation[Grant | None] = Field(default=None, exclude=True, repr=False)

    @classmethod
    def of(cls, token: str, record: TokenRecord) -> GitHubAccessToken:
        return cls(**_token_fields(token, record), grant_id=record.grant.grant_id, grant=record.grant)


class GitHubAuthorizationCode(AuthorizationCode):
    grant_id: str


class GitHubRefreshToken(RefreshToken):
    family_id: str
    generation: int

    @classmethod
    def of(cls, token: str, record: TokenRecord) -> GitHubRefreshToken:
        return cls(**_token_fields(token, record), generation=record.token.generation)


def _token_fields(token: str, record: TokenRecord) -> dict[str, Any]:
    """What every token of a family carries from it, as the SDK's token models name it."""
    family = record.family
    return {
        "token": token,
        "client_id": family.client_id,
        "scopes": within(family.scopes, record.grant.scopes),  # narrowed on /account: every replica, next read
        "expires_at": int(record.token.expires_at),
        "resource": family.resource,
        "subject": family.subject,
        "family_id": family.family_id,
    }


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
    remembered: bool = False  # approved by a consent the browser remembered, not on the page this time
    ask: bool = False  # show the page even if remembered: that approval would have widened a narrowed grant

    def redirect(self, **params: str | None) -> str:
        # RFC 9207: `iss` on every authorization response, errors included, against mix-up attacks.
        return construct_redirect_uri(self.redirect_uri, state=self.client_state, iss=self.issuer, **params)


class AccountLogin(BaseModel):
    """A sign-in to the connected-apps page (web/account.py): it only proves who the user is."""

    kind: Literal["account"] = "account"


class ReconnectRequired(Exception):
    """The user's GitHub sign-in is gone; the MCP client must run OAuth again."""


@dataclass
class LoginOutcome:
    """Where the browser goes after the GitHub callback; `refused_login` is set for admission refusals."""

    redirect_to: str
    refused_login: str | None = None
    held: tuple[str, str] | None = None  # (subject, grant_id) signed in, no code yet: the user chooses repositories
