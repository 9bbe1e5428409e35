"""load_backends: entry points, load errors, allow-list, one-backend dispatch, wrappers, tracing."""

from __future__ import annotations

import logging
import sys
import types
from importlib.metadata import EntryPoint

import pytest

import inference_core
from inference_core import plugins
from inference_core.errors import ConfigError, PluginLoadError
from inference_core.models import ChatRequest, Health
from inference_core.plugins import load_backends
from inference_core.testing import make_config

SECRET = "sk-TRACE-SECRET-9876"


class Backend:
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[str] = []

    @inference_core.hookimpl
    async def health(self, config):
        self.calls.append("health")
        return Health(state="ready", detail=self.name)

    @inference_core.hookimpl
    async def chat(self, request, config, http):
        self.calls.append("chat")
        return f"{self.name}:{request.messages[0].content}"


class HealthOnly:
    @inference_core.hookimpl
    async def health(self, config, http):
        return Health(state="down", detail="health-only")


class FakeDist:
    def __init__(self, name: str, version: str = "1.2.3") -> None:
        self.name = name
        self.version = version


def fake_ep(name: str, value: str, dist: str | None = None) -> EntryPoint:
    ep = EntryPoint(name=name, value=value, group=plugins.ENTRY_POINT_GROUP)
    if dist is not None:
        ep = ep._for(FakeDist(dist))  # what importlib.metadata does for real distributions
    return ep


@pytest.fixture
def fake_modules(monkeypatch):
    """Importable modules standing in for installed plugin packages."""
    good = types.ModuleType("fake_good_plugin")
    good.plugin = Backend("good")
    other = types.ModuleType("fake_other_plugin")
    other.plugin = Backend("other")
    sync = types.ModuleType("fake_sync_plugin")

    class Sync:
        @inference_core.hookimpl
        def health(self, config):
            return None

    sync.plugin = Sync()
    typo = types.ModuleType("fake_typo_plugin")

    class Typo:
        @inference_core.hookimpl
        async def helth(self, config):
            return None

    typo.plugin = Typo()
    badarg = types.ModuleType("fake_badarg_plugin")

    class BadArg:
        @inference_core.hookimpl
        async def chat(self, request, prompt):
            return None

    badarg.plugin = BadArg()
    for mod in (good, other, sync, typo, badarg):
        monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return {"good": good, "other": other}


@pytest.fixture
def installed(monkeypatch, fake_modules):
    eps = {
        "good": fake_ep("good", "fake_good_plugin:plugin", "inference-good"),
        "other": fake_ep("other", "fake_other_plugin:plugin", "inference_other"),
        "broken": fake_ep("broken", "fake_missing_module_xyz:plugin", "inference-broken"),
        "sync": fake_ep("sync", "fake_sync_plugin:plugin", "inference-sync"),
        "typo": fake_ep("typo", "fake_typo_plugin:plugin", "inference-typo"),
        "badarg": fake_ep("badarg", "fake_badarg_plugin:plugin", "inference-badarg"),
    }
    monkeypatch.setattr(plugins, "installed_backends", lambda: dict(eps))
    return eps


def test_unknown_name_lists_installed_backends(installed):
    with pytest.raises(ConfigError) as info:
        load_backends(["good", "nosuch"])
    message = str(info.value)
    assert "'nosuch'" in message
    assert "badarg, broken, good, other, sync, typo" in message
    assert "pip install inference-nosuch" in message
    assert info.value.variable == "FALLBACK_CHAIN"


def test_loads_only_the_named_backends_in_chain_order(installed, monkeypatch):
    loaded: list[str] = []
    real_load = EntryPoint.load

    def spy(self):
        loaded.append(self.name)
        return real_load(self)

    monkeypatch.setattr(EntryPoint, "load", spy)
    ps = load_backends(["other", "good"])
    assert loaded == ["other", "good"]
    assert list(ps.backends) == ["other", "good"]
    report = ps.report("other")
    assert report.distribution == "inference_other"
    assert report.version == "1.2.3"
    assert report.hooks == ["chat", "health"]
    assert report.error is None
    assert report.entry_point == "fake_other_plugin:plugin"


async def test_dispatch_reaches_exactly_one_backend(installed, fake_modules):
    ps = load_backends(["good", "other"])
    req = ChatRequest(messages=[{"role": "user", "content": "hi"}])
    assert (
        await ps.backends["other"].chat(request=req, config=make_config(), http=None) == "other:hi"
    )
    assert await ps.backends["good"].chat(request=req, config=make_config(), http=None) == "good:hi"
    health = await ps.backends["other"].health(config=make_config(), http=None)
    assert health.detail == "other"
    assert fake_modules["good"].plugin.calls == ["chat"]
    assert fake_modules["other"].plugin.calls == ["chat", "health"]


