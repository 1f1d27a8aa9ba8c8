"""Server-rendered pages (landing, consent, account, errors) from one shared template, and the favicon.

Jinja2 autoescapes every value, so a client-supplied name can never become markup. Every
page forbids framing and scripts; the one inline style is allowed by a per-response nonce.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

# Set once by `demo.py` when the server runs with --demo: every page then carries the demo banner.
DEMO = False

TEMPLATES = Path(__file__).parent.parent / "templates"
# base.html's shield with a check mark, 16 and 32 px, in its accent colour: branding, beside the pages.
FAVICON = (TEMPLATES / "favicon.ico").read_bytes()

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


def render(
    template: str,
    *,
    app_name: str,
    status_code: int = 200,
    form_targets: tuple[str, ...] = (),
    **context: Any,
) -> HTMLResponse:
    """`form_targets`: origins a form on the page may lead to (CSP form-action also covers its redirects)."""
    nonce = secrets.token_urlsafe(16)
    html = _env.get_template(template).render(app_name=app_name, nonce=nonce, demo=DEMO, **context)
    form_action = " ".join(("'self'", *form_targets))
    csp = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self'; form-action {form_action}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    headers = {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",  # clickjacking defence for browsers without frame-ancestors
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
    return HTMLResponse(html, status_code=status_code, headers=headers)


def message(
    app_name: str, title: str, text: str, status_code: int, link: str | None = None, link_text: str = ""
) -> HTMLResponse:
    return render(
        "message.html",
        app_name=app_name,
        status_code=status_code,
        title=title,
        message=text,
        link=link,
        link_text=link_text,
    )


async def favicon(request: Request) -> Response:
    """Served at `/favicon.ico`, the path browsers and MCP clients ask for without reading any page."""
    return Response(FAVICON, media_type="image/x-icon", headers={"Cache-Control": "public, max-age=86400"})
