"""GitHub's HTTP conventions: error bodies, token-endpoint encodings, pagination, ETags."""

from __future__ import annotations

import base64
import binascii
import html
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ghmcp.standin.model import (
    ACCESS_TOKEN_TTL,
    REFRESH_TOKEN_TTL,
    REST_DOCS_URI,
    Issue,
    TokenPair,
    with_query,
)


def base_url(request: Request) -> str:
    """Where this GitHub is served, mount prefix included (``request.base_url`` drops a Mount's prefix)."""
    return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}"


def page(status: int, title: str, detail: str) -> HTMLResponse:
    t, d = html.escape(title), html.escape(detail)
    body = f"<!DOCTYPE html><html><head><title>{t}</title></head><body><h1>{t}</h1><p>{d}</p></body></html>"
    return HTMLResponse(body, status_code=status)


def rest_error(status: int, message: str, documentation_url: str = REST_DOCS_URI) -> Response:
    body = {
        "message": message,
        "documentation_url": documentation_url,
        "status": str(status),
    }
    return Response(
        json.dumps(body),
        status_code=status,
        media_type="application/json; charset=utf-8",
    )


def basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


async def read_params(request: Request) -> dict[str, str]:
    """Query string plus a form or JSON body: the token endpoint takes all three."""
    params = dict(request.query_params)
    raw = await request.body()
    if not raw:
        return params
    if "json" in request.headers.get("content-type", "").lower():
        try:
            data: Any = json.loads(raw)
        except ValueError:
            return params
        if isinstance(data, dict):
            params.update({str(k): str(v) for k, v in data.items() if v is not None})
        return params
    params.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    return params


def error_body(status: int, message: str, documentation_url: str) -> dict[str, str]:
    return {
        "message": message,
        "documentation_url": documentation_url,
        "status": str(status),
    }


def etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(candidate.strip().removeprefix("W/") == bare for candidate in header.split(","))


def by_state(request: Request, issues: Sequence[Issue]) -> list[Issue]:
    """Newest first, filtered by ``state`` (``open`` by default, ``closed`` or ``all``)."""
    state = request.query_params.get("state", "open")
    return [i for i in sorted(issues, key=lambda i: -i.number) if state == "all" or i.state == state]


def paged(request: Request, items: Sequence[Any]) -> tuple[list[Any], dict[str, str] | None]:
    """One page of ``items`` (``per_page``, ``page``) and GitHub's ``Link`` header for the others."""
    per_page = int_param(request, "per_page", 30, 1, 100)
    page = int_param(request, "page", 1, 1, 10**6)
    last = max((len(items) + per_page - 1) // per_page, 1)
    links = []
    page_url = str(request.url.remove_query_params("page"))
    if page < last:
        links.append(f'<{with_query(page_url, {"page": str(page + 1)})}>; rel="next"')
        links.append(f'<{with_query(page_url, {"page": str(last)})}>; rel="last"')
    if page > 1:
        links.append(f'<{with_query(page_url, {"page": "1"})}>; rel="first"')
        prev = str(min(page - 1, last))
        links.append(f'<{with_query(page_url, {"page": prev})}>; rel="prev"')
    return list(items[(page - 1) * per_page : page * per_page]), {"link": ", ".join(links)} if links else None


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(request.query_params.get(name, default))
    except ValueError:
        return default
    return min(max(value, low), high)


def token_payload(pair: TokenPair) -> dict[str, str | int]:
    if pair.refresh_token is None:
        return {
            "access_token": pair.access_token,
            "token_type": "bearer",
            "scope": ",".join(pair.scopes),
        }
    return {
        "access_token": pair.access_token,
        "expires_in": ACCESS_TOKEN_TTL,
        "refresh_token": pair.refresh_token,
        "refresh_token_expires_in": REFRESH_TOKEN_TTL,
        "scope": "",
        "token_type": "bearer",
    }


def token_response(payload: Mapping[str, str | int], wants_json: bool) -> Response:
    """The token endpoint is always 200, form-encoded unless JSON is asked for."""
    if wants_json:
        return Response(json.dumps(payload), media_type="application/json; charset=utf-8")
    body = urlencode({k: str(v) for k, v in payload.items()})
    return Response(body, media_type="application/x-www-form-urlencoded; charset=utf-8")


def token_success(pair: TokenPair, wants_json: bool) -> Response:
    return token_response(token_payload(pair), wants_json)


def token_error(wants_json: bool, error: str, description: str, uri: str) -> Response:
    return token_response({"error": error, "error_description": description, "error_uri": uri}, wants_json)


async def not_found(request: Request, exc: Exception) -> Response:
    return rest_error(404, "Not Found")


async def missing_endpoint(request: Request, exc: Exception) -> Response:
    return not_served(request)


def not_served(request: Request) -> Response:
    """A path this stand-in has no route for. GitHub may well have it: answering GitHub's 404 would
    make a new tool say "not found, or no access". A 501 says what is missing and where to add it."""
    path = request.url.path.removeprefix(request.scope.get("root_path", ""))
    where = "ghmcp/standin/ (routes in oauth.py)"
    return rest_error(501, f"{request.method} {path} is not in the demo stand-in: add it in {where}")
