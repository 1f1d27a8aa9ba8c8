"""Issues and their comments: list, create, read; pull requests appear among issues, as on GitHub."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ghmcp.standin.api import ApiBase
from ghmcp.standin.http import by_state, paged
from ghmcp.standin.model import Comment, Issue
from ghmcp.standin.shapes import comment_json, issue_json


class IssuesApi(ApiBase):
    async def _issues_endpoint(self, request: Request) -> Response:
        """List (pull requests included, as GitHub does) or create (422 without a title)."""
        found = self._repo_request(request, write=request.method == "POST")
        if isinstance(found, Response):
            return found
        tok, user, owner, repo = found
        if request.method == "POST":
            params: Any = json.loads(await request.body() or b"{}")
            title = params.get("title") if isinstance(params, dict) else None
            if not isinstance(title, str) or not title.strip():
                body = {
                    "message": "Validation Failed",
                    "errors": [{"resource": "Issue", "field": "title", "code": "missing_field"}],
                }
                return self._rest_json(request, tok, user, body, status=422)
            with self._lock:
                issue = Issue(
                    len(repo.issues) + 1, title, user.login, params.get("body"), labels=list(params.get("labels", []))
                )
                repo.issues.append(issue)
            data = issue_json(request, owner, repo, issue, self._user(issue.author))
            return self._rest_json(request, tok, user, data, status=201)
        labels = {x for x in request.query_params.get("labels", "").split(",") if x}
        chunk, extra = paged(request, [i for i in by_state(request, repo.issues) if labels <= set(i.labels)])
        items = [issue_json(request, owner, repo, i, self._user(i.author)) for i in chunk]
        return self._rest_json(request, tok, user, items, extra_headers=extra)

    async def _issue_endpoint(self, request: Request) -> Response:
        found = self._issue_request(request, pull=False)
        if isinstance(found, Response):
            return found
        tok, user, owner, repo, issue = found
        return self._rest_json(request, tok, user, issue_json(request, owner, repo, issue, self._user(issue.author)))

    async def _comments_endpoint(self, request: Request) -> Response:
        """List or add (422 without a body); comment ids are unique across the repository."""
        found = self._issue_request(request, pull=False, write=request.method == "POST")
        if isinstance(found, Response):
            return found
        tok, user, owner, repo, issue = found
        if request.method == "POST":
            params: Any = json.loads(await request.body() or b"{}")
            text = params.get("body") if isinstance(params, dict) else None
            if not isinstance(text, str) or not text:
                body = {
                    "message": "Validation Failed",
                    "errors": [{"resource": "IssueComment", "field": "body", "code": "missing_field"}],
                }
                return self._rest_json(request, tok, user, body, status=422)
            with self._lock:
                comment = Comment(1000 + sum(len(i.comments) for i in repo.issues), user.login, text)
                issue.comments.append(comment)
            data = comment_json(request, owner, repo, issue, comment, self._user(comment.author))
            return self._rest_json(request, tok, user, data, status=201)
        chunk, extra = paged(request, issue.comments)
        items = [comment_json(request, owner, repo, issue, c, self._user(c.author)) for c in chunk]
        return self._rest_json(request, tok, user, items, extra_headers=extra)
