"""``inference pull``: get a model onto a local backend, with progress and clear failures.

* ``--backend ollama``: asks the Ollama server to pull ``MODEL`` (``POST /api/pull``) and shows its
  NDJSON progress (``status``, ``digest``, ``total``, ``completed``) as one bar per layer. Ollama
  keeps partial layers, so an interrupted pull resumes when run again.
* ``--backend llamacpp``: fetches a GGUF file from an http(s) URL, or copies a local one, into the
  llama.cpp plugin's model cache (``$INFERENCE_CACHE_DIR/models``, default
  ``~/.cache/inference-core/models``) or ``--dest``. Downloads go to ``NAME.part`` and resume with a
  ``Range`` request when run again; free space is checked against ``Content-Length`` before the
  first byte is written; the size, the GGUF magic and (with ``--sha256``) the digest are verified
  before the file takes its final name.

Exit codes (stable, for scripts and compose one-shots): 0 done, 1 other error, 2 usage,
3 model/URL/file not found, 4 server unreachable, 5 not enough disk space, 6 interrupted (run
the same command again to resume), 7 checksum / size / GGUF-magic mismatch.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

__all__ = [
    "EXIT_CHECKSUM",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_NO_SPACE",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "PullError",
    "free_bytes",
    "model_cache_dir",
    "ollama_base_url",
    "pull_command",
    "pull_gguf",
    "pull_ollama",
]

EXIT_OK = 0
EXIT_ERROR = 1  # anything else (bad answer from the server, permission denied, ...)
EXIT_USAGE = 2  # wrong arguments
EXIT_NOT_FOUND = 3  # no such model / URL 404 / no such local file
EXIT_UNREACHABLE = 4  # connection refused, DNS, timeout before anything arrived
EXIT_NO_SPACE = 5  # not enough free disk (checked up front) or ENOSPC while writing
EXIT_INTERRUPTED = 6  # the transfer broke off: run the same command again to resume
EXIT_CHECKSUM = 7  # sha256 / size / GGUF magic mismatch

CHUNK = 1 << 20
GGUF_MAGIC = b"GGUF"
SPACE_MARGIN = 64 << 20  # keep 64 MiB free beyond the file itself


@dataclass
class PullError(Exception):
    """A failure with its exit code and the message the user sees."""

    code: int
    message: str

    def __str__(self) -> str:
        return self.message


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem holding ``path`` (tests monkeypatch this)."""
    return shutil.disk_usage(path).free


def model_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the llama.cpp plugin looks for GGUF files: ``$INFERENCE_CACHE_DIR/models``."""
    env = os.environ if env is None else env
    root = env.get("INFERENCE_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "inference-core"
    return base / "models"


def ollama_base_url(env: Mapping[str, str] | None = None) -> str:
    """The Ollama server to ask: ``INFERENCE_OLLAMA_BASE_URL`` (first replica), then
    ``LOCAL_INFERENCE_URL`` when ``INFERENCE_PROVIDER=ollama``, then ``OLLAMA_HOST``, then
    ``http://localhost:11434``."""
    env = os.environ if env is None else env
    candidates = [env.get("INFERENCE_OLLAMA_BASE_URL")]
    if env.get("INFERENCE_PROVIDER", "").strip().lower() == "ollama":
        candidates.append(env.get("LOCAL_INFERENCE_URL"))
    candidates.append(env.get("OLLAMA_HOST"))
    for raw in candidates:
        if raw and raw.strip():
            url = raw.split(",")[0].strip()
            if "://" not in url:
                url = "http://" + url
            return url.replace("://0.0.0.0", "://localhost").rstrip("/")
    return "http://localhost:11434"


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _progress(console: Any, quiet: bool) -> Any:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
    )


# ----------------------------------------------------------------------------------- Ollama

_NOT_FOUND_MARKERS = ("file does not exist", "not found", "manifest unknown", "no such")


