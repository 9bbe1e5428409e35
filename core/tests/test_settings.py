"""Settings.from_env: seed variables, namespaced overrides, defaults, and start-up errors."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from inference_core.errors import ConfigError
from inference_core.resilience.policy import RouterPolicy
from inference_core.settings import POLICY_VARIABLES, Settings, mask_url, policy_field_names

SECRET = "sk-live-VERYSECRET-1234"


def load(**env: str) -> Settings:
    return Settings.from_env(env, env_file=None)


def test_defaults_are_the_embedded_local_backend():
    s = load()
    assert s.provider == "llamacpp"
    assert s.chain == ["llamacpp"]
    assert s.enable_fallback is False
    assert s.health_check_interval == 60.0
    assert s.health_check_timeout == 5.0
    assert s.plugins_allow is None
    assert s.trace_plugins is False
    assert s.policy == RouterPolicy()
    assert s.backend("llamacpp").base_urls == ()  # embedded / managed


def test_seed_openai_variables():
    s = load(
        INFERENCE_PROVIDER="openai",
        OPENAI_API_KEY=SECRET,
        OPENAI_API_BASE="https://example.test/v1/",
        OPENAI_TIMEOUT="30",
    )
    cfg = s.backend("openai")
    assert cfg.base_urls == ("https://example.test/v1",)
    assert cfg.secret() == SECRET
    assert cfg.timeout == 30.0
    assert load(INFERENCE_PROVIDER="openai").backend("openai").base_url == (
        "https://api.openai.com/v1"
    )
    assert load(INFERENCE_PROVIDER="openai").backend("openai").timeout == 60.0


def test_openai_org_and_project_fall_back_to_the_openai_package_names():
    env = {"INFERENCE_PROVIDER": "openai", "OPENAI_ORG_ID": " org-1 ", "OPENAI_PROJECT_ID": "p1"}
    s = load(**env)
    cfg = s.backend("openai")
    assert cfg.option("organization") == "org-1"
    assert cfg.option("project") == "p1"
    assert s.sources("openai")["options.organization"] == "OPENAI_ORG_ID"
    assert s.sources("openai")["options.project"] == "OPENAI_PROJECT_ID"
    # the namespaced variables win
    s = load(**env, INFERENCE_OPENAI_ORGANIZATION="org-2", INFERENCE_OPENAI_PROJECT="p2")
    assert s.backend("openai").option("organization") == "org-2"
    assert s.backend("openai").option("project") == "p2"
    assert s.sources("openai")["options.organization"] == "INFERENCE_OPENAI_ORGANIZATION"
    # unset or blank: no option at all (no header is sent)
    blank = load(INFERENCE_PROVIDER="openai", OPENAI_ORG_ID=" ").backend("openai")
    assert "organization" not in blank.options
    assert "project" not in blank.options


def test_openai_org_and_project_fallbacks_are_for_openai_plugin_backends_only():
    s = load(
        INFERENCE_PROVIDER="vllm",
        ENABLE_FALLBACK="true",
        FALLBACK_CHAIN="azure",
        INFERENCE_AZURE_PLUGIN="openai",
        OPENAI_ORG_ID="org-1",
        OPENAI_PROJECT_ID="p1",
    )
    assert "organization" not in s.backend("vllm").options
    assert s.backend("azure").option("organization") == "org-1"  # an openai-plugin instance
    assert s.backend("azure").option("project") == "p1"


def test_seed_local_variables_go_to_the_provider_only():
    s = load(
        INFERENCE_PROVIDER="ollama",
        LOCAL_INFERENCE_URL="http://ollama:11434",
        LOCAL_MODEL_NAME="llama3.1:8b",
        LOCAL_INFERENCE_TIMEOUT="90",
        ENABLE_FALLBACK="true",
        FALLBACK_CHAIN="vllm,openai",
    )
    assert s.chain == ["ollama", "vllm", "openai"]
    ollama = s.backend("ollama")
    assert ollama.base_urls == ("http://ollama:11434",)
    assert ollama.model == "llama3.1:8b"
    assert ollama.timeout == 90.0
    vllm = s.backend("vllm")  # one URL cannot serve two backends
    assert vllm.base_urls == ("http://localhost:8000",)
    assert vllm.model is None
    assert vllm.timeout == 120.0


def test_with_openai_provider_local_variables_go_to_first_local_backend():
    s = load(
        INFERENCE_PROVIDER="openai",
        ENABLE_FALLBACK="1",
        FALLBACK_CHAIN="openai,ollama,vllm",
        LOCAL_INFERENCE_URL="http://ollama:11434",
        LOCAL_MODEL_NAME="llama3.1:8b",
    )
    assert s.chain == ["openai", "ollama", "vllm"]
    assert s.backend("ollama").base_url == "http://ollama:11434"
    assert s.backend("ollama").model == "llama3.1:8b"
    assert s.backend("vllm").base_url == "http://localhost:8000"
    assert s.backend("openai").base_url == "https://api.openai.com/v1"


def test_vllm_model_name_before_local_model_name():
    s = load(INFERENCE_PROVIDER="vllm", LOCAL_MODEL_NAME="generic", VLLM_MODEL_NAME="meta/llama")
    assert s.backend("vllm").model == "meta/llama"
    assert s.sources("vllm")["model"] == "VLLM_MODEL_NAME"


def test_namespaced_variables_win_over_seed_ones():
    s = load(
        INFERENCE_PROVIDER="vllm",
        LOCAL_INFERENCE_URL="http://seed:8000",
        VLLM_MODEL_NAME="seed-model",
        LOCAL_INFERENCE_TIMEOUT="10",
        INFERENCE_VLLM_BASE_URL="http://a:8000, http://b:8000/",
        INFERENCE_VLLM_MODEL="ns-model",
        INFERENCE_VLLM_TIMEOUT="20",
        INFERENCE_VLLM_CONNECT_TIMEOUT="2",
        INFERENCE_VLLM_API_KEY=SECRET,
        INFERENCE_VLLM_ALIASES="fast=small, smart=big",
        INFERENCE_VLLM_HF_TOKEN="hf-secret",
        INFERENCE_VLLM_METRICS_PATH="/metrics",
    )
    cfg = s.backend("vllm")
    assert cfg.base_urls == ("http://a:8000", "http://b:8000")
    assert cfg.model == "ns-model"
    assert cfg.timeout == 20.0
    assert cfg.connect_timeout == 2.0
    assert cfg.secret() == SECRET
    assert cfg.aliases == {"fast": "small", "smart": "big"}
    assert isinstance(cfg.options["hf_token"], SecretStr)
    assert cfg.option("hf_token") == "hf-secret"
    assert cfg.options["metrics_path"] == "/metrics"
    assert s.sources("vllm")["base_urls"] == "INFERENCE_VLLM_BASE_URL"


def test_fallback_chain_only_when_enabled_and_without_duplicates():
    assert load(INFERENCE_PROVIDER="vllm", FALLBACK_CHAIN="ollama").chain == ["vllm"]
    s = load(INFERENCE_PROVIDER="vllm", ENABLE_FALLBACK="yes", FALLBACK_CHAIN="ollama,vllm,ollama")
    assert s.chain == ["vllm", "ollama"]
    assert s.fallback_chain == ["ollama", "vllm"]


def test_prefix_of_another_backend_does_not_steal_its_variables():
    s = load(
        INFERENCE_PROVIDER="vllm",
        ENABLE_FALLBACK="true",
        FALLBACK_CHAIN="vllm_large",
        INFERENCE_VLLM_LARGE_PLUGIN="vllm",
        INFERENCE_VLLM_LARGE_MODEL="big",
        INFERENCE_VLLM_MODEL="small",
        INFERENCE_MAX_RETRIES="1",
    )
    assert s.backend("vllm").model == "small"
    assert "large_model" not in s.backend("vllm").options
    assert s.backend("vllm_large").model == "big"
    assert s.backend("vllm_large").options["plugin"] == "vllm"
    assert s.backend("vllm_large").base_url == "http://localhost:8000"
    assert s.plugin_for("vllm_large") == "vllm"
    assert s.plugin_for("vllm") == "vllm"


def test_global_variables_are_not_backend_options():
    s = load(INFERENCE_PROVIDER="max", INFERENCE_MAX_RETRIES="4", INFERENCE_MAX_FOO="x")
    assert s.policy.max_retries == 4
    assert s.backend("max").options == {"foo": "x"}


def test_policy_from_env():
    s = load(
        INFERENCE_MAX_RETRIES="0",
        INFERENCE_RETRY_BACKOFF="0.1",
        INFERENCE_RETRY_BACKOFF_MAX="2",
        INFERENCE_RETRY_AFTER_CAP="5",
        INFERENCE_REQUEST_DEADLINE="30",
        INFERENCE_FIRST_TOKEN_TIMEOUT="9",
        INFERENCE_IDLE_TIMEOUT="8",
        INFERENCE_BREAKER_THRESHOLD="5",
        INFERENCE_BREAKER_WINDOW="60",
        INFERENCE_BREAKER_COOLDOWN="3",
        INFERENCE_CONTEXT_FALLBACK="no",
    )
    assert s.policy == RouterPolicy(
        max_retries=0,
        backoff_base=0.1,
        backoff_max=2.0,
        retry_after_cap=5.0,
        request_deadline=30.0,
        first_token_timeout=9.0,
        idle_timeout=8.0,
        breaker_threshold=5,
        breaker_window=60.0,
        breaker_cooldown=3.0,
        context_fallback=False,
    )


def test_every_policy_field_has_a_variable():
    assert set(policy_field_names()) == set(POLICY_VARIABLES)
    assert {f.name for f in dataclasses.fields(RouterPolicy)} == set(POLICY_VARIABLES)


def test_misc_flags():
    s = load(
        INFERENCE_PLUGINS_ALLOW="inference-vllm, inference_echo",
        INFERENCE_TRACE_PLUGINS="1",
        INFERENCE_STRICT_MODELS="TRUE",
        HEALTH_CHECK_INTERVAL="15",
        HEALTH_CHECK_TIMEOUT="0.5",
    )
    assert s.plugins_allow == ["inference-vllm", "inference_echo"]
    assert s.trace_plugins is True
    assert s.strict_models is True
    assert s.health_check_interval == 15.0
    assert s.health_check_timeout == 0.5


def test_empty_values_count_as_unset():
    s = load(INFERENCE_PROVIDER="", OPENAI_API_KEY="", HEALTH_CHECK_TIMEOUT=" ")
    assert s.provider == "llamacpp"
    assert s.health_check_timeout == 5.0


@pytest.mark.parametrize(
    ("env", "variable", "fragments"),
    [
        ({"INFERENCE_PROVIDER": "vLLM"}, "INFERENCE_PROVIDER", ["^[a-z][a-z0-9_]*$"]),
        ({"FALLBACK_CHAIN": "ollama,open-ai"}, "FALLBACK_CHAIN", ["'open-ai'"]),
        ({"ENABLE_FALLBACK": "sure"}, "ENABLE_FALLBACK", ["true/false/1/0/yes/no"]),
        ({"INFERENCE_TRACE_PLUGINS": "2"}, "INFERENCE_TRACE_PLUGINS", ["true/false"]),
        ({"HEALTH_CHECK_TIMEOUT": "-1"}, "HEALTH_CHECK_TIMEOUT", ["> 0"]),
        ({"HEALTH_CHECK_INTERVAL": "0"}, "HEALTH_CHECK_INTERVAL", ["> 0"]),
        ({"HEALTH_CHECK_INTERVAL": "soon"}, "HEALTH_CHECK_INTERVAL", ["not a number"]),
        ({"INFERENCE_PROVIDER": "openai", "OPENAI_TIMEOUT": "0"}, "OPENAI_TIMEOUT", ["> 0"]),
        ({"LOCAL_INFERENCE_TIMEOUT": "-5"}, "LOCAL_INFERENCE_TIMEOUT", ["> 0"]),
        ({"INFERENCE_LLAMACPP_TIMEOUT": "nan"}, "INFERENCE_LLAMACPP_TIMEOUT", ["finite"]),
        ({"LOCAL_INFERENCE_URL": "ftp://x"}, "LOCAL_INFERENCE_URL", ["http or https"]),
        ({"LOCAL_INFERENCE_URL": "localhost:8000"}, "LOCAL_INFERENCE_URL", ["http"]),
        ({"INFERENCE_LLAMACPP_BASE_URL": "http://"}, "INFERENCE_LLAMACPP_BASE_URL", ["no host"]),
        (
            {"INFERENCE_LLAMACPP_BASE_URL": "http://h:99999"},
            "INFERENCE_LLAMACPP_BASE_URL",
            ["Port out of range"],
        ),
        (
            {"INFERENCE_PROVIDER": "openai", "OPENAI_API_BASE": "api.openai.com"},
            "OPENAI_API_BASE",
            ["scheme"],
        ),
        ({"INFERENCE_LLAMACPP_ALIASES": "fast"}, "INFERENCE_LLAMACPP_ALIASES", ["alias=model"]),
        ({"INFERENCE_LLAMACPP_ALIASES": "a=b,a=c"}, "INFERENCE_LLAMACPP_ALIASES", ["twice"]),
        ({"INFERENCE_LLAMACPP_ALIASES": "=m"}, "INFERENCE_LLAMACPP_ALIASES", ["alias=model"]),
        ({"INFERENCE_MAX_RETRIES": "-1"}, "INFERENCE_MAX_RETRIES", [">= 0"]),
        ({"INFERENCE_MAX_RETRIES": "1.5"}, "INFERENCE_MAX_RETRIES", ["whole number"]),
        ({"INFERENCE_BREAKER_THRESHOLD": "0"}, "INFERENCE_BREAKER_THRESHOLD", [">= 1"]),
        ({"INFERENCE_REQUEST_DEADLINE": "0"}, "INFERENCE_REQUEST_DEADLINE", ["> 0"]),
        ({"INFERENCE_CONTEXT_FALLBACK": "maybe"}, "INFERENCE_CONTEXT_FALLBACK", ["true/false"]),
        (
            {"INFERENCE_RETRY_BACKOFF": "2", "INFERENCE_RETRY_BACKOFF_MAX": "1"},
            "INFERENCE_RETRY_BACKOFF_MAX",
            ["INFERENCE_RETRY_BACKOFF"],
        ),
        ({"INFERENCE_PLUGINS_ALLOW": "ok,bad name"}, "INFERENCE_PLUGINS_ALLOW", ["distribution"]),
        ({"INFERENCE_LLAMACPP_PLUGIN": "Bad"}, "INFERENCE_LLAMACPP_PLUGIN", ["backend name"]),
    ],
)
def test_bad_values_are_config_errors_naming_the_variable(env, variable, fragments):
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env, env_file=None)
    err = info.value
    assert err.variable == variable
    assert str(err).startswith(variable)
    assert "accepted:" in str(err)
    for fragment in fragments:
        assert fragment in str(err)


def test_url_credentials_are_masked_in_errors_and_redacted():
    with pytest.raises(ConfigError) as info:
        load(LOCAL_INFERENCE_URL="ftp://user:hunter2@host")
    assert "hunter2" not in str(info.value)
    s = load(INFERENCE_LLAMACPP_BASE_URL="https://user:hunter2@host:1/v1")
    assert "hunter2" not in repr(s.redacted())
    assert mask_url("https://u:p@h/x") == "https://****@h/x"
    assert mask_url("http://h:1") == "http://h:1"


def test_secrets_never_printed():
    s = load(
        INFERENCE_PROVIDER="openai",
        OPENAI_API_KEY=SECRET,
        ENABLE_FALLBACK="true",
        FALLBACK_CHAIN="vllm",
        INFERENCE_VLLM_API_KEY=SECRET + "v",
        INFERENCE_VLLM_HF_TOKEN=SECRET + "t",
        INFERENCE_VLLM_CLIENT_SECRET=SECRET + "s",
    )
    for text in (repr(s), str(s), repr(s.redacted()), s.model_dump_json()):
        assert SECRET not in text
        assert "1234" not in text  # not even the last four
    red = s.redacted()
    assert red["backends"]["openai"]["api_key"] == "****"
    assert red["backends"]["vllm"]["options"] == {"hf_token": "****", "client_secret": "****"}
    assert red["chain"] == ["openai", "vllm"]


def test_secret_values_are_not_echoed_in_errors():
    # a bad boolean must echo the value, but a bad *_API_KEY-like option is never checked as such;
    # a bad timeout next to a key must not carry the key
    with pytest.raises(ConfigError) as info:
        load(INFERENCE_PROVIDER="openai", OPENAI_API_KEY=SECRET, OPENAI_TIMEOUT="-1")
    assert SECRET not in str(info.value)


def test_dotenv_file_and_environment_priority(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "INFERENCE_PROVIDER=ollama\nLOCAL_MODEL_NAME=from-file\nHEALTH_CHECK_TIMEOUT=3\n"
    )
    for var in ("INFERENCE_PROVIDER", "LOCAL_MODEL_NAME", "HEALTH_CHECK_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOCAL_MODEL_NAME", "from-env")
    s = Settings.from_env(env_file=str(env_file))
    assert s.provider == "ollama"
    assert s.health_check_timeout == 3.0
    assert s.backend("ollama").model == "from-env"  # the process environment wins
    # an explicit mapping means that mapping only
    assert Settings.from_env({}, env_file=str(env_file)).provider == "llamacpp"
    # a missing file is fine
    assert Settings.from_env(env_file=str(tmp_path / "nope")).provider == "llamacpp"


def test_backend_outside_the_chain_is_resolved_on_demand():
    s = load(INFERENCE_PROVIDER="vllm", INFERENCE_OLLAMA_MODEL="qwen")
    assert "ollama" not in s.backends
    assert s.backend("ollama").model == "qwen"
    assert s.backend("ollama").base_url == "http://localhost:11434"
    with pytest.raises(ConfigError):
        s.backend("Not-A-Name")


def test_validate_installed_names_the_variable():
    s = load(INFERENCE_PROVIDER="vllm", ENABLE_FALLBACK="true", FALLBACK_CHAIN="nope")
    with pytest.raises(ConfigError) as info:
        s.validate_installed(["vllm", "ollama"])
    assert info.value.variable == "FALLBACK_CHAIN"
    assert "ollama, vllm" in str(info.value)
    assert "pip install inference-nope" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load(INFERENCE_PROVIDER="zzz").validate_installed([])
    assert info.value.variable == "INFERENCE_PROVIDER"
    assert "no backend is installed" in str(info.value)
    load(INFERENCE_PROVIDER="vllm").validate_installed(["vllm"])


@given(
    st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=5),
    st.booleans(),
)
def test_chain_property(names, enabled):
    s = load(
        INFERENCE_PROVIDER=names[0],
        ENABLE_FALLBACK="true" if enabled else "false",
        FALLBACK_CHAIN=",".join(names[1:]),
    )
    chain = s.chain
    assert chain[0] == names[0]
    assert len(chain) == len(set(chain))
    if enabled:
        assert set(chain) == set(names)
    else:
        assert chain == [names[0]]
    assert set(s.backends) == set(chain)


_FUZZ_VARS = [
    "INFERENCE_PROVIDER",
    "ENABLE_FALLBACK",
    "FALLBACK_CHAIN",
    "HEALTH_CHECK_INTERVAL",
    "HEALTH_CHECK_TIMEOUT",
    "LOCAL_INFERENCE_URL",
    "LOCAL_INFERENCE_TIMEOUT",
    "OPENAI_API_BASE",
    "OPENAI_TIMEOUT",
    "INFERENCE_PLUGINS_ALLOW",
    "INFERENCE_MAX_RETRIES",
    "INFERENCE_RETRY_BACKOFF",
    "INFERENCE_CONTEXT_FALLBACK",
    "INFERENCE_VLLM_BASE_URL",
    "INFERENCE_VLLM_ALIASES",
    "INFERENCE_VLLM_TIMEOUT",
    "INFERENCE_VLLM_PLUGIN",
]


@given(
    st.dictionaries(
        st.sampled_from(_FUZZ_VARS),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
        max_size=6,
    )
)
def test_any_value_is_accepted_or_a_config_error_without_secrets(env):
    env = {
        **env,
        "INFERENCE_PROVIDER": env.get("INFERENCE_PROVIDER", "vllm"),
        "OPENAI_API_KEY": SECRET,
        "INFERENCE_VLLM_API_KEY": SECRET,
    }
    error: ConfigError | None = None
    try:
        s = Settings.from_env(env, env_file=None)
    except ConfigError as exc:
        error = exc
    if error is not None:
        assert error.variable
        assert error.variable in str(error)
        assert SECRET not in str(error)
        return
    assert SECRET not in repr(s.redacted())
    assert SECRET not in repr(s)
    assert s.chain[0] == s.provider


def test_a_backend_named_test_works_and_gateway_is_reserved():
    s = load(
        INFERENCE_PROVIDER="test",
        INFERENCE_TEST_BASE_URL="http://t:1",
        INFERENCE_TEST_VLLM_CHAT_URL="http://x:2",
    )
    assert s.backend("test").base_url == "http://t:1"
    assert s.backend("test").options == {}  # the test suite's own variables are not options
    with pytest.raises(ConfigError) as info:
        load(INFERENCE_PROVIDER="gateway")
    assert "reserved" in str(info.value)


def test_plural_secret_suffixes_are_secret():
    s = load(INFERENCE_LLAMACPP_EXTRA_KEYS="k1,k2", INFERENCE_LLAMACPP_DB_PASSWORD="pw")
    assert isinstance(s.backend("llamacpp").options["extra_keys"], SecretStr)
    assert isinstance(s.backend("llamacpp").options["db_password"], SecretStr)
    assert "pw" not in repr(s.redacted())
