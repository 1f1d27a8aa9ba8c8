"""What the soak's store holds after the sweeper ran, and what it should hold: the live grants only.

Records are counted by kind in both stores (SQLite rows; Redis keys, and hash fields for the
consents and login pins). Per sign-in records (pending sign-ins, codes, grants, families, tokens)
must be back to the live set; clients, their consents and login pins are per client and per user,
so they are held to the numbers of clients and users the soak used, which do not grow with
sign-ins. Redis also keeps index keys (sets and hashes that find records); each family of them is
held to what the live set needs.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import redis

KINDS = {  # kind: (SQLite table, Redis key family)
    "pending sign-ins": ("pending", "pending"),
    "codes": ("codes", "code"),
    "grants": ("grants", "grant"),
    "families": ("families", "family"),
    "tokens": ("tokens", "token"),
    "clients": ("clients", "client"),
    "consents": ("consents", "consents"),
    "login pins": ("logins", "logins"),
}


@dataclass
class Expected:
    live: int  # live sign-ins: one grant, one family and (access token expired) one refresh token each
    clients: int  # clients that signed in at least once (never-used ones are swept)
    consents: set[tuple[str, str]]  # (login, client_id) approved
    logins: int  # users who signed in

    def records(self) -> dict[str, int]:
        counts = dict.fromkeys(KINDS, 0)
        counts |= {"grants": self.live, "families": self.live, "tokens": self.live}
        return counts | {"clients": self.clients, "consents": len(self.consents), "login pins": self.logins}

    def redis_indexes(self) -> Counter[str]:
        singles = ("grants", "grant-pairs", "consent-clients", "key-check")
        per_grant = {"grant-families": self.live, "subject-grants": self.live, "family-tokens": self.live}
        consented_clients = len({client for _, client in self.consents})
        return Counter(dict.fromkeys(singles, 1) | per_grant | {"consents": consented_clients, "logins": 1})


def sqlite_records(db_path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)) as db:
        return {
            kind: int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608 (our table names)
            for kind, (table, _) in KINDS.items()
        }


def redis_records(url: str) -> tuple[dict[str, int], Counter[str]]:
    """Records by kind, and the number of keys of every other family under `mcp:`."""
    families: Counter[str] = Counter()
    consents = logins = 0
    with redis.Redis.from_url(url, decode_responses=True) as client:
        for key in client.scan_iter("mcp:*", count=1000):
            family = key.removeprefix("mcp:").split(":", 1)[0]
            families[family] += 1
            if family == "consents":
                consents += int(client.hlen(key))
            elif family == "logins":
                logins = int(client.hlen(key))
    records = {kind: families[name] for kind, (_, name) in KINDS.items()}
    records |= {"consents": consents, "login pins": logins}
    record_families = {name for _, name in KINDS.values()} - {"consents", "logins"}  # keys of those two are indexes
    return records, Counter({name: n for name, n in families.items() if name not in record_families})


def redis_key_count(url: str) -> int:
    with redis.Redis.from_url(url, decode_responses=True) as client:
        return sum(1 for _ in client.scan_iter("mcp:*", count=1000))


def compare(title: str, found: dict[str, int], expected: dict[str, int]) -> bool:
    """Print found against expected per kind; True when every kind matches."""
    print(title)
    ok = True
    order = list(KINDS)
    for kind in sorted(set(found) | set(expected), key=lambda k: (order.index(k) if k in order else len(order), k)):
        good = found.get(kind, 0) == expected.get(kind, 0)
        ok &= good
        print(f"  {kind:22s} {found.get(kind, 0):8,d}   expected {expected.get(kind, 0):8,d}  {'' if good else '<--'}")
    return ok
