"""The vLLM memory planner: does a model fit the GPUs given, with these vLLM settings?

vLLM reserves ``--gpu-memory-utilization`` of *each* GPU's memory. Inside that budget it loads the
weights, profiles one forward pass (activations, CUDA graphs, NCCL buffers), and hands whatever is
left to the paged KV cache. With tensor parallelism (TP) the weights and the KV heads are split
evenly over the ranks and every rank gets the same number of KV blocks, so the *smallest* GPU of the
group bounds the whole deployment: a 32 GB + 24 GB pair behaves like two 24 GB cards.

The estimate, per GPU of a TP x PP group (all sizes in bytes):

* weights = params x bytes/param / (TP x PP). Bytes per parameter: fp32 4, fp16/bf16 2, fp8/int8 1
  (embeddings and ``lm_head`` stay 16-bit), AWQ/GPTQ 4-bit 0.5 plus a group-128 fp16 scale and a
  4-bit zero point (2.5 bytes per 128 weights); embeddings and ``lm_head`` stay 16-bit. For
  Llama-3.1-70B that gives 141.2 GB in fp16 and 39.8 GB in AWQ (the AWQ checkpoint's size).
  Mixture-of-experts models count *all* experts: every expert must be resident.
* KV cache per token = 2 (K and V) x layers/PP x ceil(kv_heads/TP) x head_dim x KV-dtype bytes
  (``--kv-cache-dtype auto`` = the model dtype; fp8 = 1 byte). Full concurrency needs
  ``--max-model-len`` x ``--max-num-seqs`` tokens of it; vLLM refuses to start when not even one
  sequence of ``--max-model-len`` fits.
* overhead = a fixed runtime reserve (CUDA context, CUDA graphs, NCCL; 1 GiB by default) + the
  profiled activation peak, estimated as ``max_num_batched_tokens x (hidden + 2 x intermediate x
  experts_per_token / TP) x activation bytes`` + fp32 logits for ``max_num_seqs`` rows.

Verdicts: ``fits`` (the whole configuration is resident), ``reduced`` (vLLM starts, but the KV cache
holds fewer than ``--max-num-seqs`` full-length sequences: requests queue or get preempted), and
``does_not_fit`` (vLLM would fail at start-up: out of memory loading weights, or no room for one
sequence of ``--max-model-len``).

Nothing here touches a GPU: it is arithmetic over a table of known model shapes (or shapes given on
the command line), so it runs on any machine, before anything is downloaded.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = [
    "COMPOSE_DEFAULTS",
    "GIB",
    "KNOWN_MODELS",
    "GpuRow",
    "ModelShape",
    "Plan",
    "PlanInput",
    "Suggestion",
    "detect_gpus",
    "find_shape",
    "parse_gpus",
    "plan",
    "plan_input_from_env",
    "render_plan",
    "suggest",
    "vram_command",
]

GIB = 1024**3
GB = 1e9

Verdict = Literal["fits", "reduced", "does_not_fit"]


@dataclass(frozen=True)
class ModelShape:
    """What the planner needs to know about a model's architecture (from its ``config.json``)."""

    name: str
    params: float  # total parameters (all experts of a MoE)
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    max_position: int
    experts_per_token: int = 1
    tied_embeddings: bool = False

    @property
    def embedding_params(self) -> float:
        """Parameters of the token embedding plus ``lm_head`` (kept 16-bit by quantisations)."""
        return self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)


# Shapes from each model's config.json; parameter counts as published on the model cards.
KNOWN_MODELS: dict[str, ModelShape] = {
    "llama-3.1-8b": ModelShape("Llama-3.1-8B", 8.03e9, 32, 32, 8, 128, 4096, 14336, 128256, 131072),
    "llama-3.1-70b": ModelShape(
        "Llama-3.1-70B", 70.6e9, 80, 64, 8, 128, 8192, 28672, 128256, 131072
    ),
    "mistral-7b": ModelShape("Mistral-7B", 7.24e9, 32, 32, 8, 128, 4096, 14336, 32768, 32768),
    "mixtral-8x7b": ModelShape(
        "Mixtral-8x7B", 46.7e9, 32, 32, 8, 128, 4096, 14336, 32000, 32768, experts_per_token=2
    ),
}

