"""Who this server says it is to MCP clients: its version, and its icons and its tools' icons.

The icons (2026-07-28 `icons`, one per `theme`) are files served by this server at
`/icons/<name>`, named by absolute URLs on MCP_SERVER_URL, not inlined as `data:` URIs: a
`tools/list` answer names them once per tool (a URL costs about 60 bytes, an inline PNG 2.7 kB);
a client fetches each file once and caches it, since it is public and the same for every user;
and the schema asks clients to trust icons from the server's own domain. Each theme comes as SVG
(sharp at any size) and as a 96 px PNG, the one format every client that shows icons must read.
The PNGs are the SVGs rendered by `chromium --headless --screenshot`. Branding: replace the four
files in ghmcp/templates/icons/, keeping their names.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.types import Icon, IconTheme
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ghmcp import sdk
from ghmcp.asgi.pages import TEMPLATES

VERSION = "0.1.0"  # pyproject.toml's version (a test keeps them equal): `serverInfo.version` on every answer

# name: (media type, sizes, theme). "light" is drawn for a light background, "dark" for a dark one.
ICONS: dict[str, tuple[str, str, IconTheme]] = {
    "light.svg": ("image/svg+xml", "any", "light"),
    "dark.svg": ("image/svg+xml", "any", "dark"),
    "light.png": ("image/png", "96x96", "light"),
    "dark.png": ("image/png", "96x96", "dark"),
}
FILES = {name: (TEMPLATES / "icons" / name).read_bytes() for name in ICONS}
ICON_HEADERS = {
    "Cache-Control": "public, max-age=86400",  # the same bytes for everyone: any cache may keep them a day
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",  # an SVG opened on its own runs nothing
}


def icons(server_url: str) -> list[Icon]:
    """The icon list for `serverInfo` and for every tool, as absolute URLs on this server."""
    return [
        Icon(src=f"{server_url}/icons/{name}", mime_type=media, sizes=[sizes], theme=theme)
        for name, (media, sizes, theme) in ICONS.items()
    ]


def give_tools_icons(mcp: MCPServer, server_icons: list[Icon]) -> None:
    """Every tool shows the server's icons, unless its module gave it its own (`icons=` on the decorator)."""
    for tool in sdk.tools(mcp):
        if tool.icons is None:
            tool.icons = server_icons


async def icon(request: Request) -> Response:
    """`/icons/<name>`: no sign-in, since clients fetch icons before or without one."""
    name = request.path_params["name"]
    if name not in FILES:
        return PlainTextResponse("No such icon.", status_code=404)
    return Response(FILES[name], media_type=ICONS[name][0], headers=ICON_HEADERS)
