"""Client ID Metadata Documents: a `client_id` that is an https URL of the client's own metadata.

The MCP authorization spec (2026-07-28) prefers this to dynamic registration. Fetching a URL that
anyone can name is a server-side request on their behalf, so every fetch is guarded: https only,
public addresses only (checked after DNS resolution and pinned for the connection, so DNS cannot
be changed in between), no redirects, a 16 KiB cap and one 5 s deadline for the whole fetch.
Anonymous requests can name slow sites, so fetches have their own small connection pool (never
GitHub's, which tool calls need), at most 8 run at once, and requests for a URL being fetched
join that fetch. Documents are cached as their HTTP caching headers allow, within bounds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
import time
from collections import OrderedDict
from urllib.parse import urlsplit

import httpx2
from mcp.server.auth.provider import RegistrationError
from pydantic import ValidationError

from ghmcp.auth.registration import LOOPBACK_HOSTS, Client, redirect_uri_problem, trim_registration

MAX_DOCUMENT = 16 * 1024
FETCH_SECONDS = 5.0  # the whole fetch: DNS, connect, headers and body together
MAX_IN_FLIGHT = 8
MIN_CACHE_SECONDS, MAX_CACHE_SECONDS, DEFAULT_CACHE_SECONDS = 60, 24 * 3600, 300
MAX_CACHED = 1000
MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.I)
# IPv6 ranges that carry an IPv4 address a gateway or tunnel may deliver to: NAT64 (RFC 6052,
# RFC 8215), 6to4 (RFC 3056), IPv4-compatible, IPv4-mapped, IPv4-translated (RFC 2765), Teredo (RFC 4380).
EMBEDDED_IPV4 = tuple(
    ipaddress.IPv6Network(network)
    for network in (
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "2002::/16",
        "::/96",
        "::ffff:0:0/96",
        "::ffff:0:0:0/96",
        "2001::/32",
    )
)


class DocumentError(Exception):
    """Why a client ID metadata document is not accepted, in words for the error page."""


def is_document_url(client_id: str, allow_http_loopback: bool) -> bool:
    """Whether this client_id names a metadata document (else it is a registered client's id)."""
    if client_id.startswith("https://"):
        return True
    return allow_http_loopback and client_id.startswith("http://") and urlsplit(client_id).hostname in LOOPBACK_HOSTS


def verified_host(client_id: str) -> str:
    """The host a document's client proved it controls by serving the document there."""
    return urlsplit(client_id).netloc


def new_document_client() -> httpx2.AsyncClient:
    """The fetches' own pool: a slow site holds at most these connections, never one a tool call needs."""
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(FETCH_SECONDS),
        # No reuse: connections are keyed by address, and each fetch's TLS must verify its own host name.
        limits=httpx2.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=0),
        trust_env=False,  # SSRF: no proxy from the environment, the connection goes to the checked address
        follow_redirects=False,
    )


