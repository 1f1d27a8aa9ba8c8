"""The `Storage` contract, run against both stores: every single-use step has exactly one winner,
also between two store instances (two processes or replicas) racing on the same data."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from ghmcp.storage import Family, Grant, PendingLimits, Storage, TokenRow, new_id, open_storage

pytestmark = pytest.mark.anyio

LIMITS = PendingLimits(per_client=100, per_origin=100, total=1000)
OpenStore = Callable[[], Storage]


@pytest.fixture(params=["sqlite", "redis"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenStore]:
    """Opens stores on one shared backend: each call is another "process"."""
    url = f"sqlite:///{tmp_path / 'mcp.sqlite3'}" if request.param == "sqlite" else request.getfixturevalue("redis_url")
    opened: list[Storage] = []

    def open_one() -> Storage:
        opened.append(open_storage(url, unused_client_seconds=1, idle_client_seconds=3))
        return opened[-1]

    yield open_one
    for store in opened:
        await store.close()


@pytest.fixture
def store(stores: OpenStore) -> Storage:
    return stores()


def grant(subject: str = "1001", client_id: str = "client-a", refresh: str | None = "refresh-enc-1") -> Grant:
    return Grant(
        grant_id=new_id(),
        subject=subject,
        client_id=client_id,
        github_login="alice",
        token_enc="token-enc-1",
        refresh_enc=refresh,
        expires_at=time.time() + 3600 if refresh else None,
        refresh_expires_at=None,
        github_scopes="read:user",
        dead=False,
    )


def family(grant_id: str, code_hash: str, client_id: str = "client-a") -> Family:
    return Family(
        family_id=new_id(),
        grant_id=grant_id,
        client_id=client_id,
        subject="1001",
        scopes=["user"],
        resource="http://localhost/mcp",
        code_hash=code_hash,
        generation=0,
        rotated_at=time.time(),
        revoked=False,
        signed_in_at=time.time(),
    )


def pair(family_id: str, generation: int, seconds: float = 3600) -> list[tuple[str, TokenRow]]:
    expires = time.time() + seconds
    return [
        (new_id(), TokenRow("access", family_id, generation, expires)),
        (new_id(), TokenRow("refresh", family_id, generation, expires)),
    ]


async def signed_in(store: Storage, code_seconds: float = 300) -> tuple[Grant, Family, list[tuple[str, TokenRow]]]:
    """A grant with one redeemed code, its family and first tokens."""
    g = grant()
    g.grant_id, _ = await store.upsert_grant(g)
    code = new_id()
    await store.save_code(code, {"code": "record"}, g.grant_id, time.time() + code_seconds)
    f = family(g.grant_id, code)
    tokens = pair(f.family_id, 0)
    assert await store.redeem_code(code, f, tokens, time.time())
    return g, f, tokens


async def test_key_check_and_ping(store: Storage) -> None:
    await store.ping()
    assert await store.key_check() is None
    await store.set_key_check("abc")
    assert await store.key_check() == "abc"


async def test_clients(store: Storage) -> None:
    await store.save_client("c1", '{"client_id": "c1"}', time.time())
    await store.touch_client("c1", time.time())
    assert await store.get_client("c1") == '{"client_id": "c1"}'
    assert await store.get_client("c2") is None


async def test_pending_stages_are_single_use(stores: OpenStore) -> None:
    a, b = stores(), stores()
    now = time.time()
    stored = await a.add_pending("k1", {"x": 1}, client_id="c", origin="o", expires_at=now + 60, limits=LIMITS, now=now)
    assert stored is None  # no cap reached
    assert await b.get_pending("k1", now) == {"x": 1}
    approvals = await asyncio.gather(
        *(s.approve_pending("k1", f"state{i}", 600, now) for i, s in enumerate([a, b] * 3))
    )
    assert approvals.count(True) == 1
    winner = f"state{approvals.index(True)}"
    assert await a.get_pending("k1", now) is None  # no longer at the consent stage
    assert await a.take_pending("k1", now) is None
    taken = await asyncio.gather(*(s.take_pending_by_state(winner, now) for s in [a, b] * 3))
    assert [t for t in taken if t is not None] == [{"x": 1}]


async def test_add_pending_returns_none_when_stored(store: Storage) -> None:
    now = time.time()
    full = await store.add_pending("k", {}, client_id="c", origin="o", expires_at=now + 60, limits=LIMITS, now=now)
    assert full is None
    assert await store.take_pending("k", now) == {}
    assert await store.take_pending("k", now) is None


async def test_expired_pending_is_gone(store: Storage) -> None:
    now = time.time()
    await store.add_pending("k", {}, client_id="c", origin="o", expires_at=now + 0.5, limits=LIMITS, now=now)
    later = now + 1
    await asyncio.sleep(max(0.0, later - time.time()))
    assert await store.get_pending("k", later) is None
    assert await store.take_pending("k", later) is None


@pytest.mark.parametrize(
    ("limits", "cap"),
    [
        (PendingLimits(per_client=5, per_origin=100, total=100), "client"),
        (PendingLimits(per_client=100, per_origin=5, total=100), "origin"),
        (PendingLimits(per_client=100, per_origin=100, total=100, per_wide_origin=5), "wide_origin"),
        (PendingLimits(per_client=100, per_origin=100, total=5), "total"),
    ],
)
async def test_pending_caps_hold_under_concurrency(stores: OpenStore, limits: PendingLimits, cap: str) -> None:
    a, b = stores(), stores()
    now = time.time()

    async def add(i: int, s: Storage) -> str | None:
        # Only what the cap under test counts is shared; every other key is new each time.
        client = "c" if cap == "client" else f"c{i}"
        origin = "o" if cap == "origin" else f"o{i}"
        wide = f"w{i}" if cap == "total" else "w"
        return await s.add_pending(
            f"k{i}", {}, client_id=client, origin=origin, wide_origin=wide, expires_at=now + 60, limits=limits, now=now
        )

    results = await asyncio.gather(*(add(i, [a, b][i % 2]) for i in range(20)))
    assert results.count(None) == 5
    assert set(results) - {None} == {cap}
    # Expired sign-ins no longer count.
    later = now + 61
    stored = await a.add_pending(
        "late", {}, client_id="c", origin="o", wide_origin="w", expires_at=later + 60, limits=limits, now=later
    )
    assert stored is None


async def test_wide_origin_slots_are_freed_when_sign_ins_end(store: Storage) -> None:
    """Approval keeps the slot (the sign-in is still under way); the callback or a denial frees it."""
    limits = PendingLimits(per_client=100, per_origin=100, total=100, per_wide_origin=2)
    now = time.time()

    async def add(key: str, origin: str) -> str | None:
        site = "2001:db8:1::/48"
        return await store.add_pending(
            key, {}, client_id=key, origin=origin, wide_origin=site, expires_at=now + 60, limits=limits, now=now
        )

    assert [await add("k1", "2001:db8:1:1::/64"), await add("k2", "2001:db8:1:2::/64")] == [None, None]
    assert await add("k3", "2001:db8:1:3::/64") == "wide_origin"
    assert await store.approve_pending("k1", "state1", 600, now)
    assert await add("k3", "2001:db8:1:3::/64") == "wide_origin"
    assert await store.take_pending_by_state("state1", now) == {}
    assert await add("k3", "2001:db8:1:3::/64") is None
    assert await store.take_pending("k2", now) == {}
    assert await add("k4", "2001:db8:1:4::/64") is None
    assert await add("k5", "2001:db8:1:5::/64") == "wide_origin"


@pytest.mark.parametrize("cap", ["client", "origin", "wide_origin", "total"])
async def test_approved_sign_in_keeps_its_slot_past_the_consent_deadline(store: Storage, cap: str) -> None:
    """At GitHub it is still under way: every index it counts in follows its new deadline."""
    sizes = {"client": 100, "origin": 100, "wide_origin": 100, "total": 100} | {cap: 2}
    limits = PendingLimits(sizes["client"], sizes["origin"], sizes["total"], sizes["wide_origin"])
    now = time.time()

    async def add(key: str, at: float) -> str | None:
        # Only what the cap under test counts is shared.
        client = "c" if cap == "client" else key
        origin = "o" if cap == "origin" else key
        wide = "w" if cap == "wide_origin" else key
        return await store.add_pending(
            key, {}, client_id=client, origin=origin, wide_origin=wide, expires_at=at + 60, limits=limits, now=at
        )

    assert await add("k1", now) is None
    assert await store.approve_pending("k1", "state1", 600, now)
    later = now + 120  # past k1's consent deadline, well within its GitHub stage
    assert [await add("k2", later), await add("k3", later)] == [None, cap]


async def test_without_a_wide_origin_the_origin_is_its_own_site(store: Storage) -> None:
    limits = PendingLimits(per_client=100, per_origin=100, total=100, per_wide_origin=2)
    now = time.time()

    async def add(i: int) -> str | None:
        return await store.add_pending(
            f"k{i}", {}, client_id=f"c{i}", origin="192.0.2.1", expires_at=now + 60, limits=limits, now=now
        )

    assert [await add(i) for i in range(3)] == [None, None, "wide_origin"]


async def test_concurrent_code_exchange_has_one_winner(stores: OpenStore) -> None:
    a, b = stores(), stores()
    g = grant()
    g.grant_id, _ = await a.upsert_grant(g)
    code = new_id()
    await a.save_code(code, {"r": 1}, g.grant_id, time.time() + 300)
    attempts = [family(g.grant_id, code) for _ in range(6)]
    tokens = [pair(f.family_id, 0) for f in attempts]
    won = await asyncio.gather(
        *(s.redeem_code(code, f, t, time.time()) for s, f, t in zip([a, b] * 3, attempts, tokens, strict=True))
    )
    assert won.count(True) == 1
    assert await b.get_code(code) == ({"r": 1}, True)
    winner = won.index(True)
    record = await b.get_token(tokens[winner][0][0])
    assert record is not None
    assert record.family.family_id == attempts[winner].family_id and record.grant.grant_id == g.grant_id
    assert record.token.kind == "access" and record.family.scopes == ["user"]
    assert await a.get_token(tokens[(winner + 1) % 6][0][0]) is None  # losers stored nothing


async def test_code_of_dead_or_expired_grant_is_refused(store: Storage) -> None:
    g = grant()
    g.grant_id, _ = await store.upsert_grant(g)
    code, old = new_id(), new_id()
    await store.save_code(code, {}, g.grant_id, time.time() + 300)
    await store.save_code(old, {}, g.grant_id, time.time() + 0.2)
    await asyncio.sleep(0.3)
    f = family(g.grant_id, old)
    assert not await store.redeem_code(old, f, pair(f.family_id, 0), time.time())
    await store.kill_grant(g.grant_id)
    f = family(g.grant_id, code)
    assert not await store.redeem_code(code, f, pair(f.family_id, 0), time.time())


async def test_concurrent_rotation_has_one_winner(stores: OpenStore) -> None:
    a, b = stores(), stores()
    _, f, _ = await signed_in(a)
    candidates = [pair(f.family_id, 1) for _ in range(6)]
    won = await asyncio.gather(
        *(
            s.rotate_family(f.family_id, 0, ["user"], t, time.time())
            for s, t in zip([a, b] * 3, candidates, strict=True)
        )
    )
    assert won.count(True) == 1
    record = await a.get_token(candidates[won.index(True)][1][0])
    assert record is not None and record.family.generation == 1 and record.token.generation == 1
    # Inside the grace window a retry re-stores the same pair: idempotent, the stored one stays.
    winner = candidates[won.index(True)]
    await b.add_tokens(winner)
    again = await a.get_token(winner[0][0])
    assert again is not None and again.token.expires_at == winner[0][1].expires_at
    # A rotation from the old generation after the win (outside the window) never succeeds.
    assert not await b.rotate_family(f.family_id, 0, ["user"], pair(f.family_id, 1), time.time())


async def test_rotation_of_revoked_family_fails(store: Storage) -> None:
    _, f, _ = await signed_in(store)
    await store.revoke_family(f.family_id, time.time())
    assert not await store.rotate_family(f.family_id, 0, ["user"], pair(f.family_id, 1), time.time())


async def test_github_refresh_lease_and_compare_and_swap(stores: OpenStore) -> None:
    a, b = stores(), stores()
    g = grant()
    g.grant_id, _ = await a.upsert_grant(g)
    now = time.time()
    leases = await asyncio.gather(
        *(s.lease_grant_refresh(g.grant_id, "refresh-enc-1", now, now + 30) for s in [a, b] * 3)
    )
    assert leases.count(True) == 1
    assert not await a.lease_grant_refresh(g.grant_id, "refresh-enc-1", now + 1, now + 31)  # still leased
    swaps = await asyncio.gather(
        *(
            s.update_grant_tokens(g.grant_id, "refresh-enc-1", f"t{i}", f"r{i}", now + 3600, None)
            for i, s in enumerate([a, b] * 2)
        )
    )
    assert swaps.count(True) == 1
    stored = await b.get_grant(g.grant_id)
    i = swaps.index(True)
    assert stored is not None and (stored.token_enc, stored.refresh_enc) == (f"t{i}", f"r{i}")
    assert stored.refresh_lease_until == 0 and stored.refresh_expires_at is None
    # The lease went with the swap; a lease on the old refresh token is refused.
    assert not await a.lease_grant_refresh(g.grant_id, "refresh-enc-1", now, now + 30)
    assert await a.lease_grant_refresh(g.grant_id, f"r{i}", now, now + 30)


async def test_lease_without_refresh_token(store: Storage) -> None:
    g = grant(refresh=None)
    g.grant_id, _ = await store.upsert_grant(g)
    now = time.time()
    assert await store.lease_grant_refresh(g.grant_id, None, now, now + 30)
    assert await store.update_grant_tokens(g.grant_id, None, "t2", None, None, None)
    stored = await store.get_grant(g.grant_id)
    assert stored is not None and stored.refresh_enc is None and stored.expires_at is None


async def test_upsert_grant_is_unique_per_subject_and_client(store: Storage) -> None:
    first = grant()
    first_id, replaced = await store.upsert_grant(first)
    assert replaced is None
    second = grant()
    second.token_enc = "token-enc-2"
    second_id, replaced = await store.upsert_grant(second)
    assert (second_id, replaced) == (first_id, "token-enc-1")
    other_id, _ = await store.upsert_grant(grant(client_id="client-b"))
    assert other_id != first_id
    assert sorted(g.token_enc for g in await store.grants()) == ["token-enc-1", "token-enc-2"]


async def test_kill_grant_revokes_its_families(store: Storage) -> None:
    g, _, tokens = await signed_in(store)
    await store.kill_grant(g.grant_id)
    record = await store.get_token(tokens[0][0])
    # SQLite keeps the rows, marked, until its sweep; Redis drops the family and its tokens at once.
    assert record is None or (record.family.revoked and record.grant.dead)
    assert await store.grants() == []


async def test_connected_lists_a_users_live_grants_with_their_live_families(store: Storage) -> None:
    g, f, _ = await signed_in(store)
    other, _ = await store.upsert_grant(grant(client_id="client-b"))
    await store.upsert_grant(grant(subject="2002"))  # someone else's
    listed = {found.grant_id: [x.family_id for x in families] for found, families in await store.connected("1001")}
    assert listed == {g.grant_id: [f.family_id], other: []}
    await store.revoke_family(f.family_id, time.time())
    await store.kill_grant(other)
    assert await store.connected("1001") == []


async def test_revoke_family_spares_a_grant_an_unexchanged_code_needs(store: Storage) -> None:
    g, f, _ = await signed_in(store)
    pending_code = new_id()
    await store.save_code(pending_code, {}, g.grant_id, time.time() + 300)  # a second sign-in, not exchanged yet
    assert await store.revoke_family(f.family_id, time.time()) is None
    assert await store.get_grant(g.grant_id) is not None
    f2 = family(g.grant_id, pending_code)
    assert await store.redeem_code(pending_code, f2, pair(f2.family_id, 0), time.time())
    released = await store.revoke_family(f2.family_id, time.time())
    assert released is not None and released.grant.grant_id == g.grant_id and released.last_of_subject
    assert await store.get_grant(g.grant_id) is None
    assert await store.revoke_family(new_id(), time.time()) is None


async def test_released_grant_knows_other_grants_of_the_subject(store: Storage) -> None:
    await store.upsert_grant(grant(client_id="client-b"))
    _, f, _ = await signed_in(store)
    released = await store.revoke_family(f.family_id, time.time())
    assert released is not None and not released.last_of_subject


async def test_replayed_code_revokes_its_families(stores: OpenStore) -> None:
    a, b = stores(), stores()
    g, f, tokens = await signed_in(a)
    results = await asyncio.gather(
        a.revoke_code_families(f.code_hash, time.time()), b.revoke_code_families(f.code_hash, time.time())
    )
    released = [r for batch in results for r in batch]
    assert [r.grant.grant_id for r in released] == [g.grant_id]  # released once, by one of them
    record = await a.get_token(tokens[0][0])
    assert record is None or record.family.revoked


async def test_pin_login(stores: OpenStore) -> None:
    a, b = stores(), stores()
    pinned = await asyncio.gather(a.pin_login("Alice", 1), b.pin_login("alice", 2))
    assert pinned[0] == pinned[1] in (1, 2)
    assert await a.pin_login("ALICE", 3) == pinned[0]
    assert await b.pin_login("bob", 4) == 4


async def test_sweep_releases_grants_of_expired_codes(store: Storage) -> None:
    g = grant(client_id="client-z")
    g.grant_id, _ = await store.upsert_grant(g)
    await store.save_code(new_id(), {}, g.grant_id, time.time() + 0.3)  # a sign-in never exchanged
    kept, _, _ = await signed_in(store)
    assert (await store.sweep(time.time(), 3600, 3600)).released == []
    await asyncio.sleep(0.5)
    swept = await store.sweep(time.time(), 3600, 3600)
    assert [r.grant.grant_id for r in swept.released] == [g.grant_id]
    assert swept.counts["grants"] == 1
    assert await store.get_grant(g.grant_id) is None and await store.get_grant(kept.grant_id) is not None


async def test_sweep_releases_killed_grants(store: Storage) -> None:
    g, _, _ = await signed_in(store, code_seconds=0.3)
    await store.kill_grant(g.grant_id)
    await asyncio.sleep(0.5)
    swept = await store.sweep(time.time(), 3600, 3600)
    assert [r.grant.grant_id for r in swept.released] == [g.grant_id]


async def test_redis_expires_records_without_a_sweep(redis_url: str) -> None:
    """TTLs: pending sign-ins, codes, tokens, their families and unused clients vanish by themselves."""
    store = open_storage(redis_url, unused_client_seconds=1, idle_client_seconds=3)
    try:
        now = time.time()
        await store.save_client("unused", "{}", now)
        await store.save_client("used", "{}", now)
        await store.touch_client("used", now)  # extended to the idle lifetime
        await store.add_pending("k", {}, client_id="c", origin="o", expires_at=now + 1, limits=LIMITS, now=now)
        g = grant()
        g.grant_id, _ = await store.upsert_grant(g)
        code = new_id()
        await store.save_code(code, {}, g.grant_id, now + 1)
        f = family(g.grant_id, code)
        tokens = pair(f.family_id, 0, seconds=1)
        assert await store.redeem_code(code, f, tokens, now)
        await asyncio.sleep(1.5)
        assert await store.get_client("unused") is None and await store.get_client("used") is not None
        assert await store.get_token(tokens[0][0]) is None and await store.get_code(code) is None
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        left = sorted(await client.keys("*"))
        await client.aclose()
        # What stays: the grant and its indexes (swept), the used client and the key-less bookkeeping.
        assert left == sorted(
            [
                "mcp:client:used",
                f"mcp:grant:{g.grant_id}",
                "mcp:grant-pairs",
                "mcp:grants",
                f"mcp:subject-grants:{g.subject}",
            ]
        )
        swept = await store.sweep(time.time(), 1, 3)
        assert [r.grant.grant_id for r in swept.released] == [g.grant_id]
    finally:
        await store.close()


@pytest.mark.parametrize("revoke", ["family", "grant", "code replay"])
async def test_redis_drops_a_revoked_family_and_its_tokens_at_once(redis_url: str, revoke: str) -> None:
    """Nothing of a revoked family waits for its TTL (up to the refresh lifetime): its keys go with it."""
    store = open_storage(redis_url, unused_client_seconds=1, idle_client_seconds=3)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        g, f, first = await signed_in(store)
        second = pair(f.family_id, 1)
        assert await store.rotate_family(f.family_id, 0, ["user"], second, time.time())
        assert await client.scard(f"mcp:family-tokens:{f.family_id}") == 4
        if revoke == "family":
            await store.revoke_family(f.family_id, time.time())
        elif revoke == "grant":
            await store.kill_grant(g.grant_id)
        else:
            await store.revoke_code_families(f.code_hash, time.time())
        for token_hash, _ in first + second:
            assert await store.get_token(token_hash) is None
        left = [str(key) for key in await client.keys("mcp:*")]
        assert not [key for key in left if key.startswith(("mcp:token:", "mcp:family:", "mcp:family-tokens:"))]
        await store.add_tokens(pair(f.family_id, 2))  # a late grace-window copy finds no family: nothing stored
        assert not await client.keys("mcp:token:*")
    finally:
        await client.aclose()
        await store.close()


async def test_use_once_has_one_winner(stores: OpenStore) -> None:
    a, b = stores(), stores()
    expires = time.time() + 60
    results = await asyncio.gather(*(store.use_once("nonce-hash", expires) for store in (a, b, a, b)))
    assert sorted(results) == [False, False, False, True]
    assert await a.use_once("another", expires)


async def test_a_grants_repositories_are_kept_and_only_compare_and_set_changes_them(store: Storage) -> None:
    g, _, tokens = await signed_in(store)
    chosen = '[{"owner": "octocat", "repo": "hello-world", "owner_id": 1, "repo_id": 7}]'
    assert (await store.get_grant(g.grant_id)).repositories == ""  # type: ignore[union-attr]
    assert await store.replace_grant_repositories(g.grant_id, "", chosen)
    assert not await store.replace_grant_repositories(g.grant_id, "", "[]")  # a stale expectation loses
    record = await store.get_token(tokens[0][0])
    assert record is not None and record.grant.repositories == chosen
    await store.kill_grant(g.grant_id)
    assert not await store.replace_grant_repositories(g.grant_id, chosen, "[]")


def test_an_older_sqlite_file_gains_the_repositories_column(tmp_path: Path) -> None:
    import sqlite3

    from ghmcp.storage.sqlite_schema import SCHEMA, migrate

    db = sqlite3.connect(tmp_path / "old.sqlite3")
    db.row_factory = sqlite3.Row
    db.executescript(SCHEMA.replace("    repositories TEXT NOT NULL DEFAULT '',", ""))
    db.execute(
        "INSERT INTO grants (grant_id, subject, client_id, github_login, token_enc, github_scopes)"
        " VALUES ('g', 's', 'c', 'l', 't', '')"
    )
    migrate(db)
    assert db.execute("SELECT repositories FROM grants").fetchone()[0] == ""
