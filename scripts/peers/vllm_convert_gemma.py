"""Turn the Gemma 3 270M Q4_K_M GGUF into a plain bf16 safetensors HF folder that vLLM-CPU loads.

usage: vllm_convert_gemma.py GGUF_PATH OUT_DIR

Why: vLLM 0.32 dropped in-tree GGUF loading (the vllm-gguf-plugin is CUDA-only), so the weights
are dequantised once with transformers (+ gguf) and saved as safetensors. Run it with the vLLM
venv's interpreter (it needs torch, transformers, gguf, accelerate).

The tokenizer that transformers builds from the GGUF needs three repairs:
  1. it no longer adds <bos>: Gemma without BOS produces garbage, so a TemplateProcessing
     post-processor that prepends <bos> is installed and add_bos_token is set;
  2. the GGUF is the BASE model and has no chat template: Gemma 3's own template is written as
     chat_template.jinja (the same text the llama.cpp peer uses, taken from provision.py);
  3. generation stops only on <eos> (1): generation_config.eos_token_id becomes [1, 106] so that
     <end_of_turn> (106) ends a turn too.

The result is checked (tokenisation of "Hello world" == [2, 9259, 1902], exactly one BOS in a
rendered chat prompt, a short greedy generation) and only then moved into OUT_DIR, with a
.complete stamp. Deterministic: two runs give a byte-identical model.safetensors.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROVISION = REPO / "plugins/inference-llamacpp/src/inference_llamacpp/provision.py"
BOS_ID, EOS_ID, END_OF_TURN_ID = 2, 1, 106
CONVERT_VERSION = "gemma3-270m-bf16 v1"


def _chat_template() -> str:
    spec = importlib.util.spec_from_file_location("_ic_provision", PROVISION)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {PROVISION}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.GEMMA3_CHAT_TEMPLATE


def dequantise(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quant = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    cfg = quant.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    # A fresh model from the cleaned config, so save_pretrained writes plain weights and no
    # GGUF/quantizer metadata.
    model = type(quant)(cfg).to(torch.bfloat16)
    missing, unexpected = model.load_state_dict(quant.state_dict(), strict=False)
    del quant
    allowed_missing = {"lm_head.weight"} if cfg.tie_word_embeddings else set()
    if unexpected or set(missing) - allowed_missing:
        raise SystemExit(f"weight mismatch: missing={missing} unexpected={unexpected}")
    model.eval()
    ids = torch.tensor([[BOS_ID, *tok("The capital of France is").input_ids]])
    with torch.no_grad():
        gen = model.generate(ids, max_new_tokens=8, do_sample=False)
    print("sanity (greedy, BOS added by hand):", repr(tok.decode(gen[0])), flush=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)


def fix_tokenizer(out: Path) -> None:
    tj = out / "tokenizer.json"
    data = json.loads(tj.read_text())
    bos = {"SpecialToken": {"id": "<bos>", "type_id": 0}}
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            bos,
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "<bos>", "type_id": 1}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {"<bos>": {"id": "<bos>", "ids": [BOS_ID], "tokens": ["<bos>"]}},
    }
    tj.write_text(json.dumps(data, ensure_ascii=False))

    tc = out / "tokenizer_config.json"
    conf = json.loads(tc.read_text())
    conf.update(add_bos_token=True, add_eos_token=False, model_max_length=32768)
    for key in ("local_files_only", "is_local", "gguf_file", "chat_template"):
        conf.pop(key, None)
    tc.write_text(json.dumps(conf, indent=2) + "\n")

    (out / "chat_template.jinja").write_text(_chat_template())

    gc = out / "generation_config.json"
    gen = json.loads(gc.read_text())
    gen["eos_token_id"] = [EOS_ID, END_OF_TURN_ID]
    gc.write_text(json.dumps(gen, indent=2) + "\n")


def verify(out: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    ids = tok("Hello world").input_ids
    if ids != [BOS_ID, 9259, 1902]:
        raise SystemExit(f"tokenizer check failed: 'Hello world' -> {ids}")
    prompt = tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    want = "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    if prompt != want:
        raise SystemExit(f"chat template check failed: {prompt!r}")
    chat_ids = tok(prompt, add_special_tokens=False).input_ids
    if chat_ids.count(BOS_ID) != 1 or chat_ids[0] != BOS_ID:
        raise SystemExit(f"chat prompt must start with exactly one <bos>: {chat_ids[:5]}")
    print("tokenizer ok: 'Hello world' ->", ids, flush=True)


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    gguf, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    t0 = time.monotonic()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dequantise(gguf, tmp)
    fix_tokenizer(tmp)
    verify(tmp)
    (tmp / ".complete").write_text(CONVERT_VERSION + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"converted {gguf.name} -> {out} in {time.monotonic() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