_MODEL_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"llama[-_ ]?3\.1[-_: ]?8b"), "llama-3.1-8b"),
    (re.compile(r"llama[-_ ]?3\.1[-_: ]?70b"), "llama-3.1-70b"),
    (re.compile(r"mixtral[-_ ]?8x7b"), "mixtral-8x7b"),
    (re.compile(r"mistral[-_ ]?7b"), "mistral-7b"),
]

# Bytes per *weight* for each way the weights can be stored.
_DTYPE_BYTES: dict[str, float] = {
    "float32": 4,
    "fp32": 4,
    "float": 4,
    "float16": 2,
    "fp16": 2,
    "half": 2,
    "bfloat16": 2,
    "bf16": 2,
    "auto": 2,  # vLLM's auto: the checkpoint's 16-bit dtype (fp32 checkpoints run as fp16)
}
_FOUR_BIT_GROUP_OVERHEAD = 2.5 / 128  # fp16 scale + 4-bit zero point per group of 128 weights
_QUANT_BYTES: dict[str, float] = {
    "awq": 0.5 + _FOUR_BIT_GROUP_OVERHEAD,
    "awq_marlin": 0.5 + _FOUR_BIT_GROUP_OVERHEAD,
    "gptq": 0.5 + _FOUR_BIT_GROUP_OVERHEAD,
    "gptq_marlin": 0.5 + _FOUR_BIT_GROUP_OVERHEAD,
    "bitsandbytes": 0.5 + _FOUR_BIT_GROUP_OVERHEAD,
    "fp8": 1.0,
    "int8": 1.0,
    "w8a8": 1.0,
}
_KV_BYTES: dict[str, float] = {
    "bfloat16": 2,
    "float16": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
    "fp8_inc": 1,
    "fp8_per_token_head": 1,
    "int8_per_token_head": 1,
    "int4_per_token_head": 0.5,
    "nvfp4": 0.5,
}

# The vLLM settings compose.yaml passes when the variables are unset. The planner uses the same
# defaults so that `inference doctor --vram` with no flags checks what `docker compose up` runs
# (tests/deploy checks the two stay equal).
COMPOSE_DEFAULTS: dict[str, str] = {
    "VLLM_MODEL_NAME": "meta-llama/Llama-3.1-8B-Instruct",
    "VLLM_TENSOR_PARALLEL_SIZE": "1",
    "VLLM_PIPELINE_PARALLEL_SIZE": "1",
    "VLLM_GPU_MEMORY_UTILIZATION": "0.90",
    "VLLM_MAX_MODEL_LEN": "8192",
    "VLLM_MAX_NUM_SEQS": "256",
    "VLLM_DTYPE": "auto",
    "VLLM_KV_CACHE_DTYPE": "auto",
}


def find_shape(model: str) -> ModelShape | None:
    """The known shape for a model id (``meta-llama/Llama-3.1-70B-Instruct``, ``llama3.1:8b``)."""
    key = model.strip().lower().rsplit("/", 1)[-1]
    key = key.replace("meta-llama-", "llama-")
    for pattern, name in _MODEL_PATTERNS:
        if pattern.search(key):
            return KNOWN_MODELS[name]
    return None


def quantization_from_name(model: str) -> str | None:
    """AWQ / GPTQ / FP8 checkpoints say so in their names; vLLM then picks the method itself."""
    low = model.lower()
    for marker, method in (("awq", "awq"), ("gptq", "gptq"), ("fp8", "fp8"), ("int4", "gptq")):
        if marker in low:
            return method
    return None


def weight_bytes(shape: ModelShape, dtype: str, quantization: str | None) -> float:
    """Total bytes of the weights, as loaded on the GPUs (before the TP/PP split)."""
    dtype_b = _dtype_bytes(dtype)
    if quantization is None:
        return shape.params * dtype_b
    quant_b = _QUANT_BYTES.get(quantization.lower())
    if quant_b is None:
        raise ValueError(
            f"unknown quantization {quantization!r}; known: {', '.join(sorted(_QUANT_BYTES))}"
        )
    embed = shape.embedding_params
    return (shape.params - embed) * quant_b + embed * min(dtype_b, 2)


