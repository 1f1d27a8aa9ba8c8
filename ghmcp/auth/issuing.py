"""How a token pair is stored and answered: hashes only, and never past the sign-in's maximum age."""

from __future__ import annotations

import time

from mcp.shared.auth import OAuthToken

from ghmcp.auth.keys import token_hash
from ghmcp.auth.records import GitHubAuthorizationCode
from ghmcp.config import Settings
from ghmcp.storage import Family, TokenRecord, TokenRow, new_id


def first_family(code: GitHubAuthorizationCode, client_id: str, code_hash: str, now: float, resource: str) -> Family:
    """The token family a code starts: generation 0, the code's scopes and audience."""
    return Family(
        family_id=new_id(),
        grant_id=code.grant_id,
        client_id=client_id,
        subject=code.subject or "",
        scopes=code.scopes,
        resource=code.resource or resource,
        code_hash=code_hash,
        generation=0,
        rotated_at=now,
        revoked=False,
        signed_in_at=now,
    )


def deadline(family: Family, settings: Settings) -> float:
    """MCP_SIGN_IN_MAX_SECONDS: no token of a sign-in outlives it, refreshed or not."""
    return family.signed_in_at + settings.sign_in_max_seconds


def token_rows(family: Family, access: str, refresh: str, settings: Settings) -> list[tuple[str, TokenRow]]:
    """The stored form of a token pair: hashes only, never past the sign-in's maximum age."""
    now, end = time.time(), deadline(family, settings)
    pair = ((access, "access", settings.access_token_seconds), (refresh, "refresh", settings.refresh_token_seconds))
    return [
        (token_hash(token), TokenRow(kind, family.family_id, family.generation, min(end, now + seconds)))
        for token, kind, seconds in pair
    ]


def token_answer(family: Family, access: str, refresh: str, now: float, settings: Settings) -> OAuthToken:
    return OAuthToken(
        access_token=access,
        token_type="Bearer",  # noqa: S106 (a token type, not a secret)
        expires_in=max(1, int(min(settings.access_token_seconds, deadline(family, settings) - now))),
        refresh_token=refresh,
        scope=" ".join(family.scopes),
    )


def alive(record: TokenRecord, *, any_generation: bool = False) -> bool:
    """Usable: its family and grant live, it is the family's current generation (unless asked), unexpired."""
    return (
        not record.family.revoked
        and not record.grant.dead
        and (any_generation or record.token.generation == record.family.generation)
        and record.token.expires_at > time.time()
    )
