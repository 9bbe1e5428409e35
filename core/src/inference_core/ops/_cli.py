"""The ``pull`` and ``doctor`` commands, added to the ``inference`` Typer app by ``register``."""

# No `from __future__ import annotations`: typer evaluates these annotations at run time,
# and `typer` is imported inside register() (kept out of `import inference_core`).

from collections.abc import Mapping
from typing import Annotated, Any


def register(
    app: Any,
    *,
    env: Mapping[str, str] | None = None,
    extra_plugins: Mapping[str, object] | None = None,
    transport: Any = None,
) -> None:
    """Add ``pull`` and ``doctor`` to ``app``.

    ``env`` / ``extra_plugins`` / ``transport``: as ``cli.build_app`` takes them (tests,
    embedding). The app-level ``--env-file`` option, when the app defines one, is honoured.
    """
    import typer

    def env_file_of(ctx: typer.Context) -> str | None:
        root = ctx.find_root()
        value = root.params.get("env_file", ".env") if root is not ctx else ".env"
        return value or None

    @app.command(
        "pull",
        help=(
            "Get a model onto a local backend. Ollama: ask the server to pull MODEL (e.g. "
            "llama3.1:8b), with progress. llama.cpp: download a GGUF from an http(s) URL "
            "(resumable, size and sha256 checked) or copy a local file into the model cache. "
            "Exit codes: 0 done, 1 error, 2 usage, 3 not found, 4 unreachable, 5 no disk "
            "space, 6 interrupted (run again to resume), 7 checksum mismatch."
        ),
    )
    def pull(
        model: Annotated[str, typer.Argument(help="Ollama model name, or GGUF URL / path.")],
        backend: Annotated[
            str, typer.Option("--backend", "-b", help="ollama or llamacpp.")
        ] = "ollama",
        base_url: Annotated[
            str | None,
            typer.Option("--base-url", help="Ollama server (default: INFERENCE_OLLAMA_BASE_URL)."),
        ] = None,
        dest: Annotated[
            str | None,
            typer.Option("--dest", help="GGUF directory (default: $INFERENCE_CACHE_DIR/models)."),
        ] = None,
        filename: Annotated[
            str | None, typer.Option("--filename", help="Save the GGUF under this name.")
        ] = None,
        sha256: Annotated[
            str | None, typer.Option("--sha256", help="Expected SHA-256 of the GGUF (hex).")
        ] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    ) -> None:
        from .pull import pull_command

        code = pull_command(
            model,
            backend,
            base_url=base_url,
            dest=dest,
            filename=filename,
            sha256=sha256,
            quiet=quiet,
            env=env,
        )
        raise typer.Exit(code)

    @app.command(
        "doctor",
        help=(
            "Check the configured chain: plugins loaded, keys set, every backend (and replica) "
            "healthy, the configured model present. Exit 0 when the primary is usable, 1 when "
            "not, 2 on a configuration error. With --vram: plan vLLM's GPU memory (reads the "
            "VLLM_* variables; exit 0 fits, 1 reduced concurrency, 2 does not fit, 3 bad input)."
        ),
    )
    def doctor(
        ctx: typer.Context,
        vram: Annotated[bool, typer.Option("--vram", help="Plan vLLM GPU memory instead.")] = False,
        model: Annotated[
            str | None, typer.Option("--model", help="Model id (VLLM_MODEL_NAME).")
        ] = None,
        gpus: Annotated[
            str | None,
            typer.Option("--gpus", help="GPU memory sizes in GiB, e.g. 32,24 (or nvidia-smi)."),
        ] = None,
        dtype: Annotated[
            str | None, typer.Option("--dtype", help="auto, float16, bfloat16, float32.")
        ] = None,
        quantization: Annotated[
            str | None, typer.Option("--quantization", help="awq, gptq, fp8, int8.")
        ] = None,
        kv_cache_dtype: Annotated[
            str | None, typer.Option("--kv-cache-dtype", help="auto or fp8.")
        ] = None,
        max_model_len: Annotated[int | None, typer.Option("--max-model-len")] = None,
        max_num_seqs: Annotated[int | None, typer.Option("--max-num-seqs")] = None,
        max_num_batched_tokens: Annotated[
            int | None, typer.Option("--max-num-batched-tokens")
        ] = None,
        gpu_memory_utilization: Annotated[
            float | None, typer.Option("--gpu-memory-utilization")
        ] = None,
        tensor_parallel_size: Annotated[int | None, typer.Option("--tensor-parallel-size")] = None,
        pipeline_parallel_size: Annotated[
            int | None, typer.Option("--pipeline-parallel-size")
        ] = None,
        params_b: Annotated[
            float | None, typer.Option("--params-b", help="Unknown model: parameters, billions.")
        ] = None,
        layers: Annotated[int | None, typer.Option("--layers", help="Unknown model.")] = None,
        kv_heads: Annotated[int | None, typer.Option("--kv-heads", help="Unknown model.")] = None,
        head_dim: Annotated[int | None, typer.Option("--head-dim", help="Unknown model.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
        timeout: Annotated[
            float | None, typer.Option("--timeout", help="Per-probe timeout (s).")
        ] = None,
    ) -> None:
        from .doctor import doctor_command

        code = doctor_command(
            vram=vram,
            model=model,
            gpus=gpus,
            dtype=dtype,
            quantization=quantization,
            kv_cache_dtype=kv_cache_dtype,
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            pipeline_parallel_size=pipeline_parallel_size,
            params_b=params_b,
            layers=layers,
            kv_heads=kv_heads,
            head_dim=head_dim,
            as_json=as_json,
            timeout=timeout,
            env=env,
            env_file=env_file_of(ctx),
            transport=transport,
            extra_plugins=extra_plugins,
        )
        raise typer.Exit(code)
