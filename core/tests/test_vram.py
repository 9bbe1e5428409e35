"""The vLLM memory planner, checked against numbers worked out by hand from real model shapes."""

from __future__ import annotations

import io
import os

import pytest
from rich.console import Console

from inference_core.ops import vram
from inference_core.ops.vram import GIB, find_shape, parse_gpus, plan, plan_input_from_env

# Llama-3.1-70B: 80 layers, 64 heads, 8 KV heads, head dim 128, hidden 8192, intermediate 28672,
# vocab 128256, 70.6 B params.
EMBED_70B = 128256 * 8192 * 2  # embed_tokens + lm_head = 2_101_346_304 params
AWQ_BYTES = 0.5 + 2.5 / 128  # 4-bit weight + fp16 scale + 4-bit zero per group of 128
AWQ_70B = (70.6e9 - EMBED_70B) * AWQ_BYTES + EMBED_70B * 2  # = 39_789_883_786 bytes


def seventy_b(quantization: str | None = None, util: float = 0.95, **kw):
    return plan_input_from_env(
        {},
        model="meta-llama/Llama-3.1-70B-Instruct",
        gpus="32,24",
        dtype="float16",
        quantization=quantization,
        max_model_len=kw.pop("max_model_len", 4096),
        max_num_seqs=kw.pop("max_num_seqs", 32),
        gpu_memory_utilization=util,
        tensor_parallel_size=2,
        **kw,
    )


def test_llama_70b_fp16_on_32_plus_24_does_not_fit() -> None:
    p = plan(seventy_b())
    assert p.weights_total == pytest.approx(141.2e9)  # 70.6 B x 2 bytes: ~141 GB
    assert p.weights_per_gpu == pytest.approx(70.6e9)  # 65.75 GiB on each card
    assert p.weights_per_gpu / GIB == pytest.approx(65.75, abs=0.01)
    budgets = [r.budget / GIB for r in p.rows]
    assert budgets == pytest.approx([30.4, 22.8])  # 0.95 x 32, 0.95 x 24
    assert p.verdict == "does_not_fit"
    assert not p.starts
    assert all(not r.ok for r in p.rows)
    assert p.max_full_sequences == 0
    assert any("weights" in n for n in p.notes)


def test_llama_70b_kv_cache_per_token_and_per_sequence() -> None:
    p = plan(seventy_b())
    # 2 (K,V) x 80 layers x 8/2 KV heads per rank x 128 x 2 bytes = 163840 B = 160 KiB
    assert p.kv_per_token == 2 * 80 * 4 * 128 * 2 == 163840
    assert p.kv_per_sequence / GIB == pytest.approx(0.625)  # x 4096 tokens
    assert p.bounding.kv_needed / GIB == pytest.approx(20.0)  # x 32 sequences


