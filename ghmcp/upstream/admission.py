"""Who may sign in: `MCP_ALLOWED_GITHUB_USERS` (logins or numeric ids) and `MCP_ALLOWED_GITHUB_ORGS`.

Checked at sign-in, again for every existing sign-in when the server starts (the lists may have
changed), and at every refresh for users admitted through an organisation (membership changes).
"""

from __future__ import annotations

from ghmcp.config import Settings
from ghmcp.storage import Grant, Storage
from ghmcp.upstream.api import GitHubClient


class Admission:
    def __init__(self, settings: Settings, storage: Storage, github: GitHubClient) -> None:
        self.users = {u.lower() for u in settings.allowed_github_users}
        self.orgs = settings.allowed_github_orgs
        self.storage = storage
        self.github = github

    async def at_sign_in(self, login: str, github_id: int, github_token: str) -> str | None:
        """What admits this GitHub account ("everyone", "user" or "org:<name>"), or None."""
        if not self.users and not self.orgs:
            return "everyone"
        if await self._listed(login, github_id):
            return "user"
        for org in self.orgs:
            if await self.github.is_org_member(github_token, org):
                return f"org:{org}"
        return None

    async def by_lists(self, grant: Grant) -> bool | None:
        """Whether the lists still admit this grant's user: True, False, or None when only GitHub
        can tell (membership of the organisation that admitted them)."""
        if not self.users and not self.orgs:
            return True
        if await self._listed(grant.github_login, int(grant.subject.removeprefix("github:"))):
            return True
        if grant.admitted_via.startswith("org:") and grant.admitted_via.removeprefix("org:") in self.orgs:
            return None
        return False

    async def is_member(self, github_token: str) -> bool:
        return any([await self.github.is_org_member(github_token, org) for org in self.orgs])

    async def _listed(self, login: str, github_id: int) -> bool:
        if str(github_id) in self.users:
            return True
        # A login can be renamed and re-registered by someone else: it admits only the account first admitted.
        return login.lower() in self.users and await self.storage.pin_login(login, github_id) == github_id
