"""How the Redis store's records become hash fields and script arguments, and its hashes and script
answers records again: Redis keeps strings only, so every type is spelt out here, in one place."""

from __future__ import annotations

import json
from typing import Any

from ghmcp.storage import Family, Grant, Released, TokenRecord, TokenRow


def hash_fields(values: dict[str, Any]) -> list[str]:
    """A dataclass as hash field/value pairs: None is left out, booleans are 0/1, lists space-separated."""
    pairs: list[str] = []
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = int(value)
        elif isinstance(value, list):
            value = " ".join(value)
        pairs += [name, str(value)]
    return pairs


def token_args(tokens: list[tuple[str, TokenRow]]) -> list[Any]:
    return [item for h, row in tokens for item in (h, row.kind, row.family_id, row.generation, row.expires_at)]


def json_record(value: str | None) -> dict[str, Any] | None:
    return None if value is None else dict(json.loads(value))


def grant_from(row: dict[str, str]) -> Grant:
    return Grant(
        grant_id=row["grant_id"],
        subject=row["subject"],
        client_id=row["client_id"],
        github_login=row["github_login"],
        token_enc=row["token_enc"],
        refresh_enc=row.get("refresh_enc"),
        expires_at=_optional_float(row.get("expires_at")),
        refresh_expires_at=_optional_float(row.get("refresh_expires_at")),
        github_scopes=row["github_scopes"],
        dead=row["dead"] == "1",
        admitted_via=row.get("admitted_via", ""),
        refresh_lease_until=float(row.get("refresh_lease_until", 0)),
        repositories=row.get("repositories", ""),
        scopes=row.get("scopes"),
    )


def family_from(row: dict[str, str]) -> Family:
    return Family(
        family_id=row["family_id"],
        grant_id=row["grant_id"],
        client_id=row["client_id"],
        subject=row["subject"],
        scopes=row.get("scopes", "").split(),
        resource=row["resource"],
        code_hash=row["code_hash"],
        generation=int(row["generation"]),
        rotated_at=float(row["rotated_at"]),
        revoked=row["revoked"] == "1",
        signed_in_at=float(row.get("signed_in_at", 0)),
    )


def token_record_from(found: str) -> TokenRecord:
    """GET_TOKEN's answer: the token, its family and its grant as one JSON object."""
    parts = json.loads(found)
    token, family, grant = parts["token"], parts["family"], parts["grant"]
    return TokenRecord(
        token=TokenRow(token["kind"], token["family_id"], int(token["generation"]), float(token["expires_at"])),
        family=family_from(family),
        grant=grant_from(grant),
    )


def released_from(found: list[Any]) -> Released:
    """A script's released grant: its hash as a flat field/value list, and whether it was the subject's last."""
    return Released(grant_from(_pairs(found[0])), last_of_subject=bool(found[1]))


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _optional_float(value: str | None) -> float | None:
    return None if value is None else float(value)
