"""What a client may register (RFC 7591), and the record kept of it: bounded, and only what we use.

Registration is open to anyone, so every field is bounded and metadata this server never reads
(`jwks`, `jwks_uri`, `software_statement`, contacts, logos, unknown members) is dropped before
storing, so a registration costs at most `MAX_RECORD` bytes.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from mcp.server.auth.provider import RegistrationError
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import AnyUrl

MAX_REDIRECT_URIS = 10
MAX_URI = 2000
MAX_CLIENT_NAME = 100
MAX_STRING = 2000
MAX_RECORD = 8 * 1024
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}
# A host made of DNS characters only: it goes into the consent page's CSP `form-action`.
DNS_HOST = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
# Metadata this server never reads: dropped, never stored nor echoed. Unknown members are
# already dropped by the SDK's model; `software_statement` is one of them.
UNUSED = (
    "client_uri",
    "logo_uri",
    "contacts",
    "tos_uri",
    "policy_uri",
    "jwks_uri",
    "jwks",
    "software_id",
    "software_version",
)


class Client(OAuthClientInformationFull):
    """A client as this server knows it: redirect URIs match exactly, except that a loopback one
    matches on any port (RFC 8252 §7.3: native apps take whatever port is free)."""

    def validate_redirect_uri(self, redirect_uri: AnyUrl | None) -> AnyUrl:
        if redirect_uri is not None and any(_same_but_port(redirect_uri, r) for r in self.redirect_uris or []):
            return redirect_uri
        return super().validate_redirect_uri(redirect_uri)


def _same_but_port(requested: AnyUrl, registered: AnyUrl) -> bool:
    asked, known = urlsplit(str(requested)), urlsplit(str(registered))
    return (
        known.scheme == asked.scheme == "http"
        and known.hostname in LOOPBACK_HOSTS
        and (asked.hostname, asked.path, asked.query) == (known.hostname, known.path, known.query)
    )


def redirect_uri_problem(uri: str, allowed_schemes: list[str]) -> str | None:
    """Why a client may not register this redirect URI, or None (OAuth 2.1 §7.5, RFC 8252 §7)."""
    if len(uri) > MAX_URI:
        return f"redirect URIs must be at most {MAX_URI} characters"
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if parts.fragment or "#" in uri:
        return "redirect URIs must not contain a fragment"
    if "@" in parts.netloc:
        return "redirect URIs must not contain user information"
    if scheme in ("http", "https"):
        host = parts.hostname or ""
        if host not in LOOPBACK_HOSTS and not DNS_HOST.match(host):
            return "redirect URIs need a host name made of letters, digits, dots and hyphens"
        try:
            parts.port  # noqa: B018 (raises on a port that is not a number in range)
        except ValueError:
            return "redirect URIs need a numeric port"
        if scheme == "https" or host in LOOPBACK_HOSTS:
            return None
        return "http redirect URIs are only allowed on loopback (localhost, 127.0.0.1, [::1])"
    if scheme in (s.lower() for s in allowed_schemes):
        return None
    return f"the {scheme or 'empty'} URI scheme is not allowed for redirect URIs"


def trim_registration(client_info: OAuthClientInformationFull, allowed_schemes: list[str]) -> None:
    """Drop unused metadata in place (so the answer echoes what is stored), or raise RegistrationError."""
    uris = [str(uri) for uri in client_info.redirect_uris or []]
    if len(uris) > MAX_REDIRECT_URIS:
        raise RegistrationError("invalid_redirect_uri", f"at most {MAX_REDIRECT_URIS} redirect URIs")
    for uri in uris:
        problem = redirect_uri_problem(uri, allowed_schemes)
        if problem:
            raise RegistrationError("invalid_redirect_uri", problem)
    if client_info.client_name and len(client_info.client_name) > MAX_CLIENT_NAME:
        raise RegistrationError("invalid_client_metadata", f"client_name is longer than {MAX_CLIENT_NAME}")
    for name in UNUSED:
        setattr(client_info, name, None)
    for name, value in client_info.model_dump(exclude={"redirect_uris"}).items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and len(v) > MAX_STRING for v in values):
            raise RegistrationError("invalid_client_metadata", f"{name} is longer than {MAX_STRING} characters")
    if len(client_info.model_dump_json(exclude_none=True)) > MAX_RECORD:
        raise RegistrationError("invalid_client_metadata", f"the registration is larger than {MAX_RECORD} bytes")