def test_llama_70b_awq_weights_about_40_gb_and_still_not_full_fit_on_24gb_card() -> None:
    p = plan(seventy_b("awq", util=0.9))
    assert p.weights_total == pytest.approx(AWQ_70B)
    assert p.weights_total / 1e9 == pytest.approx(39.79, abs=0.01)  # the AWQ checkpoint's size
    assert p.weights_per_gpu / GIB == pytest.approx(18.53, abs=0.01)  # ~20 GB per GPU
    # overhead: 1 GiB reserve + 4096 x (8192 + 2 x 28672 / 2) x 2 B + 32 x 128256/2 x 4 B
    overhead = GIB + 4096 * (8192 + 28672) * 2 + 32 * 64128 * 4
    assert p.overhead_per_gpu == pytest.approx(overhead)
    small = p.rows[1]
    assert small.budget / GIB == pytest.approx(21.6)  # 0.9 x 24
    room = 21.6 * GIB - AWQ_70B / 2 - overhead  # ~1.78 GiB left for KV on the 24 GB card
    assert small.kv_available == pytest.approx(room)
    assert p.bounding is small
    assert p.verdict == "reduced"  # starts, but holds only 2 of 32 sequences of 4096 tokens
    assert p.max_full_sequences == int(room // (0.625 * GIB)) == 2
    assert not p.fits
    # the 32 GB card has room to spare that TP cannot use
    assert p.rows[0].kv_available > small.kv_available + 7 * GIB


def test_llama_70b_awq_at_095_holds_four_sequences() -> None:
    p = plan(seventy_b("awq", util=0.95))
    room = 22.8 * GIB - AWQ_70B / 2 - p.overhead_per_gpu  # ~2.98 GiB
    assert p.bounding.kv_available / GIB == pytest.approx(room / GIB)
    assert p.max_full_sequences == 4


def test_suggestions_for_70b_fp16_all_fit_and_include_quantisation_and_more_gpus() -> None:
    inp = seventy_b()
    suggestions = vram.suggest(inp)
    assert suggestions
    assert all(s.plan.fits for s in suggestions)
    texts = [s.text for s in suggestions]
    assert any("AWQ" in t and "--max-num-seqs 4" in t for t in texts), texts
    more = [s for s in suggestions if "tensor_parallel_size" in s.changes]
    assert more
    assert more[0].changes["tensor_parallel_size"] == 8
    # fp8 weights (72.7 GB) still do not fit on 2 x 24 GiB: never suggested there
    assert not any(s.changes.get("quantization") == "fp8" for s in suggestions)


def test_llama_8b_fp16_single_24gb() -> None:
    inp = plan_input_from_env(
        {}, model="meta-llama/Llama-3.1-8B-Instruct", gpus="24", dtype="bfloat16",
        max_model_len=8192, max_num_seqs=4, gpu_memory_utilization=0.9,
    )  # fmt: skip
    p = plan(inp)
    assert p.weights_total == pytest.approx(16.06e9)
    assert p.kv_per_token == 2 * 32 * 8 * 128 * 2  # 128 KiB
    assert p.kv_per_sequence == pytest.approx(GIB)  # 8192 tokens = 1 GiB
    assert p.verdict == "fits"
    assert p.rows[0].headroom > 0


def test_mistral_7b_reduced_then_fits_with_fewer_sequences() -> None:
    base = {"model": "mistralai/Mistral-7B-Instruct-v0.3", "gpus": "24", "dtype": "float16"}
    p16 = plan(plan_input_from_env({}, **base, max_model_len=4096, max_num_seqs=16))
    # weights 14.48 GB = 13.49 GiB; overhead 1 GiB + 0.25 GiB + 2 MiB; KV 0.5 GiB per sequence
    assert p16.weights_total == pytest.approx(14.48e9)
    assert p16.kv_per_sequence == pytest.approx(0.5 * GIB)
    room = 21.6 * GIB - 14.48e9 - (GIB + 4096 * 32768 * 2 + 16 * 32768 * 4)
    assert p16.bounding.kv_available == pytest.approx(room)
    assert p16.verdict == "reduced"
    assert p16.max_full_sequences == 13
    p8 = plan(plan_input_from_env({}, **base, max_model_len=4096, max_num_seqs=8))
    assert p8.verdict == "fits"


def test_mixtral_counts_every_expert() -> None:
    # 46.7 B params x 2 B = 93.4 GB; TP=2 puts 43.49 GiB on each 48 GiB card (budget 43.2 GiB).
    # Counting only the ~12.9 B active params would wrongly say it fits.
    inp = plan_input_from_env(
        {}, model="mistralai/Mixtral-8x7B-Instruct-v0.1", gpus="48,48", dtype="float16",
        max_model_len=4096, max_num_seqs=8, gpu_memory_utilization=0.9, tensor_parallel_size=2,
    )  # fmt: skip
    p = plan(inp)
    assert p.weights_total == pytest.approx(93.4e9)
    assert p.weights_per_gpu / GIB == pytest.approx(43.49, abs=0.01)
    assert p.verdict == "does_not_fit"
    fits_on_four = plan(
        plan_input_from_env(
            {},
            model="mixtral-8x7b",
            gpus="48,48,48,48",
            dtype="float16",
            max_model_len=4096,
            max_num_seqs=8,
            gpu_memory_utilization=0.9,
            tensor_parallel_size=4,
        )
    )
    assert fits_on_four.verdict == "fits"


def test_kv_fp8_halves_kv_and_tp_beyond_kv_heads_replicates() -> None:
    shape = find_shape("Llama-3.1-70B")
    assert shape is not None
    assert vram.kv_bytes_per_token(shape, 1, tp=2) == 2 * 80 * 4 * 128
    # TP=16 > 8 KV heads: each rank still holds one head
    assert vram.kv_bytes_per_token(shape, 2, tp=16) == 2 * 80 * 1 * 128 * 2


def test_find_shape_accepts_common_spellings() -> None:
    assert find_shape("meta-llama/Llama-3.1-70B-Instruct").name == "Llama-3.1-70B"
    assert find_shape("hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4").name == (
        "Llama-3.1-70B"
    )
    assert find_shape("llama3.1:8b").name == "Llama-3.1-8B"
    assert find_shape("mistralai/Mistral-7B-Instruct-v0.3").name == "Mistral-7B"
    assert find_shape("mistralai/Mixtral-8x7B-Instruct-v0.1").name == "Mixtral-8x7B"
    assert find_shape("Qwen/Qwen2.5-7B") is None
    assert vram.quantization_from_name("x/Meta-Llama-3.1-70B-Instruct-AWQ-INT4") == "awq"


def test_parse_gpus_units() -> None:
    assert parse_gpus("32,24") == (32.0, 24.0)
    assert parse_gpus("24GB, 24564MiB") == pytest.approx((24.0, 23.98828125))
    with pytest.raises(ValueError, match="bad GPU size"):
        parse_gpus("lots")


def test_env_defaults_are_read_from_vllm_variables() -> None:
    env = {
        "VLLM_MODEL_NAME": "meta-llama/Llama-3.1-70B-Instruct",
        "VLLM_TENSOR_PARALLEL_SIZE": "2",
        "VLLM_GPU_MEMORY_UTILIZATION": "0.92",
        "VLLM_MAX_MODEL_LEN": "4096",
        "VLLM_MAX_NUM_SEQS": "32",
        "VLLM_DTYPE": "float16",
        "VLLM_QUANTIZATION": "awq",
        "INFERENCE_DOCTOR_GPUS": "32,24",
    }
    inp = plan_input_from_env(env)
    assert (inp.tensor_parallel_size, inp.max_model_len, inp.max_num_seqs) == (2, 4096, 32)
    assert inp.gpu_memory_utilization == 0.92
    assert inp.quantization == "awq"
    assert inp.gpus_gib == (32.0, 24.0)
    # explicit arguments win over the environment
    assert plan_input_from_env(env, max_num_seqs=4).max_num_seqs == 4


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="2 GPUs, but only 1"):
        plan_input_from_env({}, model="llama-3.1-70b", gpus="80", tensor_parallel_size=2)
    with pytest.raises(ValueError, match="not divisible"):
        plan_input_from_env({}, model="llama-3.1-8b", gpus="24,24,24", tensor_parallel_size=3)
    with pytest.raises(ValueError, match=r"unknown model shape.*--params-b"):
        plan_input_from_env({}, model="someone/secret-13b", gpus="24")
    custom = plan_input_from_env(
        {}, model="someone/secret-13b", gpus="24", params_b=13, layers=40, kv_heads=40,
        head_dim=128, max_model_len=2048, max_num_seqs=1,
    )  # fmt: skip
    assert plan(custom).weights_total == pytest.approx(26e9)


