"""Which repositories a grant may reach: the user's choice at consent, the server's bound, and the rules.

A choice is "all" (what the user can reach on GitHub) or a set of entries, each a whole owner or one
`owner/repo`. Every entry keeps the GitHub id resolved when it was chosen (the repository's, and its
owner's), because names change hands: after a rename or a transfer, someone else can create a
repository under the old name. A name is honoured only while GitHub reports the same id for it
(checked in ghmcp/upstream/boundary.py).

`MCP_ALLOWED_REPOSITORIES` (`owner/*`, `owner/repo`) bounds every grant by name, on top of its choice.
Names compare case-insensitively, as GitHub's do. Pure functions only: no I/O here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# GitHub's rules: logins are alphanumerics and hyphens (not first), up to 39; repo names [A-Za-z0-9_.-].
OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}")
REPO = re.compile(r"[A-Za-z0-9_.-]{1,100}")
MAX_ENTRIES = 100
SEARCH_QUALIFIER = re.compile(r'(?<![\w-])(repo|org|user):"?([^\s"]+)"?', re.IGNORECASE)


@dataclass(frozen=True)
class Entry:
    """One chosen owner (`repo` None: all of its repositories) or repository, with its GitHub ids."""

    owner: str
    repo: str | None
    owner_id: int
    repo_id: int | None = None

    @property
    def name(self) -> str:
        return self.owner if self.repo is None else f"{self.owner}/{self.repo}"

    def names(self, owner: str, repo: str | None) -> bool:
        if self.owner.lower() != owner.lower():
            return False
        return self.repo is None or (repo is not None and self.repo.lower() == repo.lower())


@dataclass(frozen=True)
class Choice:
    """What the user chose: `entries` None means every repository they can reach."""

    entries: tuple[Entry, ...] | None = None

    @property
    def everything(self) -> bool:
        return self.entries is None

    def entry_for(self, owner: str, repo: str | None) -> Entry | None:
        """The entry covering `owner/repo` (or the owner, `repo` None), a repository entry first."""
        found = [e for e in self.entries or () if e.names(owner, repo)]
        return min(found, key=lambda e: e.repo is None) if found else None

    def narrowed_to(self, wanted: Choice) -> Choice:
        """The intersection: what `wanted` asks for and this choice already covers (a change only narrows)."""
        if wanted.entries is None:
            return self
        if self.entries is None:
            return wanted
        kept = [e for e in wanted.entries if self._covers(e)]
        return Choice(tuple(dict.fromkeys(kept)))

    def _covers(self, wanted: Entry) -> bool:
        # Same account by id: a name that changed hands covers nothing.
        return any(
            e.owner_id == wanted.owner_id and (e.repo is None or e.repo_id == wanted.repo_id)
            for e in self.entries or ()
        )


ALL = Choice()
NOTHING = "[]"  # stored while the user is still choosing: the grant reaches no repository


def parse_names(text: str) -> list[tuple[str, str | None]]:
    """Typed names (`owner` or `owner/repo`, separated by commas, spaces or lines) as (owner, repo) pairs.

    Raises ValueError with one sentence naming the first bad name."""
    pairs: list[tuple[str, str | None]] = []
    for word in re.split(r"[\s,]+", text.strip()):
        if not word:
            continue
        owner, _, repo = word.partition("/")
        if not OWNER.fullmatch(owner) or (repo and (repo in (".", "..") or not REPO.fullmatch(repo))):
            raise ValueError(
                f"{word[:100]!r} is not a GitHub owner or owner/repository name such as 'octocat/hello-world'."
            )
        pairs.append((owner, repo or None))
    if len(pairs) > MAX_ENTRIES:
        raise ValueError(f"Choose at most {MAX_ENTRIES} owners and repositories.")
    return list(dict.fromkeys(pairs))


def encode(choice: Choice) -> str:
    """As stored with the grant: "" for every repository, else a JSON list."""
    if choice.entries is None:
        return ""
    return json.dumps(
        [{"owner": e.owner, "repo": e.repo, "owner_id": e.owner_id, "repo_id": e.repo_id} for e in choice.entries]
    )


def decode(stored: str) -> Choice:
    if not stored:
        return ALL
    return Choice(tuple(Entry(r["owner"], r["repo"], int(r["owner_id"]), r["repo_id"]) for r in json.loads(stored)))


@dataclass(frozen=True)
class Bound:
    """`MCP_ALLOWED_REPOSITORIES`: (owner, repo or None for `owner/*`) patterns; none means no bound."""

    patterns: tuple[tuple[str, str | None], ...] = ()

    def allows(self, owner: str, repo: str | None) -> bool:
        """Whether the bound admits the repository (or, `repo` None, every repository of the owner)."""
        if not self.patterns:
            return True
        return any(
            o.lower() == owner.lower() and (r is None or (repo is not None and r.lower() == repo.lower()))
            for o, r in self.patterns
        )

    def touches(self, owner: str) -> bool:
        return not self.patterns or any(o.lower() == owner.lower() for o, _ in self.patterns)


def parse_bound(patterns: list[str]) -> Bound:
    """The setting's patterns; ValueError naming the first one that is not `owner/*` or `owner/repo`."""
    parsed: list[tuple[str, str | None]] = []
    for pattern in patterns:
        owner, _, repo = pattern.partition("/")
        if not OWNER.fullmatch(owner) or not (repo == "*" or (REPO.fullmatch(repo) and repo not in (".", ".."))):
            raise ValueError(f"{pattern!r} is not owner/* or owner/repository")
        parsed.append((owner, None if repo == "*" else repo))
    return Bound(tuple(parsed))


