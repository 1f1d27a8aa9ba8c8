"""Keys (issue 7): a ring for rotation, a store that knows its key, a key file that cannot be
half-written or shared with other users, and purpose-bound derived keys."""

from __future__ import annotations

import hashlib
import multiprocessing
import stat
import subprocess
from pathlib import Path

import pytest

from ghmcp.auth.keys import Keyring, load_or_create_secret_key
from ghmcp.config import ConfigError
from tests.conftest import StartServer
from tests.fake_github import FakeGitHub
from tests.support import McpUser, ServerProcess
from tests.test_config import BASE, run_main

pytestmark = pytest.mark.anyio

OLD = "old-key-0123456789-0123456789-0123456789"
NEW = "new-key-9876543210-9876543210-9876543210"


def one_sentence_naming_the_key(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 2
    lines = str(result.stderr).strip().splitlines()
    assert len(lines) == 1 and "MCP_SECRET_KEY" in lines[0] and "Traceback" not in lines[0], lines


def test_ring_encrypts_with_the_first_key_and_reads_with_all() -> None:
    old = Keyring([OLD])
    sealed, signed = old.encrypt("gho_secret"), old.signer("cookie").dumps("payload")
    rotated = Keyring([NEW, OLD])
    assert rotated.decrypt(sealed) == "gho_secret"
    assert rotated.load_signed("cookie", signed, 60) == "payload"
    # What the rotated ring writes, the old key alone cannot read: the new key is in use.
    assert old.decrypt(rotated.encrypt("gho_other")) is None
    assert old.load_signed("cookie", rotated.signer("cookie").dumps("x"), 60) is None
    assert Keyring([NEW]).decrypt(sealed) is None


def test_purposes_have_their_own_keys_and_signatures_are_sha256() -> None:
    keyring = Keyring([NEW])
    secret = keyring.encrypt_client_secret("client-secret")
    assert keyring.decrypt_client_secret(secret) == "client-secret"
    assert keyring.decrypt(secret) is None  # the GitHub-token key cannot open a client secret
    assert keyring.decrypt_client_secret(keyring.encrypt("gho_x")) is None
    signer = keyring.signer("csrf").make_signer()
    assert signer.digest_method is hashlib.sha256
    assert keyring.load_signed("consent", keyring.signer("csrf").dumps("x"), 60) is None


def test_key_file_refused_when_empty_or_readable_by_others(tmp_path: Path) -> None:
    key_file = tmp_path / "secret_key"
    key_file.write_text("")
    key_file.chmod(0o600)
    with pytest.raises(ConfigError, match="MCP_SECRET_KEY"):
        load_or_create_secret_key(None, tmp_path)
    key_file.write_text("k" * 64)
    key_file.chmod(0o644)
    with pytest.raises(ConfigError, match="MCP_SECRET_KEY"):
        load_or_create_secret_key(None, tmp_path)
    key_file.chmod(0o600)
    assert load_or_create_secret_key(None, tmp_path) == ["k" * 64]


def _load_key(directory: str, results: multiprocessing.Queue[str]) -> None:
    results.put(load_or_create_secret_key(None, Path(directory))[0])


def test_processes_starting_together_agree_on_one_generated_key(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    for attempt in range(5):
        directory = tmp_path / f"data{attempt}"
        results: multiprocessing.Queue[str] = context.Queue()
        workers = [context.Process(target=_load_key, args=(str(directory), results)) for _ in range(6)]
        for worker in workers:
            worker.start()
        keys = {results.get(timeout=20) for _ in workers}
        for worker in workers:
            worker.join(timeout=20)
        assert len(keys) == 1
        (key,) = keys
        assert (directory / "secret_key").read_text() == key and len(key) >= 32
        assert stat.S_IMODE((directory / "secret_key").stat().st_mode) == 0o600
        assert [p.name for p in directory.iterdir()] == ["secret_key"]  # no temporary file left behind


def test_empty_key_file_stops_the_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "secret_key").write_text("")
    (data / "secret_key").chmod(0o600)
    one_sentence_naming_the_key(run_main(tmp_path, BASE))


async def test_a_key_that_cannot_read_the_store_stops_the_server_and_a_ring_rotates(
    github: FakeGitHub, start_server: StartServer, tmp_path: Path
) -> None:
    data = tmp_path / "shared"
    first = start_server(data, env={"MCP_SECRET_KEY": OLD})
    async with McpUser(first) as alice:
        assert not (await alice.call("get_user_profile")).is_error
        tokens = alice.storage.tokens
    first.stop()

    env = {k: v for k, v in ServerProcess(first.github_url, data, port=first.port).environment().items()}
    wrong = run_main(data, env | {"MCP_SECRET_KEY": NEW})
    one_sentence_naming_the_key(wrong)

    # new,old: the old sign-in still reaches GitHub (its token was encrypted with the old key).
    rotated = start_server(data, env={"MCP_SECRET_KEY": f"{NEW},{OLD}"}, port=first.port)
    async with McpUser(rotated) as again:
        again.storage.tokens = tokens
        again.storage.client_info = alice.storage.client_info
        result = await again.call("get_user_profile")
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["login"] == "alice"
    rotated.stop()
    # The store now records the new key: the new key alone starts.
    assert start_server(data, env={"MCP_SECRET_KEY": NEW}, port=first.port).process is not None
