"""The `inference` command, driven through typer's CliRunner with in-memory backends."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

import inference_core
from inference_core import cli, plugins
from inference_core.errors import BackendUnavailable
from inference_core.models import (
    ChatChunk,
    ChatResponse,
    Embedding,
    EmbeddingResponse,
    Health,
    ModelInfo,
)

SECRET = "sk-cli-SECRET-5555"


class Echo:
    """Echoes the last message; streams it word by word."""

    def __init__(self, name: str = "echo") -> None:
        self.name = name
        self.streamed: list[str] = []

    @inference_core.hookimpl
    async def chat(self, request, config):
        text = f"[{self.name}] {request.messages[-1].content}"
        if request.max_tokens:
            text = text[: request.max_tokens]
        if request.messages[0].role == "system":
            text = f"({request.messages[0].content}) {text}"
        if not request.stream:
            return ChatResponse(
                id="1",
                created=int(time.time()),
                model=config.model_for(request.model),
                choices=[{"message": {"role": "assistant", "content": text}}],
            )
        words = text.split(" ")

        async def gen():
            for i, word in enumerate(words):
                self.streamed.append(word)
                yield ChatChunk(
                    id="1",
                    created=0,
                    model="m",
                    choices=[{"delta": {"content": word + (" " if i < len(words) - 1 else "")}}],
                )

        return gen()

    @inference_core.hookimpl
    async def embed(self, request, config):
        return EmbeddingResponse(
            model="emb",
            data=[
                Embedding(index=i, embedding=[0.5, -0.25, 1.0, 2.0, 3.0, 4.0, 5.0])
                for i, _ in enumerate(request.inputs)
            ],
        )

    @inference_core.hookimpl
    async def health(self, config):
        return Health(state="ready", detail=f"{self.name} fine", models=["echo-1"])

    @inference_core.hookimpl
    async def list_models(self, config):
        return [ModelInfo(id=f"{self.name}-model")]


class Down:
    @inference_core.hookimpl
    async def chat(self, request, config):
        raise BackendUnavailable("connection refused", backend=config.name)

    @inference_core.hookimpl
    async def embed(self, request, config):
        raise BackendUnavailable("connection refused", backend=config.name)

    @inference_core.hookimpl
    async def health(self, config):
        return Health(state="down", detail="refused")


BASE_ENV = {
    "INFERENCE_MAX_RETRIES": "0",
    "INFERENCE_RETRY_BACKOFF": "0",
    "HEALTH_CHECK_TIMEOUT": "2",
}


def run(args, *, env=None, extra=None):
    app = cli.build_app(env={**BASE_ENV, **(env or {})}, extra_plugins=extra)
    return CliRunner().invoke(app, args)


@pytest.fixture(autouse=True)
def no_installed_plugins(monkeypatch):
    monkeypatch.setattr(plugins, "installed_backends", lambda: {})


def test_chat_streams_tokens_in_order():
    echo = Echo()
    result = run(
        ["chat", "hello big world"], env={"INFERENCE_PROVIDER": "echo"}, extra={"echo": echo}
    )
    assert result.exit_code == 0, result.output
    assert "[echo] hello big world\n" in result.stdout
    assert echo.streamed == ["[echo]", "hello", "big", "world"]
    assert "served by echo (m)" in result.stderr  # the model the backend said it served


def test_chat_options_no_stream_system_max_tokens():
    result = run(
        [
            "chat",
            "hi",
            "--no-stream",
            "--system",
            "be brief",
            "--max-tokens",
            "9",
            "-m",
            "echo-model",
        ],
        env={"INFERENCE_PROVIDER": "echo"},
        extra={"echo": Echo()},
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "(be brief) [echo] hi\n"


def test_chat_falls_back_and_says_who_served():
    result = run(
        ["chat", "q"],
        env={"INFERENCE_PROVIDER": "down", "ENABLE_FALLBACK": "true", "FALLBACK_CHAIN": "echo"},
        extra={"down": Down(), "echo": Echo()},
    )
    assert result.exit_code == 0, result.output
    assert "[echo] q" in result.stdout
    assert "served by echo" in result.stderr
    assert "1 fallback" in result.stderr


def test_all_backends_failed_exit_3_lists_attempts():
    result = run(
        ["chat", "q", "--no-stream"],
        env={"INFERENCE_PROVIDER": "down", "ENABLE_FALLBACK": "true", "FALLBACK_CHAIN": "down2"},
        extra={"down": Down(), "down2": Down()},
    )
    assert result.exit_code == cli.EXIT_NO_BACKEND
    assert "No backend could serve" in result.stderr
    assert "1. down: unavailable" in result.stderr
    assert "2. down2: unavailable" in result.stderr
    assert "Traceback" not in result.output


def test_config_error_exit_2_names_the_variable():
    result = run(["chat", "q"], env={"ENABLE_FALLBACK": "perhaps"})
    assert result.exit_code == cli.EXIT_CONFIG
    assert "ENABLE_FALLBACK" in result.stderr
    assert "true/false/1/0/yes/no" in result.stderr
    assert "Traceback" not in result.output


def test_unknown_backend_exit_2_lists_installed():
    result = run(["health"], env={"INFERENCE_PROVIDER": "nosuch"}, extra={"echo": Echo()})
    assert result.exit_code == cli.EXIT_CONFIG
    assert "nosuch" in result.stderr
    assert "echo" in result.stderr


def test_plugin_load_failure_exit_4(monkeypatch):
    class Sync:
        @inference_core.hookimpl
        def health(self, config):
            return None

    result = run(["health"], env={"INFERENCE_PROVIDER": "bad"}, extra={"bad": Sync()})
    assert result.exit_code == cli.EXIT_PLUGIN
    assert "async def" in result.stderr
    assert "Traceback" not in result.output


def test_embed_prints_dims_and_first_values():
    result = run(["embed", "some text"], env={"INFERENCE_PROVIDER": "echo"}, extra={"echo": Echo()})
    assert result.exit_code == 0, result.output
    assert "dims: 7" in result.stdout
    assert "[0.5, -0.25, 1, 2, 3, ...]" in result.stdout
    result = run(
        ["embed", "t", "--json"], env={"INFERENCE_PROVIDER": "echo"}, extra={"echo": Echo()}
    )
    data = json.loads(result.stdout)
    assert data["data"][0]["embedding"][:2] == [0.5, -0.25]


def test_embed_failure_exit_3():
    result = run(["embed", "x"], env={"INFERENCE_PROVIDER": "down"}, extra={"down": Down()})
    assert result.exit_code == cli.EXIT_NO_BACKEND
    assert "down: unavailable" in result.stderr


def test_health_table_and_exit_codes():
    env = {"INFERENCE_PROVIDER": "echo", "ENABLE_FALLBACK": "1", "FALLBACK_CHAIN": "down"}
    result = run(["health"], env=env, extra={"echo": Echo(), "down": Down()})
    assert result.exit_code == 0, result.output
    assert "echo (primary)" in result.stdout
    assert "down (fallback)" in result.stdout
    assert "echo fine" in result.stdout
    assert "refused" in result.stdout
    result = run(["health", "--json"], env=env, extra={"echo": Echo(), "down": Down()})
    data = json.loads(result.stdout)
    assert data["echo"]["state"] == "ready"
    assert data["down"]["state"] == "down"
    result = run(["health"], env={"INFERENCE_PROVIDER": "down"}, extra={"down": Down()})
    assert result.exit_code == cli.EXIT_NO_BACKEND


def test_models_lists_union():
    env = {"INFERENCE_PROVIDER": "a", "ENABLE_FALLBACK": "1", "FALLBACK_CHAIN": "b"}
    result = run(["models", "--json"], env=env, extra={"a": Echo("a"), "b": Echo("b")})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {(m["id"], m["backend"]) for m in data} == {("a-model", "a"), ("b-model", "b")}
    result = run(["models"], env=env, extra={"a": Echo("a"), "b": Echo("b")})
    assert "a-model" in result.stdout
    assert "b-model" in result.stdout


def test_config_masks_secrets():
    env = {
        "INFERENCE_PROVIDER": "openai",
        "OPENAI_API_KEY": SECRET,
        "INFERENCE_GATEWAY_API_KEYS": SECRET + "g",
    }
    result = run(["config", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    data = json.loads(result.stdout)
    assert data["backends"]["openai"]["api_key"] == "****"
    assert data["chain"] == ["openai"]
    assert data["sources"]["openai"]["api_key"] == "OPENAI_API_KEY"
    result = run(["config"], env=env)
    assert result.exit_code == 0
    assert SECRET not in result.output
    assert "****" in result.output


def test_config_bad_value_exit_2():
    result = run(["config"], env={"HEALTH_CHECK_TIMEOUT": "-3"})
    assert result.exit_code == cli.EXIT_CONFIG
    assert "HEALTH_CHECK_TIMEOUT" in result.stderr


def test_plugins_with_none_installed_gives_a_hint():
    result = run(["plugins"])
    assert result.exit_code == 0
    assert "No backend plugin is installed" in result.stdout
    assert "pip install inference-vllm" in result.stdout


def test_plugins_lists_installed_with_errors(monkeypatch):
    from importlib.metadata import EntryPoint

    eps = {
        "ghost": EntryPoint("ghost", "no_such_module_qq:plugin", plugins.ENTRY_POINT_GROUP),
    }
    monkeypatch.setattr(plugins, "installed_backends", lambda: eps)
    result = run(["plugins", "--json"], env={"INFERENCE_PROVIDER": "ghost"})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data[0]["name"] == "ghost"
    assert data[0]["in_chain"] is True
    assert "ModuleNotFoundError" in data[0]["error"]
    result = run(["plugins"], env={"INFERENCE_PROVIDER": "ghost"})
    assert "ghost" in result.stdout
    assert "ModuleNotFoundError" in result.stdout


def test_serve_without_gateway_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a)
    )
    result = run(["serve"])
    assert result.exit_code == cli.EXIT_CONFIG
    assert "pip install 'inference-switchboard[gateway]'" in result.stderr


def test_serve_calls_the_gateway(monkeypatch):
    import inference_core.gateway.server as server

    calls = []
    monkeypatch.setattr(server, "serve", lambda host, port, **kw: calls.append((host, port, kw)))
    result = run(
        ["serve", "--host", "0.0.0.0", "--port", "9999"],
        env={"INFERENCE_PROVIDER": "echo"},
        extra={"echo": Echo()},
    )
    assert result.exit_code == 0, result.output
    host, port, kw = calls[0]
    assert (host, port) == ("0.0.0.0", 9999)
    assert kw["router"] is not None


def test_no_args_shows_help():
    result = CliRunner().invoke(cli.build_app(env={}), [])
    assert "chat" in result.output
    assert "plugins" in result.output


def test_usage_error_exit_2():
    result = CliRunner().invoke(cli.build_app(env={}), ["chat"])
    assert result.exit_code == 2


def test_chat_writes_each_token_before_the_next_is_produced():
    """Tokens reach stdout as they come, not when the stream ends."""
    import sys

    seen_before: list[str] = []

    class Slow:
        @inference_core.hookimpl
        async def chat(self, request, config):
            async def gen():
                for word in ("alpha ", "beta ", "gamma"):
                    seen_before.append(sys.stdout.buffer.getvalue().decode())
                    yield ChatChunk(
                        id="1", created=0, model="m", choices=[{"delta": {"content": word}}]
                    )

            return gen()

        @inference_core.hookimpl
        async def health(self, config):
            return Health(state="ready")

    result = run(["chat", "x"], env={"INFERENCE_PROVIDER": "slow"}, extra={"slow": Slow()})
    assert result.exit_code == 0, result.output
    assert result.stdout == "alpha beta gamma\n"
    # when the third token was produced, the first two were already written out
    assert seen_before[2] == "alpha beta "


def test_env_file_option(tmp_path, monkeypatch):
    for var in ("INFERENCE_PROVIDER", "OPENAI_API_KEY", "INFERENCE_OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    env_file = tmp_path / "prod.env"
    env_file.write_text("INFERENCE_PROVIDER=openai\nOPENAI_API_KEY=sk-from-file-0000\n")
    app = cli.build_app()
    result = CliRunner().invoke(app, ["--env-file", str(env_file), "config", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["provider"] == "openai"
    assert data["backends"]["openai"]["api_key"] == "****"
    assert "sk-from-file" not in result.output
    result = CliRunner().invoke(app, ["--env-file", str(tmp_path / "missing.env"), "config"])
    assert result.exit_code == cli.EXIT_CONFIG
    assert "no such file" in result.stderr


def test_serve_loads_the_env_file_for_the_gateway(tmp_path, monkeypatch):
    import os

    import inference_core.gateway.server as server

    env_file = tmp_path / "gw.env"
    env_file.write_text("INFERENCE_GATEWAY_PORT=8123\nINFERENCE_TEST_CLI_MARKER=from-file\n")
    monkeypatch.delenv("INFERENCE_GATEWAY_PORT", raising=False)
    monkeypatch.delenv("INFERENCE_TEST_CLI_MARKER", raising=False)
    seen = {}

    def fake_serve(host, port, **kw):
        seen["port_var"] = os.environ.get("INFERENCE_GATEWAY_PORT")
        seen["router"] = kw.get("router")

    monkeypatch.setattr(server, "serve", fake_serve)
    try:
        result = CliRunner().invoke(cli.build_app(), ["--env-file", str(env_file), "serve"])
    finally:  # load_dotenv wrote into os.environ: leave nothing behind
        os.environ.pop("INFERENCE_GATEWAY_PORT", None)
        os.environ.pop("INFERENCE_TEST_CLI_MARKER", None)
    assert result.exit_code == 0, result.output
    assert seen == {"port_var": "8123", "router": None}