@dataclass(frozen=True)
class Boundary:
    """What one call may reach: the grant's choice within the server's bound."""

    grant_id: str
    choice: Choice
    bound: Bound

    @property
    def everything(self) -> bool:
        return self.choice.everything and not self.bound.patterns

    def admits(self, owner: str, repo: str) -> Entry | bool | None:
        """False: refused. None: admitted by name alone (an "all" choice). An Entry: admitted while
        GitHub still reports that entry's id for this name."""
        if not self.bound.allows(owner, repo):
            return False
        if self.choice.everything:
            return None
        return self.choice.entry_for(owner, repo) or False

    def keeps(self, owner: str, repo: str, repo_id: int | None, owner_id: int | None) -> bool:
        """Whether a listed repository stays in a listing: by name, and by id where the item carries it."""
        entry = self.admits(owner, repo)
        if entry is False:
            return False
        if entry is None or not isinstance(entry, Entry):
            return True
        if entry.repo is None:
            return owner_id is None or owner_id == entry.owner_id
        return repo_id is None or repo_id == entry.repo_id

    def refused_in_search(self, query: str) -> str | None:
        """The first `repo:`, `org:` or `user:` qualifier naming something outside the boundary, if any."""
        for match in SEARCH_QUALIFIER.finditer(query):
            kind, value = match.group(1).lower(), match.group(2)
            if kind == "repo":
                owner, _, repo = value.partition("/")
                if self.admits(owner, repo) is False:
                    return value
            elif not self.bound.touches(value) or not (
                self.choice.everything or any(e.owner.lower() == value.lower() for e in self.choice.entries or ())
            ):
                return value
        return None


def listed_repository(item: Any) -> tuple[str, str, int | None, int | None] | None:
    """(owner, repo, repo id, owner id) of the repository a listed item is or belongs to, if it names one."""
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("full_name"), str) and isinstance(item.get("owner"), dict):
        owner, _, repo = item["full_name"].partition("/")
        return owner, repo, _int(item.get("id")), _int(item["owner"].get("id"))
    if isinstance(item.get("repository"), dict):
        return listed_repository(item["repository"])
    repo = item.get("repo")  # events name theirs as {"id", "name": "owner/repo"}
    if isinstance(repo, dict) and isinstance(repo.get("name"), str) and "/" in repo["name"]:
        owner, _, name = repo["name"].partition("/")
        return owner, name, _int(repo.get("id")), None
    url = item.get("repository_url")
    if isinstance(url, str) and url.count("/") >= 2:
        owner, repo = url.rstrip("/").split("/")[-2:]
        return owner, repo, None, None
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
