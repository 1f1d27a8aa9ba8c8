"""GitHub, as this server talks to it.

api.py        `GitHubClient`: every request to GitHub (OAuth endpoints and REST), one shared client
sending.py    one request: a bounded total time, one retry for a safe read, outages as one exception
answers.py    reading the answers: REST bodies, token-endpoint answers, statuses as exceptions
cache.py      the per-user ETag cache and the rate-limit gate behind it
errors.py     what can go wrong, as exceptions tools turn into sentences
login.py      `GitHubLogin`: the GitHub leg of a sign-in, and the account page's sign-in
grants.py     `GitHubGrants`: each grant's GitHub token (refresh, revocation at GitHub)
admission.py  who may sign in: the allow-lists and organisation membership
boundary.py   `RepositoryGuard`: every request held to the grant's repositories (api.py asks it)
choosing.py   repositories to pick from after the sign-in, and typed names resolved to GitHub ids
"""
