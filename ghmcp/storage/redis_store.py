"""The shared store for several replicas: one Redis (or Valkey) 7+, through redis-py's asyncio client.

Records are hashes under the `mcp:` prefix. Keys hold only ids and hashes, values only hashes,
ids and encrypted data (callers hash and encrypt before they get here). Every single-use or
compare-and-set step is one Lua script (`storage/lua.py`), atomic across processes. Expiring
records (pending sign-ins, codes, tokens, families, unused clients) carry Redis TTLs; `sweep` is
left with what a TTL cannot decide: grants no family or code refers to any more, and consents of
clients that expired.

Redis down or unreachable: every method raises `StoreUnavailable`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ghmcp.storage import (
    Family,
    Grant,
    PendingLimits,
    Released,
    Swept,
    TokenRecord,
    TokenRow,
    lua,
    raise_unavailable,
)
from ghmcp.storage.redis_pool import open_pool
from ghmcp.storage.redis_records import (
    family_from,
    grant_from,
    hash_fields,
    json_record,
    released_from,
    token_args,
    token_record_from,
)

PREFIX = "mcp:"


class RedisStorage:
    """`Storage` on Redis. Redis has no sweep for clients, so the client lifetimes come with the store:
    a new client lives `unused_client_seconds`, and each use extends it to `idle_client_seconds`."""

    def __init__(self, url: str, *, unused_client_seconds: int, idle_client_seconds: int, ca_file: str = "") -> None:
        # One pool per process: the rate limiter shares it (ratelimit.py). It resends nothing (redis_pool.py).
        self.pool = open_pool(url, ca_file=ca_file or None)
        self.redis = aioredis.Redis(connection_pool=self.pool)
        self.unused_client_seconds = unused_client_seconds
        self.idle_client_seconds = idle_client_seconds
        scripts = {name: getattr(lua, name) for name in dir(lua) if name.isupper() and name != "PRELUDE"}
        self._scripts = {name: self.redis.register_script(lua.PRELUDE + text) for name, text in scripts.items()}

    async def _run(self, script: str, *args: Any) -> Any:
        """Run a script once: a lost reply is StoreUnavailable, never a second run (see redis_pool.py).
        redis-py's one automatic rerun is after a NOSCRIPT answer, which means the script did not run."""
        return await self._scripts[script](args=[PREFIX, *args])

    async def ping(self) -> None:
        await self.redis.ping()

    async def key_check(self) -> str | None:
        return cast(str | None, await self.redis.get(f"{PREFIX}key-check"))

    async def set_key_check(self, value: str) -> None:
        await self.redis.set(f"{PREFIX}key-check", value)

    # Clients
    async def save_client(self, client_id: str, info_json: str, now: float) -> None:
        await self.redis.set(f"{PREFIX}client:{client_id}", info_json, ex=self.unused_client_seconds)

    async def get_client(self, client_id: str) -> str | None:
        return cast(str | None, await self.redis.get(f"{PREFIX}client:{client_id}"))

    async def touch_client(self, client_id: str, now: float) -> None:
        await self.redis.expire(f"{PREFIX}client:{client_id}", self.idle_client_seconds)

    # Pending sign-ins
    async def add_pending(
        self,
        key: str,
        record: dict[str, Any],
        *,
        client_id: str,
        origin: str,
        expires_at: float,
        limits: PendingLimits,
        now: float,
        wide_origin: str | None = None,
    ) -> str | None:
        wide = origin if wide_origin is None else wide_origin
        caps = (limits.per_client, limits.per_origin, limits.per_wide_origin, limits.total)
        args = (key, json.dumps(record), client_id, origin, wide, expires_at, *caps, now)
        full = await self._run("ADD_PENDING", *args)
        return None if full is None else str(full)

    async def get_pending(self, key: str, now: float) -> dict[str, Any] | None:
        stage, expires_at, record = cast(
            list[str], await self.redis.hmget(f"{PREFIX}pending:{key}", ["stage", "expires_at", "record"])
        )
        if stage != "consent" or float(expires_at) <= now:
            return None
        return dict(json.loads(record))

    async def approve_pending(
        self, key: str, state_hash: str, github_seconds: float, now: float, record: dict[str, Any] | None = None
    ) -> bool:
        chosen = "" if record is None else json.dumps(record)
        return bool(await self._run("APPROVE_PENDING", key, state_hash, github_seconds, now, chosen))

    async def take_pending(self, key: str, now: float) -> dict[str, Any] | None:
        return json_record(await self._run("TAKE_PENDING", key, "consent", "", now))

    async def take_pending_by_state(self, state_hash: str, now: float) -> dict[str, Any] | None:
        return json_record(await self._run("TAKE_PENDING", "", "github", state_hash, now))

    # Authorization codes
    async def save_code(self, code_hash: str, record: dict[str, Any], grant_id: str, expires_at: float) -> None:
        await self._run("SAVE_CODE", code_hash, json.dumps(record), grant_id, expires_at)

    async def get_code(self, code_hash: str) -> tuple[dict[str, Any], bool] | None:
        record, used_at = cast(
            list[str | None], await self.redis.hmget(f"{PREFIX}code:{code_hash}", ["record", "used_at"])
        )
        return None if record is None else (dict(json.loads(record)), used_at is not None)

    async def redeem_code(self, code_hash: str, family: Family, tokens: list[tuple[str, TokenRow]], now: float) -> bool:
        fields = hash_fields(asdict(family))  # family_id first: the script reads it there
        return bool(await self._run("REDEEM_CODE", code_hash, now, len(fields) // 2, *fields, *token_args(tokens)))

    async def revoke_code_families(self, code_hash: str, now: float) -> list[Released]:
        return [released_from(r) for r in await self._run("REVOKE_CODE_FAMILIES", code_hash, now)]

    # Grants
    async def upsert_grant(self, grant: Grant) -> tuple[str, str | None]:
        grant_id, replaced = await self._run("UPSERT_GRANT", *hash_fields(asdict(grant)))
        return str(grant_id), replaced

    async def get_grant(self, grant_id: str) -> Grant | None:
        row = cast(dict[str, str], await self.redis.hgetall(f"{PREFIX}grant:{grant_id}"))
        return grant_from(row) if row else None

    async def grants(self) -> list[Grant]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for grant_id in cast(set[str], await self.redis.smembers(f"{PREFIX}grants")):
                pipe.hgetall(f"{PREFIX}grant:{grant_id}")
            rows = await pipe.execute()
        return [grant for grant in (grant_from(row) for row in rows if row) if not grant.dead]

    async def lease_grant_refresh(self, grant_id: str, refresh_enc: str | None, now: float, until: float) -> bool:
        return bool(await self._run("LEASE_GRANT_REFRESH", grant_id, refresh_enc or "", now, until))

    async def update_grant_tokens(
        self,
        grant_id: str,
        expected_refresh_enc: str | None,
        token_enc: str,
        refresh_enc: str | None,
        expires_at: float | None,
        refresh_expires_at: float | None,
    ) -> bool:
        changes = {
            "token_enc": token_enc,
            "refresh_enc": refresh_enc,
            "expires_at": expires_at,
            "refresh_expires_at": refresh_expires_at,
        }
        pairs = [item for name, value in changes.items() for item in (name, "" if value is None else str(value))]
        return bool(await self._run("UPDATE_GRANT_TOKENS", grant_id, expected_refresh_enc or "", *pairs))

    async def replace_grant_repositories(self, grant_id: str, expected: str, repositories: str) -> bool:
        return bool(await self._run("REPLACE_GRANT_REPOSITORIES", grant_id, expected, repositories))

    async def kill_grant(self, grant_id: str) -> None:
        await self._run("KILL_GRANT", grant_id)

    async def connected(self, subject: str) -> list[tuple[Grant, list[Family]]]:
        grant_ids = cast(set[str], await self.redis.smembers(f"{PREFIX}subject-grants:{subject}"))
        grants = [g for g in [await self.get_grant(grant_id) for grant_id in grant_ids] if g and not g.dead]
        connected = []
        for grant in grants:
            family_ids = cast(set[str], await self.redis.smembers(f"{PREFIX}grant-families:{grant.grant_id}"))
            async with self.redis.pipeline(transaction=False) as pipe:
                for family_id in family_ids:
                    pipe.hgetall(f"{PREFIX}family:{family_id}")
                rows = await pipe.execute()
            connected.append((grant, [f for f in (family_from(row) for row in rows if row) if not f.revoked]))
        return connected

    async def narrow_grant(self, grant_id: str, subject: str, scopes: str) -> bool:
        return bool(await self._run("NARROW_GRANT", grant_id, subject, scopes))

    # Token families
    async def get_token(self, token_hash: str) -> TokenRecord | None:
        found = await self._run("GET_TOKEN", token_hash)
        return None if found is None else token_record_from(found)

    async def add_tokens(self, tokens: list[tuple[str, TokenRow]]) -> None:
        await self._run("ADD_TOKENS", *token_args(tokens))

    async def rotate_family(
        self, family_id: str, from_generation: int, scopes: list[str], tokens: list[tuple[str, TokenRow]], now: float
    ) -> bool:
        args = (family_id, from_generation, " ".join(scopes), now, *token_args(tokens))
        return bool(await self._run("ROTATE_FAMILY", *args))

    async def revoke_family(self, family_id: str, now: float) -> Released | None:
        found = await self._run("REVOKE_FAMILY", family_id, now)
        return released_from(found[1]) if len(found) > 1 else None

    async def use_once(self, key_hash: str, expires_at: float) -> bool:
        return bool(await self.redis.set(f"{PREFIX}once:{key_hash}", "1", nx=True, pxat=math.ceil(expires_at * 1000)))

    async def pin_login(self, login: str, github_id: int) -> int:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(f"{PREFIX}logins", login.lower(), github_id)
            pipe.hget(f"{PREFIX}logins", login.lower())
            _, pinned = await pipe.execute()
        return int(pinned)

    async def record_consent(self, subject: str, client_id: str, redirect_uri: str, scopes: str, now: float) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            value = json.dumps({"scopes": scopes, "approved_at": now})
            pipe.hset(f"{PREFIX}consents:{client_id}", f"{subject}\n{redirect_uri}", value)
            pipe.sadd(f"{PREFIX}consent-clients", client_id)
            await pipe.execute()

    async def sweep(self, now: float, unused_client_seconds: int, idle_client_seconds: int) -> Swept:
        """Only what TTLs cannot decide (the client lifetimes were fixed when the store was opened)."""
        released = []
        async for grant_id in self.redis.sscan_iter(f"{PREFIX}grants"):
            found = await self._run("SWEEP_GRANT", grant_id, now)
            if found is not None:
                released.append(released_from(found))
        consents = 0
        async for client_id in self.redis.sscan_iter(f"{PREFIX}consent-clients"):
            if not await self.redis.exists(f"{PREFIX}client:{client_id}"):
                consents += await self.redis.delete(f"{PREFIX}consents:{client_id}")
                await self.redis.srem(f"{PREFIX}consent-clients", client_id)
        return Swept({"grants": len(released), "consents": consents}, released)

    async def close(self) -> None:
        await self.redis.aclose()
        await self.pool.aclose()


raise_unavailable(
    RedisStorage,
    lambda exc: isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)),
    "Redis is unreachable",
)