def _ollama_error(text: str, model: str, base_url: str) -> PullError:
    low = text.lower()
    if any(marker in low for marker in _NOT_FOUND_MARKERS):
        return PullError(
            EXIT_NOT_FOUND,
            f"Ollama has no model {model!r} in its registry ({text}). Check the name and tag "
            "(e.g. llama3.1:8b) at https://ollama.com/library",
        )
    return PullError(EXIT_ERROR, f"Ollama at {base_url} refused the pull of {model!r}: {text}")


def pull_ollama(
    model: str,
    *,
    base_url: str,
    console: Any,
    quiet: bool = False,
    timeout: float = 10.0,
    read_timeout: float = 600.0,
) -> int:
    """Pull ``model`` through the Ollama server at ``base_url``; raise :class:`PullError`."""
    import httpx

    url = f"{base_url.rstrip('/')}/api/pull"
    succeeded = False
    last_status = ""
    seen_any = False
    tasks: dict[str, Any] = {}
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(timeout, read=read_timeout)) as client,
            client.stream("POST", url, json={"model": model, "stream": True}) as resp,
            _progress(console, quiet) as progress,
        ):
            if resp.status_code >= 400:
                body = resp.read().decode("utf-8", "replace")
                try:
                    text = str(json.loads(body).get("error") or body)
                except (ValueError, AttributeError):
                    text = body.strip() or f"HTTP {resp.status_code}"
                if resp.status_code == 404:
                    raise PullError(
                        EXIT_NOT_FOUND,
                        f"Ollama has no model {model!r} ({text}). Check the name and tag.",
                    )
                raise _ollama_error(f"HTTP {resp.status_code}: {text}", model, base_url)
            for line in resp.iter_lines():
                if not line.strip():
                    continue
                seen_any = True
                try:
                    event = json.loads(line)
                except ValueError:
                    raise PullError(
                        EXIT_ERROR, f"{url} did not answer Ollama NDJSON: {line[:120]!r}"
                    ) from None
                if not isinstance(event, dict):
                    continue
                if event.get("error"):
                    raise _ollama_error(str(event["error"]), model, base_url)
                status = str(event.get("status") or "")
                digest = event.get("digest")
                if digest and event.get("total"):
                    total = int(event["total"])
                    completed = int(event.get("completed") or 0)
                    if digest not in tasks:
                        short = str(digest).split(":")[-1][:12]
                        tasks[digest] = progress.add_task(f"layer {short}", total=total)
                    progress.update(tasks[digest], total=total, completed=completed)
                elif status and status != last_status and not quiet:
                    progress.console.print(status)
                last_status = status or last_status
                if status == "success":
                    succeeded = True
    except httpx.ConnectError as exc:
        raise PullError(
            EXIT_UNREACHABLE,
            f"cannot reach Ollama at {base_url} ({exc}). Is it running? "
            "`docker compose --profile ollama up -d`, or `ollama serve`; "
            "point INFERENCE_OLLAMA_BASE_URL (or --base-url) at it.",
        ) from None
    except httpx.TimeoutException as exc:
        code = EXIT_INTERRUPTED if seen_any else EXIT_UNREACHABLE
        raise PullError(
            code,
            f"Ollama at {base_url} stopped answering ({type(exc).__name__}). Run the same "
            "command again: Ollama keeps the layers it already has.",
        ) from None
    except httpx.TransportError as exc:
        raise PullError(
            EXIT_INTERRUPTED,
            f"the pull of {model!r} broke off ({exc}). Run the same command again: Ollama "
            "keeps the layers it already has.",
        ) from None
    if not succeeded:
        raise PullError(
            EXIT_INTERRUPTED,
            f"Ollama's progress stream ended before 'success' (last status: {last_status!r}). "
            "Run the same command again to resume.",
        )
    console.print(f"[green]pulled {model}[/green] into Ollama at {base_url}")
    return EXIT_OK


# ---------------------------------------------------------------------------------- GGUF files


