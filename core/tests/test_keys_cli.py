"""``inference keys create|list|revoke`` with the TOML file store and the Redis store."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inference_core.cli import build_app
from inference_core.gateway.keys import FileKeyStore, KeyRecord, hash_secret


def run(env: dict[str, str], *args: str):
    return CliRunner().invoke(build_app(env=env), ["keys", *args])


@pytest.fixture
def file_env(tmp_path: Path) -> dict[str, str]:
    return {"INFERENCE_KEYS_FILE": str(tmp_path / "keys.toml")}


def test_create_prints_the_secret_last_and_stores_only_its_hash(file_env):
    out = run(file_env, "create", "alice", "--models", "gemma*, gpt-4o", "--rpm", "60",
              "--tpm", "1000", "--parallel", "2", "--budget", "5000", "--period", "week",
              "--expires", "2030-01-31", "--meta", "team=ml", "--meta", "owner=a@b.c")  # fmt: skip
    assert out.exit_code == 0, out.output
    secret = out.output.strip().splitlines()[-1]
    assert secret.startswith("sk-inf-")
    assert len(secret) > 40
    path = Path(file_env["INFERENCE_KEYS_FILE"])
    text = path.read_text()
    assert secret not in text
    assert path.stat().st_mode & 0o077 == 0  # 0600
    table = tomllib.loads(text)["keys"]["alice"]
    assert table["hash"] == hash_secret(secret)
    assert table["models"] == ["gemma*", "gpt-4o"]
    assert (table["rpm"], table["tpm"], table["parallel"], table["budget"]) == (60, 1000, 2, 5000)
    assert table["period"] == "week"
    assert table["metadata"] == {"team": "ml", "owner": "a@b.c"}
    listed = run(file_env, "list", "--json")
    row = json.loads(listed.output.strip().splitlines()[0])
    assert row["name"] == "alice"
    assert row["expires"] == "2030-01-31T23:59:59Z"
    assert "hash" not in row
    assert secret not in listed.output


def test_errors_exit_codes(file_env, tmp_path):
    assert run(file_env, "create", "bob").exit_code == 0
    dup = run(file_env, "create", "bob")
    assert dup.exit_code == 1
    assert "exists already" in dup.output
    assert run(file_env, "create", "bad name!").exit_code == 2
    assert run(file_env, "create", "x", "--period", "year").exit_code == 2
    assert run(file_env, "create", "y", "--expires", "soon").exit_code == 2
    assert run(file_env, "create", "z", "--meta", "novalue").exit_code == 2
    assert run(file_env, "create", "n", "--rpm", "-1").exit_code == 2
    gone = run(file_env, "revoke", "nobody")
    assert gone.exit_code == 1
    none = run({}, "list")
    assert none.exit_code == 2
    assert "INFERENCE_KEYS_FILE" in none.output
    broken = tmp_path / "broken.toml"
    broken.write_text("[keys.a\n")
    bad = run({"INFERENCE_KEYS_FILE": str(broken)}, "list")
    assert bad.exit_code == 2
    assert "INFERENCE_KEYS_FILE" in bad.output


def test_revoke_then_list(file_env):
    run(file_env, "create", "a")
    run(file_env, "create", "b")
    assert run(file_env, "revoke", "a").exit_code == 0
    lines = run(file_env, "list", "--json").output.strip().splitlines()
    names = [json.loads(line)["name"] for line in lines]
    assert names == ["b"]


async def test_hand_written_toml_is_read(tmp_path):
    path = tmp_path / "k.toml"
    digest = hash_secret("s3cret-value")
    path.write_text(
        f'[keys.ops]\nhash = "{digest}"\nmodels = ["*"]\nrpm = 5\nexpires = 2031-02-03\n'
    )
    records = await FileKeyStore(path).load()
    assert isinstance(records["ops"], KeyRecord)
    assert records["ops"].rpm == 5
    assert records["ops"].expires is not None


def test_redis_store(redis_url, redis_prefix):
    env = {"INFERENCE_REDIS_URL": redis_url, "INFERENCE_REDIS_PREFIX": redis_prefix}
    out = run(env, "create", "carol", "--tpm", "99")
    assert out.exit_code == 0, out.output
    secret = out.output.strip().splitlines()[-1]
    assert run(env, "create", "carol").exit_code == 1
    listed = run(env, "list", "--json").output
    assert json.loads(listed)["tpm"] == 99
    assert secret not in listed
    import redis

    raw = redis.Redis.from_url(redis_url)
    stored = raw.hgetall(redis_prefix + "keys")
    assert secret.encode() not in b"".join(stored.values())
    assert raw.hget(redis_prefix + "keyhash", hash_secret(secret)) == b"carol"
    assert run(env, "revoke", "carol").exit_code == 0
    assert run(env, "list", "--json").output.strip() == ""
    assert raw.hget(redis_prefix + "keyhash", hash_secret(secret)) is None
    raw.close()