async def test_missing_hook_returns_none_even_next_to_other_backends():
    ps = load_backends(["a", "b"], extra_plugins={"a": HealthOnly(), "b": Backend("b")})
    assert not ps.backends["a"].implements("chat")
    assert ps.backends["b"].implements("chat")
    req = ChatRequest(messages=[{"role": "user", "content": "x"}])
    assert ps.backends["a"].chat(request=req, config=make_config(), http=None) is None


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("broken", ["inference-broken", "ModuleNotFoundError", "fake_missing_module_xyz"]),
        ("sync", ["inference-sync", "'health'", "async def"]),
        ("typo", ["inference-typo", "'helth'", "misspelled"]),
        ("badarg", ["inference-badarg", "prompt"]),
    ],
)
def test_a_bad_plugin_is_reported_and_skipped(installed, name, fragments):
    ps = load_backends([name, "good"])
    assert list(ps.backends) == ["good"]
    error = ps.report(name).error
    for fragment in fragments:
        assert fragment in error
    assert ps.errors == {name: error}
    assert ps.report("good").error is None


def test_plugin_load_error_only_when_nothing_loads(installed):
    with pytest.raises(PluginLoadError) as info:
        load_backends(["broken", "sync"])
    assert "inference-broken" in str(info.value)
    assert "inference-sync" in str(info.value)
    assert info.value.backend == "broken"
    assert info.value.distribution == "inference-broken"


def test_allow_list_uses_normalised_distribution_names(installed):
    ps = load_backends(["good", "other"], allow=["Inference_Good"])
    assert list(ps.backends) == ["good"]
    assert "not in INFERENCE_PLUGINS_ALLOW" in ps.report("other").error
    assert "inference_other" in ps.report("other").error
    with pytest.raises(PluginLoadError):
        load_backends(["good"], allow=[])
    # in-memory plugins are not subject to it
    ps = load_backends(["mem"], allow=[], extra_plugins={"mem": Backend("mem")})
    assert list(ps.backends) == ["mem"]


def test_one_plugin_two_instances(installed, fake_modules):
    ps = load_backends(["small", "large"], plugin_names={"small": "good", "large": "good"})
    assert list(ps.backends) == ["small", "large"]
    assert ps.backends["small"].plugin is fake_modules["good"].plugin


async def test_wrapper_plugin_sees_every_backend_call():
    seen: list[tuple[str, str]] = []

    class Metrics:
        @inference_core.hookimpl(wrapper=True)
        def chat(self, request, config):
            seen.append(("chat", config.name))
            return (yield)

        @inference_core.hookimpl(wrapper=True)
        def health(self, config):
            seen.append(("health", config.name))
            return (yield)

    backends = {"a": Backend("a"), "b": Backend("b"), "c": HealthOnly()}
    ps = load_backends(["a", "b", "c"], extra_plugins=backends, core_plugins=[Metrics()])
    req = ChatRequest(messages=[{"role": "user", "content": "q"}])
    for name in ("a", "b"):
        result = await ps.backends[name].chat(request=req, config=make_config(name), http=None)
        assert result == f"{name}:q"
    for name in ("a", "b", "c"):
        await ps.backends[name].health(config=make_config(name), http=None)
    # the wrapper ran once around each call, whichever backend served it
    assert seen == [
        ("chat", "a"),
        ("chat", "b"),
        ("health", "a"),
        ("health", "b"),
        ("health", "c"),
    ]
    # a backend without the hook: the wrapper runs, the result is None (capability missing)
    assert ps.backends["c"].chat(request=req, config=make_config("c"), http=None) is None


def test_core_plugin_must_be_a_wrapper():
    class Competing:
        @inference_core.hookimpl
        async def chat(self, request):
            return "hijacked"

    ps = load_backends(["a"], extra_plugins={"a": Backend("a")})
    with pytest.raises(PluginLoadError):
        ps.add_core_plugin(Competing())


async def test_tracing_logs_calls_with_config_redacted(caplog):
    ps = load_backends(["a"], extra_plugins={"a": Backend("a")}, trace=True)
    config = make_config("a", api_key=SECRET, options={"hf_token": SECRET})
    with caplog.at_level(logging.INFO, logger="inference_core.plugins"):
        req = ChatRequest(messages=[{"role": "user", "content": "hello"}], model="m1")
        await ps.backends["a"].chat(request=req, config=config, http=None)
    text = caplog.text
    assert "hook chat -> a" in text
    assert "model='m1'" in text
    assert "'api_key': '****'" in text
    assert SECRET not in text
    assert "hook chat returned coroutine" in text


