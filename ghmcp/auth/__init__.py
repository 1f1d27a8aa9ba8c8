"""The authorization server's rules, independent of GitHub and of HTTP routing.

scopes.py        the scope vocabulary, `ScopeCheck` (the one scope decision, an SDK middleware),
                 the 401/403 challenges
bearer.py        `BearerGate`: the one ASGI layer in front of /mcp and /sse
records.py       the tokens and codes as the SDK types them, a pending sign-in
issuing.py       how a token pair is stored (hashes) and answered
clients.py       registered clients and metadata-document clients (cimd.py), registration rules
                 (registration.py)
keys.py          hashing, encryption at rest, signing, key derivation, the key ring
token_cache.py   the half-second memory of verified tokens
confirm.py       `ConfirmWrites`: a write tool runs only after the user confirms it (an SDK middleware)
repositories.py  per-grant repositories: the choice, MCP_ALLOWED_REPOSITORIES, matching and narrowing
"""