def _hash_file(path: Path, h: Any | None = None, *, limit: int | None = None) -> Any:
    h = h or hashlib.sha256()
    with path.open("rb") as f:
        remaining = limit
        while True:
            size = CHUNK if remaining is None else min(CHUNK, remaining)
            if size == 0:
                break
            block = f.read(size)
            if not block:
                break
            h.update(block)
            if remaining is not None:
                remaining -= len(block)
    return h


def _check_space(dest_dir: Path, needed: int) -> None:
    free = free_bytes(dest_dir)
    if needed + SPACE_MARGIN > free:
        raise PullError(
            EXIT_NO_SPACE,
            f"not enough disk space in {dest_dir}: the model needs {_human(needed)} more, "
            f"{_human(free)} is free. Free some space or pass --dest on a larger disk.",
        )


def _write_error(exc: OSError, part: Path) -> PullError:
    if exc.errno == errno.ENOSPC:
        kept = part.stat().st_size if part.exists() else 0
        return PullError(
            EXIT_NO_SPACE,
            f"the disk filled up while writing {part} ({_human(kept)} kept). Free some space "
            "and run the same command again: the download resumes from there.",
        )
    return PullError(EXIT_ERROR, f"cannot write {part}: {exc.strerror or exc}")


def _finish(part: Path, final: Path, digest: str, sha256: str | None, console: Any) -> int:
    with part.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        part.unlink(missing_ok=True)
        raise PullError(
            EXIT_CHECKSUM,
            f"{final.name} is not a GGUF file (it starts with {magic!r}; an HTML error or "
            "login page?). It was removed; check the URL (and HF_TOKEN for gated models).",
        )
    if sha256 and digest != sha256.lower():
        part.unlink(missing_ok=True)
        raise PullError(
            EXIT_CHECKSUM,
            f"sha256 mismatch for {final.name}: expected {sha256.lower()}, got {digest}. The "
            "corrupt download was removed; run the same command again to download it afresh.",
        )
    os.replace(part, final)
    size = final.stat().st_size
    console.print(f"[green]saved[/green] {final} ({_human(size)}, sha256 {digest})")
    return EXIT_OK


def _target(dest: Path, name: str) -> tuple[Path, Path]:
    if not name or "/" in name or name in {".", ".."}:
        raise PullError(EXIT_USAGE, f"bad file name {name!r}: give --filename NAME.gguf")
    return dest / name, dest / f"{name}.part"


def _existing(final: Path, sha256: str | None, console: Any) -> int | None:
    if not final.exists():
        return None
    if sha256:
        digest = _hash_file(final).hexdigest()
        if digest != sha256.lower():
            raise PullError(
                EXIT_CHECKSUM,
                f"{final} exists but its sha256 is {digest}, not {sha256.lower()}. Delete it to "
                "download again.",
            )
        console.print(f"{final} is already there (sha256 verified)")
    else:
        console.print(f"{final} is already there ({_human(final.stat().st_size)}); nothing to do")
    return EXIT_OK


def _auth_headers(url: str, env: Mapping[str, str]) -> dict[str, str]:
    host = (urlparse(url).hostname or "").lower()
    token = env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN")
    if token and (host == "huggingface.co" or host.endswith(".huggingface.co")):
        return {"Authorization": f"Bearer {token}"}
    return {}


