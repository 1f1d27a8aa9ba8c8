"""HTTP routes this server adds to the SDK's: the landing page, icons, the GitHub callback,
revocation, metadata, health."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from mcp.server.auth.handlers.authorize import AuthorizationHandler
from mcp.server.auth.handlers.metadata import MetadataHandler
from mcp.server.auth.middleware.client_auth import AuthenticationError, ClientAuthenticator
from mcp.server.auth.routes import build_metadata, cors_middleware, create_protected_resource_routes
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ghmcp import audit
from ghmcp.asgi import pages
from ghmcp.asgi.unavailable import RETRY_AFTER_SECONDS
from ghmcp.auth.cimd import DocumentError, is_document_url
from ghmcp.auth.records import AccountLogin
from ghmcp.config import Settings
from ghmcp.storage import StoreUnavailable, store_failure
from ghmcp.web import demo, identity
from ghmcp.web.account import AccountPage
from ghmcp.web.consent import BrowserCookies, ConsentPage
from ghmcp.web.repositories import RepositoryPicker, to_client
from github_provider import MAX_STATE, GitHubOAuthProvider

logger = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
CLIENT_AUTH_METHODS = ["client_secret_post", "client_secret_basic", "none"]


class GitHubCallback:
    def __init__(
        self,
        settings: Settings,
        provider: GitHubOAuthProvider,
        cookies: BrowserCookies,
        account: AccountPage,
        picker: RepositoryPicker,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.cookies = cookies
        self.account = account
        self.picker = picker

    async def handle(self, request: Request) -> Response:
        params = request.query_params
        state = params.get("state", "")
        # Unknown, replayed, expired or foreign state: an error page, never a redirect.
        if not state or not self.cookies.login_matches(request, state):
            return self._invalid("This sign-in was not started in this browser, or it was already completed.")
        pending = await self.provider.login.take(state)  # single use
        if pending is None:
            return self._invalid("This sign-in expired or was already completed.")
        error, code = params.get("error"), params.get("code")
        if isinstance(pending, AccountLogin):
            response: Response = await self.account.complete(state, None if error else code)
        elif error == "access_denied":
            audit.event("sign_in_failed", client_id=pending.client_id, reason="denied_at_github")
            response = RedirectResponse(pending.redirect(error="access_denied"), status_code=302)
        elif error or not code:
            audit.event("sign_in_failed", client_id=pending.client_id, reason="github_error")
            response = RedirectResponse(
                pending.redirect(error="server_error", error_description="GitHub sign-in did not complete"),
                status_code=302,
            )
        else:
            mode = self.cookies.repositories_mode(request, state)
            outcome = await self.provider.complete_login(pending, state, code, repositories=mode)
            if outcome.held is not None:
                response = await self.picker.start(request, pending, *outcome.held)
            elif outcome.refused_login is not None:
                response = pages.message(
                    self.settings.app_name,
                    "This GitHub account is not allowed here",
                    f"You signed in to GitHub as {outcome.refused_login}, who is not on this server's list of "
                    "allowed users or organisations. Nothing was stored. Ask the server's owner for access.",
                    403,
                    link=outcome.redirect_to,
                    link_text=f"Back to {pending.client_name}",
                )
            else:
                response = to_client(self.settings, pending, outcome.redirect_to)
        self.cookies.release_login(request, response, state)
        return response

    def _invalid(self, text: str) -> Response:
        audit.event("sign_in_failed", reason="invalid_state")
        return pages.message(self.settings.app_name, "Sign-in could not continue", text, 400)


class Authorize:
    """The SDK's `/authorize`, with `iss` on its error redirects too (RFC 9207), and never an
    oversized client `state` echoed back."""

    def __init__(self, settings: Settings, provider: GitHubOAuthProvider) -> None:
        self.settings = settings
        self.issuer = settings.server_url
        self.provider = provider
        self.sdk = AuthorizationHandler(provider)

    async def handle(self, request: Request) -> Response:
        client_id = (request.query_params if request.method == "GET" else await request.form()).get("client_id")
        if isinstance(client_id, str) and is_document_url(client_id, self.settings.cimd_allow_http_loopback):
            try:
                await self.provider.clients.documents.get(client_id)
            except DocumentError as exc:
                # Never a redirect: nothing proves the redirect URIs belong to this client.
                return pages.message(self.settings.app_name, "This app could not be verified", f"{exc}.", 400)
        store_failure.set(None)
        response = await self.sdk.handle(request)
        if (failure := store_failure.get()) is not None:
            raise failure  # the SDK turns every exception into a server_error redirect: answer 503 instead
        location = response.headers.get("location")
        if location is None or location.startswith(f"{self.issuer}/"):
            return response  # the way to our own consent page, not an answer to the client
        parts = urlsplit(location)
        params = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "iss"]
        params = [(k, v) for k, v in params if k != "state" or len(v) <= MAX_STATE]
        response.headers["location"] = urlunsplit(parts._replace(query=urlencode([*params, ("iss", self.issuer)])))
        return response


class Revocation:
    """RFC 7009 revocation that, unlike the SDK's handler, also serves public clients."""

    def __init__(self, provider: GitHubOAuthProvider) -> None:
        self.provider = provider
        self.authenticator = ClientAuthenticator(provider)

    async def handle(self, request: Request) -> Response:
        try:
            client = await self.authenticator.authenticate_request(request)
            form = await request.form()
        except AuthenticationError as exc:
            return JSONResponse({"error": "invalid_client", "error_description": exc.message}, 401, NO_STORE)
        except StoreUnavailable:
            raise  # a 503, not the client's fault
        except Exception:  # malformed bodies raise a variety of parser errors
            return JSONResponse({"error": "invalid_request"}, 400, NO_STORE)
        token = form.get("token")
        if not isinstance(token, str) or not token:
            return JSONResponse({"error": "invalid_request", "error_description": "token is required"}, 400, NO_STORE)
        await self.provider.revoke(client.client_id, token)
        return Response(status_code=200, headers=NO_STORE)  # RFC 7009 §2.2: 200 for unknown tokens too


