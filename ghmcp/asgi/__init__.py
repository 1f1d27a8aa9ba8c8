"""Small ASGI helpers shared by the rules (auth/) and the application (web/).

pages.py        render a template with CSP and anti-framing headers
bodies.py       read a request body once, bounded, and replay it
unavailable.py  the one 503 answer while the store is unreachable
origin.py       the client address the per-address caps count (IPv4, IPv6 /64, IPv6 /48)
"""