def kv_bytes_per_token(shape: ModelShape, kv_dtype_bytes: float, tp: int = 1, pp: int = 1) -> float:
    """KV-cache bytes one token occupies on one GPU of a TP x PP group."""
    layers = math.ceil(shape.layers / pp)
    heads = math.ceil(shape.kv_heads / tp)  # TP > kv_heads replicates heads: one per rank
    return 2 * layers * heads * shape.head_dim * kv_dtype_bytes


def _dtype_bytes(dtype: str) -> float:
    value = _DTYPE_BYTES.get(dtype.lower())
    if value is None:
        raise ValueError(f"unknown dtype {dtype!r}; accepted: {', '.join(_DTYPE_BYTES)}")
    return value


def _kv_dtype_bytes(kv_cache_dtype: str, dtype: str) -> float:
    if kv_cache_dtype.lower() == "auto":
        return _dtype_bytes(dtype)
    value = _KV_BYTES.get(kv_cache_dtype.lower())
    if value is None:
        raise ValueError(
            f"unknown kv-cache dtype {kv_cache_dtype!r}; accepted: auto, {', '.join(_KV_BYTES)}"
        )
    return value


@dataclass(frozen=True)
class PlanInput:
    """One vLLM configuration to check (the values of its command-line arguments)."""

    model: str
    shape: ModelShape
    gpus_gib: tuple[float, ...]
    dtype: str = "auto"
    quantization: str | None = None
    kv_cache_dtype: str = "auto"
    max_model_len: int = 8192
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None  # default: max_model_len
    gpu_memory_utilization: float = 0.90
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    runtime_overhead_gib: float = 1.0

    def __post_init__(self) -> None:
        if not self.gpus_gib:
            raise ValueError("no GPUs given (e.g. --gpus 32,24 for a 32 GB and a 24 GB card)")
        if any(g <= 0 for g in self.gpus_gib):
            raise ValueError("GPU memory sizes must be positive")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("--gpu-memory-utilization must be in (0, 1]")
        for name in ("max_model_len", "max_num_seqs", "tensor_parallel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.pipeline_parallel_size < 1:
            raise ValueError("--pipeline-parallel-size must be at least 1")
        need = self.tensor_parallel_size * self.pipeline_parallel_size
        if need > len(self.gpus_gib):
            raise ValueError(
                f"tensor-parallel-size x pipeline-parallel-size = {need} GPUs, "
                f"but only {len(self.gpus_gib)} given"
            )
        if self.shape.attention_heads % self.tensor_parallel_size:
            raise ValueError(
                f"{self.shape.name} has {self.shape.attention_heads} attention heads, "
                f"not divisible by tensor-parallel-size {self.tensor_parallel_size} "
                "(vLLM requires it)"
            )


@dataclass(frozen=True)
class GpuRow:
    """The budget of one GPU of the group, in bytes."""

    index: int
    capacity: float
    budget: float  # capacity x gpu_memory_utilization
    weights: float
    overhead: float
    kv_needed: float  # for max_num_seqs full-length sequences
    kv_available: float  # budget - weights - overhead (negative: weights do not fit)

    @property
    def needed(self) -> float:
        return self.weights + self.overhead + self.kv_needed

    @property
    def headroom(self) -> float:
        return self.budget - self.needed

    @property
    def ok(self) -> bool:
        return self.headroom >= 0


@dataclass(frozen=True)
class Plan:
    """The result of :func:`plan`."""

    input: PlanInput
    weights_total: float
    weights_per_gpu: float
    kv_per_token: float  # per GPU
    kv_per_sequence: float  # per GPU, one max_model_len sequence
    overhead_per_gpu: float
    rows: tuple[GpuRow, ...]
    unused_gpus: int
    verdict: Verdict
    max_full_sequences: int  # full-length sequences the KV cache holds (on the bounding GPU)
    max_tokens_in_cache: int
    notes: tuple[str, ...] = field(default=())

    @property
    def bounding(self) -> GpuRow:
        """The GPU that limits the group (least KV room)."""
        return min(self.rows, key=lambda r: r.kv_available)

    @property
    def fits(self) -> bool:
        return self.verdict == "fits"

    @property
    def starts(self) -> bool:
        return self.verdict != "does_not_fit"


def plan(inp: PlanInput) -> Plan:
    """Compute the per-GPU memory budget of one vLLM configuration."""
    shape = inp.shape
    tp, pp = inp.tensor_parallel_size, inp.pipeline_parallel_size
    ranks = tp * pp
    quant = inp.quantization
    act_bytes = min(_dtype_bytes(inp.dtype), 2) if quant else _dtype_bytes(inp.dtype)

    w_total = weight_bytes(shape, inp.dtype, quant)
    w_gpu = w_total / ranks
    kv_tok = kv_bytes_per_token(shape, _kv_dtype_bytes(inp.kv_cache_dtype, inp.dtype), tp, pp)
    kv_seq = kv_tok * inp.max_model_len
    kv_full = kv_seq * inp.max_num_seqs
    batched = inp.max_num_batched_tokens or inp.max_model_len
    activations = (
        batched
        * (shape.hidden_size + 2 * shape.intermediate_size * shape.experts_per_token / tp)
        * act_bytes
        + inp.max_num_seqs * (shape.vocab_size / tp) * 4
    )
    overhead = inp.runtime_overhead_gib * GIB + activations

    rows: list[GpuRow] = []
    for i, cap_gib in enumerate(inp.gpus_gib[:ranks]):
        cap = cap_gib * GIB
        budget = cap * inp.gpu_memory_utilization
        rows.append(GpuRow(i, cap, budget, w_gpu, overhead, kv_full, budget - w_gpu - overhead))
    kv_room = min(r.kv_available for r in rows)
    max_seqs = max(0, math.floor(kv_room / kv_seq)) if kv_room > 0 else 0
    max_tokens = max(0, math.floor(kv_room / kv_tok)) if kv_room > 0 else 0

    notes: list[str] = []
    if kv_room >= kv_full:
        verdict: Verdict = "fits"
    elif max_seqs >= 1:
        verdict = "reduced"
        notes.append(
            f"vLLM starts, but its KV cache holds only {max_seqs} of the {inp.max_num_seqs} "
            f"sequences of {inp.max_model_len} tokens ({max_tokens} tokens in all): "
            "longer queues and preemption under load"
        )
    else:
        verdict = "does_not_fit"
        if w_gpu + overhead > min(r.budget for r in rows):
            notes.append("the weights (plus runtime overhead) alone exceed the GPU budget")
        else:
            notes.append(
                f"no room for one sequence of {inp.max_model_len} tokens "
                f"(room for {max_tokens} tokens): vLLM refuses to start"
            )
    caps = [r.capacity for r in rows]
    if len(set(caps)) > 1:
        spare = (max(caps) - min(caps)) * inp.gpu_memory_utilization / GIB
        notes.append(
            "tensor parallelism splits weights and KV evenly and gives every rank the same "
            f"number of KV blocks: the smallest GPU bounds the group (up to {spare:.1f} GiB "
            "of the larger card stays unused)"
        )
    unused = len(inp.gpus_gib) - ranks
    if unused:
        notes.append(
            f"{unused} GPU(s) given but unused: tensor-parallel-size x pipeline-parallel-size "
            f"= {ranks}"
        )
    if inp.max_model_len > shape.max_position:
        notes.append(
            f"--max-model-len {inp.max_model_len} exceeds {shape.name}'s "
            f"{shape.max_position}-token context: vLLM rejects it"
        )
    return Plan(
        inp,
        w_total,
        w_gpu,
        kv_tok,
        kv_seq,
        overhead,
        tuple(rows),
        unused,
        verdict,
        max_seqs,
        max_tokens,
        tuple(notes),
    )


@dataclass(frozen=True)
class Suggestion:
    """A change of settings and the plan it gives (only suggestions that fit are returned)."""

    text: str
    changes: dict[str, Any]
    plan: Plan


def _try(inp: PlanInput, **changes: Any) -> Plan | None:
    try:
        return plan(replace(inp, **changes))
    except ValueError:
        return None


def suggest(inp: PlanInput, *, limit: int = 6) -> list[Suggestion]:
    """Settings close to ``inp`` that fit fully, least intrusive first."""
    out: list[Suggestion] = []
    seen: set[tuple[tuple[str, Any], ...]] = set()

    def add(text: str, changes: dict[str, Any]) -> None:
        key = tuple(sorted(changes.items()))
        if key in seen or not changes:
            return
        result = _try(inp, **changes)
        if result is not None and result.fits:
            seen.add(key)
            out.append(Suggestion(text, changes, result))

    def shrink(base: dict[str, Any], label: str) -> None:
        """Fewer sequences, or a shorter context, under the settings ``base``."""
        p = _try(inp, **base)
        if p is None or (p.max_full_sequences < 1 and p.max_tokens_in_cache < 512):
            return
        if p.fits:
            add(label, base)
            return
        if p.max_full_sequences >= 1:
            seqs = p.max_full_sequences
            add(f"{label}--max-num-seqs {seqs}".strip(), {**base, "max_num_seqs": seqs})
        per_seq_tokens = p.max_tokens_in_cache // inp.max_num_seqs
        length = (per_seq_tokens // 256) * 256
        if length >= 512:
            add(
                f"{label}--max-model-len {length}".strip(),
                {**base, "max_model_len": length},
            )
        elif p.max_tokens_in_cache >= 512:
            length = min(inp.max_model_len, (p.max_tokens_in_cache // 2 // 256) * 256)
            if 512 <= length < inp.max_model_len:
                seqs = p.max_tokens_in_cache // length
                add(
                    f"{label}--max-model-len {length} --max-num-seqs {seqs}".strip(),
                    {**base, "max_model_len": length, "max_num_seqs": seqs},
                )

    shrink({}, "")
    if inp.kv_cache_dtype == "auto":
        shrink({"kv_cache_dtype": "fp8"}, "--kv-cache-dtype fp8 ")
    quant_now = (inp.quantization or "").lower()
    if not quant_now and _dtype_bytes(inp.dtype) >= 2:
        shrink({"quantization": "fp8"}, "--quantization fp8 (Ada/Hopper or newer) ")
    if quant_now not in {"awq", "awq_marlin", "gptq", "gptq_marlin", "bitsandbytes"}:
        shrink({"quantization": "awq"}, "an AWQ 4-bit checkpoint ")
        shrink(
            {"quantization": "awq", "kv_cache_dtype": "fp8"},
            "an AWQ 4-bit checkpoint --kv-cache-dtype fp8 ",
        )
    # More GPUs of the bounding size, with the settings as asked.
    smallest = min(inp.gpus_gib[: inp.tensor_parallel_size * inp.pipeline_parallel_size])
    for tp in (2, 4, 8, 16):
        if tp <= inp.tensor_parallel_size or inp.shape.attention_heads % tp:
            continue
        gpus = (smallest,) * (tp * inp.pipeline_parallel_size)
        p = _try(inp, tensor_parallel_size=tp, gpus_gib=gpus)
        if p is not None and p.fits:
            seen.add((("tensor_parallel_size", tp),))
            out.append(
                Suggestion(
                    f"{tp * inp.pipeline_parallel_size} GPUs of {smallest:g} GiB with "
                    f"--tensor-parallel-size {tp}",
                    {"tensor_parallel_size": tp, "gpus_gib": gpus},
                    p,
                )
            )
            break
    return out[:limit]


def parse_gpus(spec: str) -> tuple[float, ...]:
    """``"32,24"`` -> (32.0, 24.0) GiB. Accepts GB/GiB/MiB suffixes (``24GB``, ``24564MiB``).

    A bare number or a ``GB`` suffix means GiB, the way GPU memory is sold ("24 GB" RTX 4090 =
    24 GiB = 24564 MiB in nvidia-smi).
    """
    sizes: list[float] = []
    for part in spec.split(","):
        item = part.strip().lower().replace(" ", "")
        if not item:
            continue
        m = re.fullmatch(r"(\d+(?:\.\d+)?)(gib|gb|g|mib|mb|m)?", item)
        if m is None:
            raise ValueError(f"bad GPU size {part.strip()!r}: expected e.g. 24, 24GB or 24564MiB")
        value, unit = float(m.group(1)), m.group(2) or "gib"
        sizes.append(value / 1024 if unit in {"mib", "mb", "m"} else value)
    if not sizes:
        raise ValueError("no GPU sizes given (e.g. --gpus 32,24)")
    return tuple(sizes)


def detect_gpus() -> tuple[float, ...] | None:
    """Total memory of the visible NVIDIA GPUs (GiB) via ``nvidia-smi``; None when unavailable."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    sizes = tuple(float(line) / 1024 for line in out.split() if line.strip())
    return sizes or None


def _env_int(env: Mapping[str, str], name: str) -> int:
    raw = env.get(name) or COMPOSE_DEFAULTS[name]
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None


def plan_input_from_env(
    env: Mapping[str, str] | None = None,
    *,
    model: str | None = None,
    gpus: str | Sequence[float] | None = None,
    dtype: str | None = None,
    quantization: str | None = None,
    kv_cache_dtype: str | None = None,
    max_model_len: int | None = None,
    max_num_seqs: int | None = None,
    max_num_batched_tokens: int | None = None,
    gpu_memory_utilization: float | None = None,
    tensor_parallel_size: int | None = None,
    pipeline_parallel_size: int | None = None,
    params_b: float | None = None,
    layers: int | None = None,
    kv_heads: int | None = None,
    head_dim: int | None = None,
) -> PlanInput:
    """Build a :class:`PlanInput` from explicit values, then ``VLLM_*`` variables, then the
    defaults compose.yaml uses. Raises ValueError with a message fit for the user."""
    env = os.environ if env is None else env
    model = model or env.get("VLLM_MODEL_NAME") or COMPOSE_DEFAULTS["VLLM_MODEL_NAME"]
    shape = find_shape(model)
    custom = {"params_b": params_b, "layers": layers, "kv_heads": kv_heads, "head_dim": head_dim}
    if shape is None:
        missing = [k for k, v in custom.items() if v is None]
        if missing:
            known = ", ".join(s.name for s in KNOWN_MODELS.values())
            flags = ", ".join("--" + k.replace("_", "-") for k in missing)
            raise ValueError(
                f"unknown model shape for {model!r} (known: {known}); give {flags} "
                "(from the model's config.json)"
            )
        assert params_b is not None
        assert layers
        assert kv_heads
        assert head_dim
        heads = kv_heads * 4
        hidden = heads * head_dim
        shape = ModelShape(
            model, params_b * 1e9, layers, heads, kv_heads, head_dim, hidden,
            int(hidden * 3.5), 32000, 1 << 20,
        )  # fmt: skip
    else:
        overrides = {
            "params": params_b * 1e9 if params_b else None,
            "layers": layers,
            "kv_heads": kv_heads,
            "head_dim": head_dim,
        }
        shape = replace(shape, **{k: v for k, v in overrides.items() if v is not None})

    if gpus is None:
        env_gpus = env.get("INFERENCE_DOCTOR_GPUS")
        gpus_t = parse_gpus(env_gpus) if env_gpus else detect_gpus()
        if gpus_t is None:
            raise ValueError(
                "no GPU sizes: give --gpus (e.g. --gpus 32,24 in GiB), set "
                "INFERENCE_DOCTOR_GPUS, or run where nvidia-smi works"
            )
    elif isinstance(gpus, str):
        gpus_t = parse_gpus(gpus)
    else:
        gpus_t = tuple(float(g) for g in gpus)

    quant = quantization or env.get("VLLM_QUANTIZATION") or quantization_from_name(model)
    util_raw = gpu_memory_utilization
    if util_raw is None:
        raw = (
            env.get("VLLM_GPU_MEMORY_UTILIZATION")
            or COMPOSE_DEFAULTS["VLLM_GPU_MEMORY_UTILIZATION"]
        )
        try:
            util_raw = float(raw)
        except ValueError:
            raise ValueError(f"VLLM_GPU_MEMORY_UTILIZATION={raw!r} is not a number") from None
    batched = max_num_batched_tokens
    if batched is None and env.get("VLLM_MAX_NUM_BATCHED_TOKENS"):
        batched = int(env["VLLM_MAX_NUM_BATCHED_TOKENS"])
    return PlanInput(
        model=model,
        shape=shape,
        gpus_gib=gpus_t,
        dtype=dtype or env.get("VLLM_DTYPE") or COMPOSE_DEFAULTS["VLLM_DTYPE"],
        quantization=quant.lower() if quant else None,
        kv_cache_dtype=kv_cache_dtype
        or env.get("VLLM_KV_CACHE_DTYPE")
        or COMPOSE_DEFAULTS["VLLM_KV_CACHE_DTYPE"],
        max_model_len=max_model_len or _env_int(env, "VLLM_MAX_MODEL_LEN"),
        max_num_seqs=max_num_seqs or _env_int(env, "VLLM_MAX_NUM_SEQS"),
        max_num_batched_tokens=batched,
        gpu_memory_utilization=util_raw,
        tensor_parallel_size=tensor_parallel_size or _env_int(env, "VLLM_TENSOR_PARALLEL_SIZE"),
        pipeline_parallel_size=pipeline_parallel_size
        or _env_int(env, "VLLM_PIPELINE_PARALLEL_SIZE"),
    )


def _gib(value: float) -> str:
    return f"{value / GIB:.2f} GiB"


def render_plan(result: Plan, suggestions: Sequence[Suggestion], console: Any) -> None:
    """Print the per-GPU budget table, the verdict, the notes and the suggestions."""
    from rich.table import Table

    inp = result.input
    quant = inp.quantization or f"none ({inp.dtype})"
    console.print(
        f"[bold]{inp.model}[/bold] ({inp.shape.name}, {inp.shape.params / 1e9:g} B params, "
        f"quantization {quant}, kv-cache {inp.kv_cache_dtype})"
    )
    console.print(
        f"weights {result.weights_total / GB:.1f} GB in all = {_gib(result.weights_per_gpu)} per "
        f"GPU over TP={inp.tensor_parallel_size} x PP={inp.pipeline_parallel_size}; KV cache "
        f"{result.kv_per_token / 1024:.0f} KiB/token/GPU, {_gib(result.kv_per_sequence)} per "
        f"{inp.max_model_len}-token sequence, x {inp.max_num_seqs} sequences"
    )
    table = Table(title=f"per-GPU budget at --gpu-memory-utilization {inp.gpu_memory_utilization}")
    for col in ("GPU", "memory", "budget", "weights", "overhead", "KV needed", "KV room", "left"):
        table.add_column(col, justify="right")
    for row in result.rows:
        style = "green" if row.ok else "red"
        table.add_row(
            str(row.index),
            _gib(row.capacity),
            _gib(row.budget),
            _gib(row.weights),
            _gib(row.overhead),
            _gib(row.kv_needed),
            _gib(max(row.kv_available, 0)),
            f"[{style}]{row.headroom / GIB:+.2f} GiB[/{style}]",
        )
    console.print(table)
    label = {
        "fits": "[green]FITS[/green]",
        "reduced": "[yellow]DOES NOT FIT as configured (reduced concurrency)[/yellow]",
        "does_not_fit": "[red]DOES NOT FIT[/red]",
    }[result.verdict]
    console.print(f"verdict: {label}")
    for note in result.notes:
        console.print(f"  - {note}")
    if result.verdict != "fits":
        if suggestions:
            console.print("settings that fit:")
            for s in suggestions:
                b = s.plan.bounding
                console.print(
                    f"  - {s.text}: {_gib(b.needed)} of {_gib(b.budget)} on the smallest GPU"
                )
        else:
            console.print("no nearby setting fits: use a smaller model or larger GPUs")


def vram_command(
    *,
    model: str | None = None,
    gpus: str | None = None,
    dtype: str | None = None,
    quantization: str | None = None,
    kv_cache_dtype: str | None = None,
    max_model_len: int | None = None,
    max_num_seqs: int | None = None,
    max_num_batched_tokens: int | None = None,
    gpu_memory_utilization: float | None = None,
    tensor_parallel_size: int | None = None,
    pipeline_parallel_size: int | None = None,
    params_b: float | None = None,
    layers: int | None = None,
    kv_heads: int | None = None,
    head_dim: int | None = None,
    env: Mapping[str, str] | None = None,
    console: Any = None,
) -> int:
    """``inference doctor --vram``: exit 0 fits, 1 fits only with reduced concurrency,
    2 does not fit, 3 bad input."""
    if console is None:
        from rich.console import Console

        console = Console()
    try:
        inp = plan_input_from_env(
            env,
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
        )
        result = plan(inp)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 3
    render_plan(result, suggest(inp) if not result.fits else [], console)
    return {"fits": 0, "reduced": 1, "does_not_fit": 2}[result.verdict]
