"""The Starlette application: `build.build_app(settings)` is the whole server.

build.py       composition: settings in, one ASGI app out; `check_startup` before serving
serve.py       the listening sockets, uvicorn, a shutdown that lets answers finish
mcp_routes.py  /mcp and /sse straight to the bearer gate
routes.py      /, /favicon.ico, /authorize, /github/callback, /revoke, metadata, /healthz
identity.py    the server's version and icons (served at /icons/<name>), icons for every tool
consent.py     the consent page, its CSRF and browser binding
account.py     /account: the user's connected apps
account_repositories.py  /account: narrowing an app's repositories
repositories.py  /consent/repositories: the picker after GitHub when the user limits repositories
ratelimit.py   per-address rate limits and body bounds
access_log.py  the access line and the escaping log formatter
demo.py        --demo: the GitHub stand-in mounted on this server
container_check.py  the start-up warning for a SQLite store on a container's own disk
"""