def test_no_tracing_by_default(caplog):
    ps = load_backends(["a"], extra_plugins={"a": Backend("a")})
    with caplog.at_level(logging.DEBUG, logger="inference_core.plugins"):
        ps.backends["a"].health(config=make_config("a"), http=None).close()
    assert "hook health" not in caplog.text


def test_real_entry_point_discovery_returns_a_mapping():
    found = plugins.installed_backends()
    assert isinstance(found, dict)
    for name, ep in found.items():
        assert ep.name == name
        assert ep.group == plugins.ENTRY_POINT_GROUP


def test_inspect_installed_reports_each(installed):
    reports = {r.name: r for r in plugins.inspect_installed()}
    assert set(reports) == set(installed)
    assert reports["good"].error is None
    assert reports["good"].hooks == ["chat", "health"]
    assert reports["good"].distribution == "inference-good"
    assert "ModuleNotFoundError" in reports["broken"].error
    assert "async def" in reports["sync"].error
    assert "misspelled" in reports["typo"].error
    assert "prompt" in reports["badarg"].error
    only = {r.name: r for r in plugins.inspect_installed(allow=["inference-good"])}
    assert only["good"].error is None
    assert "INFERENCE_PLUGINS_ALLOW" in only["other"].error


def test_a_plugin_calling_sys_exit_on_import_is_only_a_load_error(monkeypatch, installed):
    import importlib

    class Exiting(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "fake_exiting_plugin":
                raise SystemExit(3)
            return None

    finder = Exiting()
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    installed["exiting"] = fake_ep("exiting", "fake_exiting_plugin:plugin", "inference-exiting")
    ps = load_backends(["exiting", "good"])
    assert list(ps.backends) == ["good"]
    assert "SystemExit" in ps.report("exiting").error


def test_duplicate_entry_point_names_first_wins(monkeypatch, caplog):
    eps = [
        fake_ep("dup", "mod_a:plugin", "inference-a"),
        fake_ep("dup", "mod_b:plugin", "inference-b"),
    ]
    monkeypatch.setattr(plugins, "entry_points", lambda group: eps)
    with caplog.at_level(logging.WARNING, logger="inference_core.plugins"):
        found = plugins.installed_backends()
    assert found["dup"].value == "mod_a:plugin"
    assert "inference-a and inference-b" in caplog.text


async def test_router_from_env_honours_trace_and_allow(installed, caplog, fake_modules):
    from inference_core.router import Router

    env = {
        "INFERENCE_PROVIDER": "other",
        "ENABLE_FALLBACK": "true",
        "FALLBACK_CHAIN": "good",
        "INFERENCE_PLUGINS_ALLOW": "inference-good",
        "INFERENCE_TRACE_PLUGINS": "yes",
        "INFERENCE_GOOD_API_KEY": SECRET,
    }
    router = Router.from_env(env, env_file=None)
    assert list(router.plugins.backends) == ["good"]
    assert "INFERENCE_PLUGINS_ALLOW" in router.plugins.report("other").error
    with caplog.at_level(logging.INFO, logger="inference_core.plugins"):
        async with router:
            reply = await router.chat({"messages": [{"role": "user", "content": "hey"}]})
    assert reply == "good:hey"
    assert "hook chat -> good" in caplog.text
    assert SECRET not in caplog.text


async def test_router_from_env_with_two_instances_of_one_plugin(installed):
    from inference_core.router import Router

    env = {
        "INFERENCE_PROVIDER": "small",
        "ENABLE_FALLBACK": "true",
        "FALLBACK_CHAIN": "large",
        "INFERENCE_SMALL_PLUGIN": "good",
        "INFERENCE_LARGE_PLUGIN": "good",
        "INFERENCE_SMALL_MODEL": "s-model",
        "INFERENCE_LARGE_MODEL": "l-model",
    }
    router = Router.from_env(env, env_file=None)
    assert list(router.plugins.backends) == ["small", "large"]
    assert router.settings.backend("large").options["plugin"] == "good"
    async with router:
        health = await router.health(refresh=True)
    assert health["small"]["state"] == "ready"
    assert health["large"]["state"] == "ready"
    with pytest.raises(ConfigError) as info:
        Router.from_env({**env, "INFERENCE_LARGE_PLUGIN": "nosuch"}, env_file=None)
    assert "'nosuch'" in str(info.value)
    assert "as 'large'" in str(info.value)