def landing(settings: Settings) -> Callable[[Request], Awaitable[Response]]:
    """`/`: what this server is, its MCP URL, and where each client takes it (docs/clients.md in short),
    so that someone who opens the server's address in a browser learns how to connect."""
    # The server's name in the clients' configuration files and commands: one word, as they expect.
    config_name = re.sub(r"[^a-z0-9]+", "-", settings.app_name.lower()).strip("-") or "github"

    async def show(request: Request) -> Response:
        return pages.render(
            "landing.html",
            app_name=settings.app_name,
            title="Connect an MCP client",
            wide=True,
            mcp_url=settings.resource_url,
            sse=settings.transport == "sse",  # the recipes name the transport
            config_name=config_name,
            public=settings.https,  # claude.ai and ChatGPT connect from their cloud: only to https
            demo_users=[user[0] for user in demo.USERS] if settings.demo else [],
        )

    return show


def healthz(provider: GitHubOAuthProvider) -> Callable[[Request], Awaitable[Response]]:
    """200 while the store answers, 503 when it does not (a load balancer then routes around this replica)."""

    async def health(request: Request) -> Response:
        try:
            await provider.storage.ping()
        except StoreUnavailable:
            retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
            return JSONResponse({"status": "unavailable", "store": "unreachable"}, 503, retry)
        return JSONResponse({"status": "ok"})

    return health


def metadata_routes(auth: AuthSettings, scopes: list[str], app_name: str) -> list[BaseRoute]:
    """Metadata that also admits public clients (`none`) at /token and /revoke, and lists our scopes."""
    metadata = build_metadata(
        auth.issuer_url,
        None,
        auth.client_registration_options or ClientRegistrationOptions(),
        auth.revocation_options or RevocationOptions(),
    )
    metadata.authorization_response_iss_parameter_supported = True  # RFC 9207 §3: clients then enforce `iss`
    metadata.client_id_metadata_document_supported = True  # cimd.py
    metadata.token_endpoint_auth_methods_supported = CLIENT_AUTH_METHODS
    metadata.revocation_endpoint_auth_methods_supported = CLIENT_AUTH_METHODS
    assert auth.resource_server_url is not None
    return [
        Route(
            "/.well-known/oauth-authorization-server",
            endpoint=cors_middleware(MetadataHandler(metadata).handle, ["GET", "OPTIONS"]),
            methods=["GET", "OPTIONS"],
        ),
        *create_protected_resource_routes(
            resource_url=auth.resource_server_url,
            authorization_servers=[auth.issuer_url],
            scopes_supported=scopes,
            resource_name=app_name,
        ),
    ]


def server_routes(
    settings: Settings, provider: GitHubOAuthProvider, cookies: BrowserCookies, auth: AuthSettings, scopes: list[str]
) -> list[BaseRoute]:
    consent = ConsentPage(settings, provider, cookies)
    account = AccountPage(settings, provider, cookies)
    picker = RepositoryPicker(settings, provider, cookies)
    callback = GitHubCallback(settings, provider, cookies, account, picker)
    return [
        *metadata_routes(auth, scopes, settings.app_name),
        Route("/", landing(settings), methods=["GET"]),
        Route("/favicon.ico", pages.favicon, methods=["GET"]),
        Route("/icons/{name}", identity.icon, methods=["GET"]),
        Route("/authorize", Authorize(settings, provider).handle, methods=["GET", "POST"]),
        Route("/consent", consent.show, methods=["GET"]),
        Route("/consent", consent.submit, methods=["POST"]),
        Route("/consent/repositories", picker.submit, methods=["POST"]),
        Route("/github/callback", callback.handle, methods=["GET"]),
        Route("/account", account.show, methods=["GET"]),
        Route("/account", account.submit, methods=["POST"]),
        Route("/account/sign-in", account.sign_in, methods=["GET"]),
        Route(
            "/revoke", cors_middleware(Revocation(provider).handle, ["POST", "OPTIONS"]), methods=["POST", "OPTIONS"]
        ),
        Route("/healthz", healthz(provider), methods=["GET"]),
    ]
