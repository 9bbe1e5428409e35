"""BackendConfig's option accessors: text, booleans, whole numbers, numbers, and their errors."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from inference_core.errors import ConfigError
from inference_core.models import BackendConfig


def config(name: str = "vllm", **options: str | SecretStr) -> BackendConfig:
    return BackendConfig(name=name, options=options)


# ------------------------------------------------------------------------------------- text


def test_option_text_is_stripped_and_blank_means_unset():
    cfg = config(model_path="  /m.gguf \n", blank="   ", hf_token=SecretStr(" t "))
    assert cfg.option("model_path") == "/m.gguf"
    assert cfg.option("MODEL_PATH") == "/m.gguf"  # keys are case-insensitive
    assert cfg.option("blank") is None
    assert cfg.option("blank", "d") == "d"
    assert cfg.option("missing", "d") == "d"
    assert cfg.option("hf_token") == "t"  # secrets revealed for the plugin's own use


def test_option_variable_uses_the_instance_name():
    assert config("vllm_large").option_variable("health_deep") == "INFERENCE_VLLM_LARGE_HEALTH_DEEP"


# ---------------------------------------------------------------------------------- booleans


@pytest.mark.parametrize("word", ["true", "TRUE", "1", "yes", "on", " On "])
def test_option_bool_true_words(word):
    assert config(flag=word).option_bool("flag", False) is True


@pytest.mark.parametrize("word", ["false", "False", "0", "no", "off"])
def test_option_bool_false_words(word):
    assert config(flag=word).option_bool("flag", True) is False


def test_option_bool_default_when_unset_or_blank():
    assert config().option_bool("flag", True) is True
    assert config(flag=" ").option_bool("flag", False) is False


def test_option_bool_error_names_variable_value_and_accepted_words():
    with pytest.raises(ConfigError) as info:
        config("textgen", autoload="maybe").option_bool("autoload", False)
    assert info.value.variable == "INFERENCE_TEXTGEN_AUTOLOAD"
    assert str(info.value) == (
        "INFERENCE_TEXTGEN_AUTOLOAD='maybe': not a boolean; accepted: true/false/1/0/yes/no/on/off"
    )


# ------------------------------------------------------------------------------ whole numbers


def test_option_int_parses_and_defaults():
    assert config(num_ctx=" 8192 ").option_int("num_ctx") == 8192
    assert config().option_int("num_ctx") is None
    assert config().option_int("num_ctx", 4) == 4
    assert config(port="0").option_int("port", 1, minimum=0) == 0
    assert config(offset="-3").option_int("offset", 0) == -3  # no minimum: any whole number


def test_option_int_default_is_not_checked_against_minimum():
    assert config().option_int("parallel", 0, minimum=1) == 0


def test_option_int_not_a_whole_number():
    with pytest.raises(ConfigError) as info:
        config("ollama", num_ctx="big").option_int("num_ctx")
    assert info.value.variable == "INFERENCE_OLLAMA_NUM_CTX"
    assert str(info.value) == (
        "INFERENCE_OLLAMA_NUM_CTX='big': not a whole number; accepted: a whole number"
    )
    with pytest.raises(ConfigError, match="not a whole number"):
        config(n="1.5").option_int("n")


def test_option_int_below_minimum():
    with pytest.raises(ConfigError) as info:
        config("llamacpp", parallel="0").option_int("parallel", 4, minimum=1)
    assert str(info.value) == (
        "INFERENCE_LLAMACPP_PARALLEL='0': out of range; accepted: a whole number >= 1"
    )


# ----------------------------------------------------------------------------------- numbers


def test_option_float_parses_and_defaults():
    assert config(ttl="2.5").option_float("ttl", 5.0) == 2.5
    assert config(ttl="-1").option_float("ttl", 5.0) == -1.0  # no bound asked for
    assert config().option_float("ttl", 5.0) == 5.0
    assert config(stall="0").option_float("stall", 1.0, minimum=0) == 0.0
    assert config(t="0.1").option_float("t", 1.0, positive=True) == 0.1


def test_option_float_not_a_number():
    with pytest.raises(ConfigError) as info:
        config("vllm", health_timeout="soon").option_float("health_timeout", 5.0)
    assert info.value.variable == "INFERENCE_VLLM_HEALTH_TIMEOUT"
    assert str(info.value) == (
        "INFERENCE_VLLM_HEALTH_TIMEOUT='soon': not a number; accepted: a number"
    )


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_option_float_must_be_finite(value):
    with pytest.raises(ConfigError, match="not a finite number"):
        config(t=value).option_float("t", 1.0)


def test_option_float_bounds():
    with pytest.raises(ConfigError) as info:
        config("llamacpp", start_timeout="0").option_float("start_timeout", 120.0, positive=True)
    assert str(info.value) == (
        "INFERENCE_LLAMACPP_START_TIMEOUT='0': out of range; accepted: a number > 0"
    )
    with pytest.raises(ConfigError) as info:
        config(t="-0.5").option_float("t", 1.0, minimum=0)
    assert str(info.value) == "INFERENCE_VLLM_T='-0.5': out of range; accepted: a number >= 0"
    with pytest.raises(ConfigError, match=r"a number >= 1\.5"):
        config(t="1").option_float("t", 2.0, minimum=1.5, positive=True)


def test_typed_errors_never_show_a_secret_value():
    cfg = config("textgen", admin_key=SecretStr("sk-very-secret"))
    with pytest.raises(ConfigError) as info:
        cfg.option_int("admin_key")
    assert "sk-very-secret" not in str(info.value)
    assert "INFERENCE_TEXTGEN_ADMIN_KEY='****'" in str(info.value)


def test_settings_and_options_accept_the_same_boolean_words():
    from inference_core.settings import Settings

    for word in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        settings = Settings.from_env({"ENABLE_FALLBACK": word}, env_file=None)
        assert settings.enable_fallback is config(flag=word).option_bool("flag", False)


# ------------------------------------------------------------------------- raw wire bytes

CHUNK = (
    b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"hi"}}],"x_extra":1}'
)


def test_raw_bytes_are_kept_set_and_dropped_like_a_private_attribute():
    import copy
    import pickle

    from inference_core.models import ChatChunk

    chunk = ChatChunk.from_raw(CHUNK)
    assert chunk.raw == CHUNK
    assert chunk.choices[0].delta.content == "hi"
    parsed = ChatChunk.model_validate_json(CHUNK)  # no bytes remembered
    assert parsed.raw is None
    assert chunk != parsed  # as with any private attribute: different bytes, not equal
    for clone in (copy.copy(chunk), copy.deepcopy(chunk), pickle.loads(pickle.dumps(chunk)),
                  chunk.model_copy()):  # fmt: skip
        assert clone.raw == CHUNK
    assert "raw" not in chunk.model_dump()
    assert "_raw" not in chunk.model_dump()
    chunk.set_raw(b"{}")
    assert chunk.raw == b"{}"
    chunk.drop_raw()
    assert chunk.raw is None
    assert chunk == parsed  # without bytes it equals an object built without them
    parsed.set_raw(CHUNK)  # set on an object that had none
    assert parsed.raw == CHUNK
