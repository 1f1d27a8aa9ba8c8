"""The machinery behind the template: what a forker rarely needs to touch.

Imports flow one way, top to bottom (no module imports one above it):

    web/        the Starlette application: composition (build.py), routes, consent and account pages,
                rate limits, demo mode
    (top level) github_provider.py (the SDK's provider) and tools/ (the forker's room)
    upstream/   GitHub: the REST client and its cache, the sign-in leg, GitHub tokens, admission
    auth/       the authorization server's rules: scopes, bearer gate, keys, registration, CIMD, records
    asgi/       small ASGI helpers: pages (templates), bounded bodies, the 503 answer, client origins
    storage/    the store: SQLite (embedded default) or Redis (replicas)
    standin/    a GitHub stand-in for --demo and the tests
    config.py, audit.py, sdk.py   settings, the audit log, the one adapter to the SDK's private parts
"""
