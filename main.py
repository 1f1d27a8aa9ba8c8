"""Run the server: `uv run main.py --transport streamable-http`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import NoReturn

from ghmcp.config import ConfigError
from ghmcp.config_loading import load_settings
from ghmcp.observe import logs
from ghmcp.web import demo
from ghmcp.web.access_log import EscapingFormatter
from ghmcp.web.build import build_app, check_startup
from ghmcp.web.serve import listen, serve


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, like every other startup error (argparse would print its usage first)."""
        self.exit(2, f"{self.prog}: {message} (see --help).\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    # --transport and --port are checked by load_settings, whose sentences name the flag.
    parser = _Parser(description="MCP server with GitHub sign-in")
    parser.add_argument("--transport", help="streamable-http (default) or sse (MCP_TRANSPORT)")
    parser.add_argument("--host", help="bind address (MCP_HOST, default 127.0.0.1)")
    parser.add_argument("--port", help="port (MCP_PORT, default 8000)")
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
    # SIGTERM (docker stop, systemd, kill) ends the server as Ctrl+C does. Python's default kills the process
    # on the spot (exit -15, no cleanup), and uvicorn re-raises the signal after its graceful shutdown.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    flags = {"transport": args.transport, "host": args.host, "port": args.port, "stateless_http": args.stateless}
    try:
        with contextlib.ExitStack() as cleanup:  # the demo's temporary directory
            overrides = cleanup.enter_context(demo.settings_overrides()) if args.demo else {}
            try:
                settings = load_settings(**flags, **overrides)
                if settings.log_format == "json":
                    logs.use_json_lines()  # every logger, uvicorn's and the access log included
                asyncio.run(check_startup(settings))
                app = build_app(settings)
                sockets = listen(settings, flags)
            except ConfigError as exc:
                print(f"Configuration error: {exc}", file=sys.stderr)
                return 2
            serve(app, settings, sockets, args.log_level)
    except KeyboardInterrupt:
        pass  # Ctrl+C or SIGTERM: uvicorn has shut down gracefully, or serving had not begun
    return 0


if __name__ == "__main__":
    sys.exit(main())