def _content_range_total(value: str | None) -> int | None:
    # "bytes 100-199/200" or "bytes */200"
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _download(
    url: str,
    final: Path,
    part: Path,
    *,
    sha256: str | None,
    console: Any,
    quiet: bool,
    env: Mapping[str, str],
    timeout: float,
    _restarted: bool = False,
) -> int:
    import httpx

    offset = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity", **_auth_headers(url, env)}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    written = 0
    total: int | None = None
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=True) as client,
            client.stream("GET", url, headers=headers) as resp,
        ):
            status = resp.status_code
            if status == 404:
                raise PullError(EXIT_NOT_FOUND, f"no model at {url} (HTTP 404). Check the URL.")
            if status in (401, 403):
                raise PullError(
                    EXIT_ERROR,
                    f"access denied to {url} (HTTP {status}): a gated model needs HF_TOKEN "
                    "and its licence accepted on the model page.",
                )
            if status == 416 and offset:
                total = _content_range_total(resp.headers.get("content-range"))
                if total == offset:  # the .part is already complete
                    digest = _hash_file(part).hexdigest()
                    return _finish(part, final, digest, sha256, console)
                if _restarted:
                    raise PullError(EXIT_ERROR, f"{url} refuses range requests (HTTP 416)")
                part.unlink(missing_ok=True)
                console.print("the partial download does not match the server's file; restarting")
                return _download(
                    url, final, part, sha256=sha256, console=console, quiet=quiet, env=env,
                    timeout=timeout, _restarted=True,
                )  # fmt: skip
            if status >= 400:
                raise PullError(EXIT_ERROR, f"{url} answered HTTP {status}")
            h = hashlib.sha256()
            if status == 206 and offset:
                content_range = resp.headers.get("content-range") or ""
                start = re.match(r"bytes (\d+)-", content_range)
                if start is None or int(start.group(1)) != offset:
                    if _restarted:
                        raise PullError(EXIT_ERROR, f"{url} answered a range it was not asked for")
                    part.unlink(missing_ok=True)
                    console.print("the server resumed at the wrong offset; restarting")
                    return _download(
                        url, final, part, sha256=sha256, console=console, quiet=quiet, env=env,
                        timeout=timeout, _restarted=True,
                    )  # fmt: skip
                total = _content_range_total(content_range)
                mode = "ab"
                _hash_file(part, h)
                console.print(f"resuming {final.name} at {_human(offset)}")
            else:
                if offset:
                    console.print("the server does not support resuming; starting over")
                offset = 0
                length = resp.headers.get("content-length")
                total = int(length) if length and length.isdigit() else None
                mode = "wb"
            if total is not None:
                _check_space(final.parent, total - offset)
            try:
                with part.open(mode) as out, _progress(console, quiet) as progress:
                    task = progress.add_task(final.name, total=total, completed=offset)
                    for block in resp.iter_bytes():
                        out.write(block)
                        h.update(block)
                        written += len(block)
                        progress.update(task, advance=len(block))
            except OSError as exc:
                raise _write_error(exc, part) from None
    except httpx.ConnectError as exc:
        raise PullError(EXIT_UNREACHABLE, f"cannot reach {url}: {exc}") from None
    except (httpx.TransportError, httpx.StreamError) as exc:
        got = offset + written
        raise PullError(
            EXIT_INTERRUPTED,
            f"download of {final.name} interrupted after {_human(got)}"
            + (f" of {_human(total)}" if total else "")
            + f" ({type(exc).__name__}). The partial file is kept at {part}; run the same "
            "command again to resume.",
        ) from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise PullError(
            EXIT_INTERRUPTED,
            f"download of {final.name} ended early: {_human(size)} of {_human(total)}. "
            f"The partial file is kept at {part}; run the same command again to resume.",
        )
    return _finish(part, final, h.hexdigest(), sha256, console)


def _copy_local(
    src: Path, final: Path, part: Path, *, sha256: str | None, console: Any, quiet: bool
) -> int:
    if not src.is_file():
        raise PullError(EXIT_NOT_FOUND, f"no such file: {src}")
    size = src.stat().st_size
    _check_space(final.parent, size)
    h = hashlib.sha256()
    try:
        with (
            src.open("rb") as inp,
            part.open("wb") as out,
            _progress(console, quiet) as progress,
        ):
            task = progress.add_task(final.name, total=size)
            while block := inp.read(CHUNK):
                out.write(block)
                h.update(block)
                progress.update(task, advance=len(block))
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            part.unlink(missing_ok=True)
            raise PullError(
                EXIT_NO_SPACE, f"the disk filled up copying {src} to {final.parent}"
            ) from None
        raise _write_error(exc, part) from None
    return _finish(part, final, h.hexdigest(), sha256, console)