class ClientDocuments:
    """Documents by URL: cached, and fetched once however many requests name a URL meanwhile."""

    def __init__(
        self, allowed_schemes: list[str], allow_http_loopback: bool, http: httpx2.AsyncClient | None = None
    ) -> None:
        self._http = http
        self.allowed_schemes = allowed_schemes
        self.allow_http_loopback = allow_http_loopback
        self._cache: OrderedDict[str, tuple[float, Client]] = OrderedDict()
        self._in_flight: dict[str, asyncio.Task[Client]] = {}

    @property
    def http(self) -> httpx2.AsyncClient:
        """Created on first use: its ~30 ms of CA loading is spent once, and never by a server without such clients."""
        if self._http is None:
            self._http = new_document_client()
        return self._http

    async def get(self, url: str) -> Client:
        """The validated document at `url` (from the cache while fresh), or DocumentError."""
        cached = self._cache.get(url)
        if cached is not None and cached[0] > time.monotonic():
            self._cache.move_to_end(url)
            return cached[1].model_copy(deep=True)
        fetch = self._in_flight.get(url)
        if fetch is None:
            if len(self._in_flight) >= MAX_IN_FLIGHT:
                # Anyone may name a slow site: refuse at once rather than let fetches or waiters pile up.
                raise DocumentError("too many client metadata documents are being fetched; try again shortly")
            fetch = asyncio.create_task(self._fetch_and_cache(url))
            self._in_flight[url] = fetch
            fetch.add_done_callback(lambda _: self._in_flight.pop(url, None))  # a failure is not kept
        # Shielded: a waiter whose request goes away leaves the fetch running for the others.
        client = await asyncio.shield(fetch)
        return client.model_copy(deep=True)

    async def aclose(self) -> None:
        """Stop the fetches under way and close the pool: the server is stopping."""
        fetches = list(self._in_flight.values())
        for fetch in fetches:
            fetch.cancel()
        await asyncio.gather(*fetches, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    async def _fetch_and_cache(self, url: str) -> Client:
        try:
            async with asyncio.timeout(FETCH_SECONDS):
                client, lifetime = await self._fetch(url)
        except TimeoutError:
            raise DocumentError("the client's metadata document could not be fetched in time") from None
        self._cache[url] = (time.monotonic() + lifetime, client)
        self._cache.move_to_end(url)
        while len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)
        return client

    async def _fetch(self, url: str) -> tuple[Client, float]:
        parts = urlsplit(url)
        if parts.username or parts.password or parts.fragment or not parts.hostname:
            raise DocumentError("the client_id URL must be a plain https URL with a host")
        loopback_dev = self.allow_http_loopback and parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
        if parts.scheme != "https" and not loopback_dev:
            raise DocumentError("client ID metadata documents must be served over https")
        address = await _public_address(parts.hostname, parts.port or 443, allow_loopback=loopback_dev)
        host = f"[{address}]" if ":" in address else address
        pinned = parts._replace(netloc=f"{host}:{parts.port or (80 if loopback_dev else 443)}").geturl()
        headers = {"Host": parts.netloc, "Accept": "application/json"}
        try:
            # The connection goes to the address checked above; TLS still verifies the real host name.
            async with self.http.stream(
                "GET",
                pinned,
                headers=headers,
                follow_redirects=False,
                extensions={"sni_hostname": parts.hostname},
            ) as response:
                if response.status_code != 200:
                    raise DocumentError(f"fetching the client's metadata document answered HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT:
                        raise DocumentError(f"the client's metadata document is larger than {MAX_DOCUMENT} bytes")
                cache_control = response.headers.get("cache-control", "")
        except httpx2.HTTPError as exc:
            raise DocumentError(f"the client's metadata document could not be fetched ({type(exc).__name__})") from None
        return self._validate(url, bytes(body)), _lifetime(cache_control)

    def _validate(self, url: str, body: bytes) -> Client:
        try:
            document = json.loads(body)
        except ValueError:
            raise DocumentError("the client's metadata document is not JSON") from None
        if not isinstance(document, dict) or document.get("client_id") != url:
            raise DocumentError("the document's client_id is not the URL it was fetched from")
        if document.get("token_endpoint_auth_method", "none") != "none":
            raise DocumentError("a client identified by a metadata document must use token_endpoint_auth_method none")
        for uri in document.get("redirect_uris") or []:
            problem = redirect_uri_problem(str(uri), self.allowed_schemes)
            if problem:
                raise DocumentError(f"the document lists a redirect URI that is not allowed: {problem}")
        try:
            client = Client.model_validate(document | {"token_endpoint_auth_method": "none"})
            trim_registration(client, self.allowed_schemes)
        except ValidationError:
            raise DocumentError("the client's metadata document is not valid client metadata") from None
        except RegistrationError as exc:
            raise DocumentError(f"the client's metadata document is refused: {exc.error_description}") from None
        if not client.redirect_uris:
            raise DocumentError("the client's metadata document lists no redirect_uris")
        client.client_secret = None
        return client


async def _public_address(host: str, port: int, *, allow_loopback: bool) -> str:
    """One address of `host` after checking that every address it resolves to is public."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise DocumentError(f"the client's host {host} does not resolve") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if any(_refused(address, allow_loopback=allow_loopback) for address in addresses):
        raise DocumentError(f"the client's host {host} is not on a public address")
    return str(addresses[0])


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_loopback: bool) -> bool:
    """Whether a fetch must not connect to `address`."""
    if allow_loopback and address.is_loopback:
        return False
    if any(address in network for network in EMBEDDED_IPV4):
        # SSRF: refused whatever IPv4 they embed (64:ff9b::a9fe:a9fe is cloud metadata behind NAT64),
        # and Python's is_global calls several of them global.
        return True
    # SSRF: never fetch from loopback, private, link-local (cloud metadata) or reserved addresses.
    return not address.is_global or address.is_multicast


def _lifetime(cache_control: str) -> float:
    if "no-store" in cache_control.lower() or "no-cache" in cache_control.lower():
        return MIN_CACHE_SECONDS  # still cached briefly: a client cannot make us fetch on every request
    found = MAX_AGE.search(cache_control)
    seconds = int(found.group(1)) if found else DEFAULT_CACHE_SECONDS
    return float(min(max(seconds, MIN_CACHE_SECONDS), MAX_CACHE_SECONDS))