def run_cli(**kw) -> tuple[int, str]:
    buf = io.StringIO()
    code = vram.vram_command(console=Console(file=buf, width=160), env={}, **kw)
    return code, buf.getvalue()


def test_vram_command_prints_per_gpu_budget_and_exit_codes() -> None:
    args = {
        "model": "meta-llama/Llama-3.1-70B-Instruct", "gpus": "32,24", "dtype": "float16",
        "max_model_len": 4096, "max_num_seqs": 32, "gpu_memory_utilization": 0.95,
        "tensor_parallel_size": 2,
    }  # fmt: skip
    code, out = run_cli(**args)
    assert code == 2
    assert "DOES NOT FIT" in out
    assert "141.2 GB" in out
    assert "65.75 GiB" in out
    assert "22.80 GiB" in out
    assert "30.40 GiB" in out
    assert "AWQ" in out
    code, out = run_cli(**{**args, "quantization": "awq"})
    assert code == 1
    assert "holds only 4 of the 32" in out
    code, out = run_cli(**{**args, "quantization": "awq", "max_num_seqs": 4})
    assert code == 0
    assert "FITS" in out
    code, out = run_cli(model="nobody/unknown", gpus="24")
    assert code == 3
    assert "unknown model shape" in out


def test_gpus_detected_with_nvidia_smi(tmp_path, monkeypatch) -> None:
    """No --gpus: ask nvidia-smi (a fake one here: an RTX 5090 and an RTX 4090, in MiB)."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        '#!/bin/sh\n[ "$1" = "--query-gpu=memory.total" ] || exit 9\nprintf "32607\\n24564\\n"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert vram.detect_gpus() == pytest.approx((32607 / 1024, 24564 / 1024))
    inp = plan_input_from_env({"VLLM_MODEL_NAME": "llama-3.1-8b"})
    assert inp.gpus_gib == pytest.approx((31.84, 23.99), abs=0.01)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert vram.detect_gpus() is None
    with pytest.raises(ValueError, match="--gpus"):
        plan_input_from_env({})
