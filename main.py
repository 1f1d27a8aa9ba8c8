"""Run the server: `uv run main.py --transport streamable-http`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys

import uvicorn

from ghmcp.config import ConfigError, load_settings
from ghmcp.web import demo
from ghmcp.web.access_log import EscapingFormatter
from ghmcp.web.build import build_app, check_startup


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="MCP server with GitHub sign-in")
    parser.add_argument(
        "--transport", choices=["streamable-http", "sse"], help="MCP transport (default streamable-http)"
    )
    parser.add_argument("--host", help="bind address (MCP_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (MCP_PORT, default 8000)")
    parser.add_argument("--demo", action="store_true", help="run with a built-in GitHub stand-in, nothing to set up")
    parser.add_argument(
        "--stateless",
        action="store_true",
        default=None,
        help="Streamable HTTP without sessions, for several replicas (MCP_STATELESS_HTTP)",
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning"],
        default="info",
        help="log level (default info; debug adds one access line per MCP request)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    try:
        overrides = demo.settings_overrides() if args.demo else {}
        settings = load_settings(
            transport=args.transport, host=args.host, port=args.port, stateless_http=args.stateless, **overrides
        )
        asyncio.run(check_startup(settings))
        app = build_app(settings)
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    path = "/mcp" if settings.transport == "streamable-http" else "/sse"
    logging.getLogger("mcp_server").info("MCP endpoint: %s%s", settings.server_url, path)
    # Everything built so far (modules, the SDK, templates) lives as long as the process: frozen, it
    # is left out of every later garbage collection, which would otherwise walk it each time.
    gc.freeze()
    # log_config=None: uvicorn logs through the root handler above, escaped like every other line.
    # access_log=False: uvicorn would log query strings, which carry OAuth codes and states.
    # proxy_headers=False: only MCP_TRUSTED_PROXIES decides whose X-Forwarded-For is believed (ratelimit.py).
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_config=None,
        log_level=args.log_level,
        proxy_headers=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