def pull_gguf(
    source: str,
    *,
    dest: Path,
    filename: str | None = None,
    sha256: str | None = None,
    console: Any,
    quiet: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> int:
    """Download (or copy) one GGUF file into ``dest``; raise :class:`PullError` on failure."""
    env = os.environ if env is None else env
    if sha256 is not None:
        sha256 = sha256.strip().lower() or None
    if sha256 is not None and (
        len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256)
    ):
        raise PullError(EXIT_USAGE, f"--sha256 must be 64 hex digits, got {sha256!r}")
    parsed = urlparse(source)
    remote = parsed.scheme in {"http", "https"}
    if remote:
        name = filename or unquote(Path(parsed.path).name)
    else:
        local = Path(parsed.path if parsed.scheme == "file" else source).expanduser()
        name = filename or local.name
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PullError(EXIT_ERROR, f"cannot create {dest}: {exc.strerror or exc}") from None
    final, part = _target(dest, name)
    if not name.endswith(".gguf"):
        console.print(f"[yellow]note:[/yellow] {name} does not end in .gguf")
    if not remote and local.resolve() == final.resolve():
        digest = _hash_file(final).hexdigest()
        if sha256 and digest != sha256:
            raise PullError(EXIT_CHECKSUM, f"sha256 mismatch for {final}: got {digest}")
        console.print(f"{final} is in place (sha256 {digest})")
        return EXIT_OK
    done = _existing(final, sha256, console)
    if done is not None:
        return done
    if remote:
        return _download(
            source, final, part, sha256=sha256, console=console, quiet=quiet, env=env,
            timeout=timeout,
        )  # fmt: skip
    return _copy_local(local, final, part, sha256=sha256, console=console, quiet=quiet)


# ----------------------------------------------------------------------------------- command

_NO_PULL = {
    "vllm": "vLLM downloads its model from Hugging Face itself when it starts (--model); to "
    "fetch ahead of time use `huggingface-cli download MODEL` into the vllm-models volume",
    "openai": "the OpenAI API hosts its models: there is nothing to pull",
    "textgen": "text-generation-webui downloads models from its UI (Model tab) or with its "
    "download-model.py script",
}


def pull_command(
    model: str,
    backend: str = "ollama",
    *,
    base_url: str | None = None,
    dest: str | Path | None = None,
    filename: str | None = None,
    sha256: str | None = None,
    quiet: bool = False,
    timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
    console: Any = None,
) -> int:
    """``inference pull MODEL --backend ollama|llamacpp``: returns the exit code."""
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    env = os.environ if env is None else env
    backend = backend.strip().lower()
    handlers: dict[str, Callable[[], int]] = {
        "ollama": lambda: pull_ollama(
            model,
            base_url=base_url or ollama_base_url(env),
            console=console,
            quiet=quiet,
            timeout=timeout,
        ),
        "llamacpp": lambda: pull_gguf(
            model,
            dest=Path(dest).expanduser() if dest else model_cache_dir(env),
            filename=filename or None,
            sha256=sha256,
            console=console,
            quiet=quiet,
            env=env,
            timeout=timeout,
        ),
    }
    try:
        if backend in _NO_PULL:
            raise PullError(
                EXIT_USAGE, f"`inference pull` does not handle {backend}: " + _NO_PULL[backend]
            )
        handler = handlers.get(backend)
        if handler is None:
            raise PullError(
                EXIT_USAGE,
                f"unknown backend {backend!r}: `inference pull` handles ollama and llamacpp",
            )
        return handler()
    except PullError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        return exc.code
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: run the same command again to resume")
        return EXIT_INTERRUPTED
