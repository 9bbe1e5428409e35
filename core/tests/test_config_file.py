"""INFERENCE_CONFIG (a TOML file), INFERENCE_MODEL_FALLBACKS, INFERENCE_<NAME>_MODELS and the
base-URL forms: parsing, precedence, and errors that name the file/variable and the entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference_core.config_file import FILE_KEYS, load_config_file
from inference_core.errors import ConfigError
from inference_core.gateway.settings import GatewaySettings
from inference_core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inference.example.toml"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "inference.toml"
    path.write_text(text)
    return str(path)


def test_the_example_file_loads_and_means_what_it_says():
    s = Settings.from_env({"INFERENCE_CONFIG": str(EXAMPLE)}, env_file=None)
    assert s.chain == ["ollama", "vllm", "openai"]
    assert s.model_fallbacks == {
        "llama3.1:8b": ("vllm/meta-llama/Llama-3.1-8B-Instruct", "gpt-4o-mini")
    }
    assert s.policy.request_deadline == 120
    ollama = s.backend("ollama")
    assert ollama.aliases == {"fast": "llama3.2:1b"}
    assert ollama.option_int("num_ctx") == 8192
    assert s.backend("vllm").base_urls == ("http://gpu-a:8000", "http://gpu-b:8000")
    assert s.backend("openai").models == ("gpt-4o-mini", "gpt-4o")
    gw = GatewaySettings.from_env(env={"INFERENCE_CONFIG": str(EXAMPLE)})
    assert gw.port == 8080


def test_every_file_key_is_a_documented_variable():
    documented = (ROOT / ".env.example").read_text()
    variables = load_config_file(str(EXAMPLE))
    for variable in [*FILE_KEYS.values(), *variables]:
        assert f"{variable}=" in documented, f"{variable} is not in .env.example"


def test_the_environment_wins_over_the_file(tmp_path):
    path = write(tmp_path, 'provider = "vllm"\n[backends.vllm]\nmodel = "from-file"\n')
    s = Settings.from_env(
        {"INFERENCE_CONFIG": path, "INFERENCE_VLLM_MODEL": "from-env"}, env_file=None
    )
    assert s.provider == "vllm"
    assert s.backend("vllm").model == "from-env"
    gw = GatewaySettings.from_env(
        env={"INFERENCE_CONFIG": write(tmp_path, "[gateway]\nport = 9001\nmax_n = 3\n"),
             "INFERENCE_GATEWAY_PORT": "9002"}
    )  # fmt: skip
    assert (gw.port, gw.max_n) == (9002, 3)


def test_gateway_settings_read_the_file_named_by_the_process_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERENCE_CONFIG", write(tmp_path, "[gateway]\nmax_n = 5\nport = 9100\n"))
    monkeypatch.setenv("INFERENCE_GATEWAY_PORT", "9200")
    gw = GatewaySettings.from_env(env_file=None)
    assert (gw.max_n, gw.port) == (5, 9200)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("provider = \n", ["not valid TOML"]),
        ("colour = 'blue'\n", ["'colour'", "unknown key", "provider"]),
        ("provider = { a = 1 }\n", ["'provider'", "dict"]),
        ("[backends]\nollama = 3\n", ["backends.ollama", "must be a table"]),
        ("[backends.Bad-Name]\nmodel = 'x'\n", ["backends.Bad-Name", "backend name"]),
        ("[backends.ollama]\naliases = 3\n", ["backends.ollama.aliases", "alias"]),
        ("model_fallbacks = 3\n", ["'model_fallbacks'", "target"]),
        ("[gateway]\nport = 'x'\n", ["INFERENCE_GATEWAY_PORT"]),
    ],
)
def test_a_bad_file_names_the_file_the_key_and_what_it_accepts(tmp_path, text, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_both(path)
    for word in words:
        assert word in info.value.message
    if "INFERENCE_GATEWAY_PORT" not in words:
        assert path in info.value.message
        assert "accepted" in info.value.message


def load_both(path: str) -> None:
    Settings.from_env({"INFERENCE_CONFIG": path}, env_file=None)
    GatewaySettings.from_env(env={"INFERENCE_CONFIG": path})


def test_a_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"INFERENCE_CONFIG=.*no such file"):
        Settings.from_env({"INFERENCE_CONFIG": str(tmp_path / "nope.toml")}, env_file=None)


# ------------------------------------------------------------------------ model fallbacks


def test_model_fallbacks_parse():
    s = Settings.from_env(
        {
            "INFERENCE_PROVIDER": "ollama",
            "ENABLE_FALLBACK": "true",
            "FALLBACK_CHAIN": "vllm",
            "INFERENCE_MODEL_FALLBACKS": " a=b , vllm/c ; meta-llama/L=ollama/x ",
        },
        env_file=None,
    )
    assert s.model_fallbacks == {"a": ("b", "vllm/c"), "meta-llama/L": ("ollama/x",)}


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("a", ["'a' is not model=target"]),
        ("a=", ["'a=' is not model=target"]),
        ("=b", ["'=b' is not model=target"]),
        ("a=b;a=c", ["'a' is given twice"]),
        ("a=a", ["falls back to itself"]),
        ("a=openai/gpt-4o", ["backend 'openai' is not configured", "ollama"]),
        ("a=vllm/", ["names no model"]),
        ("a=b c", ["contains a space"]),
    ],
)
def test_bad_model_fallbacks_name_the_variable_and_the_entry(value, words):
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {"INFERENCE_PROVIDER": "ollama", "INFERENCE_MODEL_FALLBACKS": value}, env_file=None
        )
    assert info.value.variable == "INFERENCE_MODEL_FALLBACKS"
    for word in words:
        assert word in info.value.message


@pytest.mark.parametrize(
    ("value", "models"), [("*", ("*",)), ("a, b ,a", ("a", "b")), ("org/m:1", ("org/m:1",))]
)
def test_declared_models(value, models):
    s = Settings.from_env(
        {"INFERENCE_VLLM_MODELS": value, "INFERENCE_PROVIDER": "vllm"}, env_file=None
    )
    assert s.backend("vllm").models == models


@pytest.mark.parametrize("value", ["*,a", " , "])
def test_bad_declared_models(value):
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {"INFERENCE_VLLM_MODELS": value, "INFERENCE_PROVIDER": "vllm"}, env_file=None
        )
    assert info.value.variable == "INFERENCE_VLLM_MODELS"


# ------------------------------------------------------------------------------ base URLs


@pytest.mark.parametrize(
    ("env", "backend", "url"),
    [
        ({"INFERENCE_PROVIDER": "vllm", "INFERENCE_VLLM_BASE_URL": "http://h:8000/v1"}, "vllm",
         "http://h:8000"),
        ({"INFERENCE_PROVIDER": "vllm", "INFERENCE_VLLM_BASE_URL": "http://h:8000/v1/"}, "vllm",
         "http://h:8000"),
        ({"INFERENCE_PROVIDER": "llamacpp", "LOCAL_INFERENCE_URL": "http://h:8080/v1"}, "llamacpp",
         "http://h:8080"),
        ({"INFERENCE_PROVIDER": "textgen", "INFERENCE_TEXTGEN_BASE_URL": "http://h:5000"},
         "textgen", "http://h:5000"),
        ({"INFERENCE_PROVIDER": "ollama", "INFERENCE_OLLAMA_BASE_URL": "http://h:11434/v1"},
         "ollama", "http://h:11434"),
        ({"INFERENCE_PROVIDER": "openai", "OPENAI_API_BASE": "http://h:8000"}, "openai",
         "http://h:8000/v1"),
        ({"INFERENCE_PROVIDER": "openai", "OPENAI_API_BASE": "https://api.x.test/v1"}, "openai",
         "https://api.x.test/v1"),
        ({"INFERENCE_PROVIDER": "openai", "OPENAI_API_BASE": "https://h/openai/deploy"}, "openai",
         "https://h/openai/deploy"),
    ],
)  # fmt: skip
def test_both_ways_of_writing_an_openai_compatible_url_work(env, backend, url):
    assert Settings.from_env(env, env_file=None).backend(backend).base_url == url


def test_url_for_never_doubles_v1_for_third_party_plugins():
    from inference_core.http.openai_compat import url_for
    from inference_core.models import BackendConfig

    cfg = BackendConfig(name="thirdparty", base_urls=("http://h:1/v1",))
    assert url_for(cfg, "/v1/chat/completions") == "http://h:1/v1/chat/completions"
    assert url_for(cfg, "/models") == "http://h:1/v1/models"
