"""Issue 18: traces to an OTLP receiver, metrics scraped by a real Prometheus, audit lines linked to traces."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.observe_support import OtlpReceiver, running_prometheus
from tests.support import (
    ManualClient,
    ServerProcess,
    bearer_client,
    free_port,
    refresh_grant,
    revoke_request,
    sign_in_tokens,
    tool_call_request,
)

pytestmark = pytest.mark.anyio

SECRET_ARGUMENT = "zq-argument-value-5c1e"  # a repo name: a tool argument, so never in a span or a label


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    otlp = OtlpReceiver()
    try:
        yield otlp
    finally:
        otlp.stop()


def traced_server(start_server: StartServer, receiver: OtlpReceiver, tmp_path: Path) -> ServerProcess:
    return start_server(
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_SERVICE_NAME": "mcp-test",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "MCP_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
            "MCP_LOG_FORMAT": "json",
        }
    )


async def test_a_tool_call_is_one_trace_request_then_mcp_message_then_github_call(
    start_server: StartServer, receiver: OtlpReceiver, github: FakeGitHub, tmp_path: Path
) -> None:
    server = traced_server(start_server, receiver, tmp_path)
    signed_in = await sign_in_tokens(server)
    async with bearer_client(server, signed_in.access) as client:
        result = await client.call_tool("get_repository", {"owner": "alice", "repo": SECRET_ARGUMENT})
    assert result.is_error  # no such repository: GitHub answered 404

    tool_span = receiver.wait_for("tools/call get_repository")
    github_span = receiver.wait_for("GitHub GET /repos/{owner}/{repo}")
    request_span = receiver.wait_for("POST /mcp", match=lambda span: span["span_id"] == tool_span["parent"])
    assert request_span["name"] == "POST /mcp"
    assert request_span["attributes"]["http.route"] == "/mcp"
    assert request_span["attributes"]["http.response.status_code"] == 200
    assert github_span["parent"] == tool_span["span_id"]
    assert github_span["trace_id"] == tool_span["trace_id"] == request_span["trace_id"]
    assert github_span["attributes"]["http.response.status_code"] == 404
    assert github_span["attributes"]["github.not_modified"] is False
    assert github_span["attributes"]["url.template"] == "/repos/{owner}/{repo}"
    assert isinstance(github_span["attributes"]["github.ratelimit.remaining"], int)

    names = {span["name"] for span in receiver.spans()}
    assert {"POST /register", "GET /authorize", "POST /consent", "GET /github/callback", "POST /token"} <= names
    store_spans = [s for s in receiver.spans() if s["name"].startswith("store ")]
    assert {"store redeem_code", "store get_token"} <= {s["name"] for s in store_spans}
    assert all(s["attributes"]["db.system.name"] == "sqlite" for s in store_spans)

    # Nothing secret anywhere in what was exported: tokens, code, GitHub tokens, client secret, argument.
    raw = receiver.raw()
    secrets = [signed_in.access, signed_in.refresh, signed_in.code, SECRET_ARGUMENT, "fake-client-secret"]
    secrets += github.live_tokens_for("alice")
    assert [secret for secret in secrets if secret.encode() in raw] == []

    # The audit line of this tool call carries the trace id of its spans.
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    called = [line for line in lines if line["event"] == "tool_called"]
    assert [line["trace_id"] for line in called] == [tool_span["trace_id"]]
    sign_in = next(line for line in lines if line["event"] == "sign_in")
    callback = next(s for s in receiver.spans() if s["name"] == "GET /github/callback")
    assert sign_in["trace_id"] == callback["trace_id"]

    # JSON log lines, the access log's included, with the trace id inside a traced request.
    server.stop()
    logged = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    token_line = next(line for line in logged if line["message"].startswith("POST /token "))
    assert len(token_line["trace_id"]) == 32
    assert any(line["logger"].startswith("uvicorn") for line in logged)


async def test_prometheus_scrapes_every_counter(start_server: StartServer, github: FakeGitHub, tmp_path: Path) -> None:
    metrics_port = free_port()
    server = start_server(env={"MCP_METRICS_PORT": str(metrics_port)})
    with running_prometheus(tmp_path / "prometheus", f"127.0.0.1:{metrics_port}") as prometheus:
        client = await ManualClient.register(server)
        first = await sign_in_tokens(server, client=client)
        second = await sign_in_tokens(server, client=client, scope="user")
        async with bearer_client(server, first.access) as mcp:
            assert not (await mcp.call_tool("get_user_profile", {})).is_error
            assert not (await mcp.call_tool("get_user_profile", {})).is_error
        refused = await tool_call_request(server, second.access, "get_repository", {"owner": "a", "repo": "b"})
        assert refused.status_code == 403  # the bearer gate's fast path: the SDK never sees the call
        rotated = await refresh_grant(client, first.refresh)
        assert (await refresh_grant(client, rotated.json()["refresh_token"])).status_code == 200
        # Two generations on, the first refresh token is a reuse (not a lost answer's retry): the family ends.
        assert (await refresh_grant(client, first.refresh)).status_code == 400
        assert (await revoke_request(server, client.client_id, second.access)).status_code == 200
        assert (await revoke_request(server, client.client_id, "no-such-token")).status_code == 200
        async with httpx2.AsyncClient() as http:  # a callback no sign-in started
            assert (await http.get(f"{server.url}/github/callback?state=forged&code=x")).status_code == 400

        expected = {
            'mcp_sign_ins_total{outcome="ok"}': 2,
            'mcp_consents_total{outcome="given"}': 2,
            'mcp_refreshes_total{outcome="ok"}': 2,
            'mcp_refreshes_total{outcome="reuse"}': 1,
            "mcp_refresh_reuse_detections_total": 1,
            'mcp_revocations_total{outcome="revoked"}': 1,
            'mcp_revocations_total{outcome="unknown_token"}': 1,
            'mcp_sign_ins_total{outcome="invalid_state"}': 1,
            'mcp_tool_calls_total{tool="get_user_profile",outcome="ok"}': 2,
            'mcp_scope_refusals_total{reason="insufficient_scope"}': 1,
            'mcp_http_requests_total{route="/mcp",method="POST",status="403"}': 1,
            'mcp_tool_call_seconds_count{tool="get_user_profile"}': 2,
            'sum(mcp_http_requests_total{route="/token",status="200"})': 4,
            'sum(mcp_http_requests_total{route="/token",status="400"})': 1,
            'mcp_github_requests_total{route="/login/oauth/access_token",method="POST",status="200"}': 2,
        }
        for query, value in expected.items():
            prometheus.wait_for(query, value)
        assert (prometheus.query('sum(mcp_github_requests_total{route="/user"})') or 0) >= 2
        assert (prometheus.query("mcp_github_rate_limit_remaining_min") or 0) > 0
        assert (prometheus.query("mcp_token_cache_hits_total") or 0) >= 1
        assert (prometheus.query("sum(mcp_store_operation_seconds_count)") or 0) > 0
