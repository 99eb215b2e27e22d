"""Greedy decoding of SmolLM2-135M-Instruct, batch 1: zeroformer vs llama.cpp and transformers.

Both models hold the same weights (the GGUF, dequantized to fp32; transformers reads our HF export).
Runs alternate in one process; each prints tokens/s (new tokens / wall time of the whole generate
call, prompt included), the ratio to transformers fp32, and the like-for-like ratios at the end.
Transformers runs twice:
  fp32       LlamaForCausalLM as loaded
  int8       the same after torch.ao.quantization.quantize_dynamic of every nn.Linear, lm_head
             included as in ours (int8 weights per output channel, activations quantized per
             tensor on the fly: x86 fbgemm kernels), PyTorch's own CPU int8 for a transformers
             model (--no-ref-int8 skips it). It quantizes activations too, and its greedy text
             departs from fp32 early (printed below); ours int8 keeps bf16 activations.
             Transformers has no CPU int4 without extra packages (torchao, quanto), so the int4
             variants of ours are set against this int8.
llama.cpp (llama-cpp-python, the CPU reference), when installed: the same Q4_1 GGUF file, greedy
(top_k=1), its own tokens for our prompt ids, n_batch=1 (larger batches crashed on this CPU in
multi-token prompt evaluation), n_threads = torch's threads. Build it with native flags:
    CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_CURL=OFF" pip install llama-cpp-python==0.3.36
(about 8 minutes on 2 cores). Skipped with a reason when `llama_cpp` is not importable.
Variants of ours:
  default    what `zeroformer generate --model FILE` runs with no flags (inference/plan.py: a
             Q4_1 GGUF -> int4 from its blocks, int8-refined top-64 head, fused projections;
             with our Q4 kernel (nn/q4.py) each token is one C call for the 30 blocks; its path
             line is printed); before "fast by default" the default was fp32
  fp32       the reference path (`--dtype fp32`) (preallocated KV cache, last-position logits only)
  fp32+fuse  + fused QKV and gate/up projections (one matmul instead of three / two)
  int8       + int8 weight-only matmuls (bf16 activations), fused projections
  int4       + int4 group-wise weight-only matmuls (our Q4 kernel where it compiles: int8
             activations, fused step; else torch's: bf16 activations); output layer int8
  int4 all   the same with the output layer int4 too
  int4 refine  int4 everywhere; the output layer re-scores its top 64 logits with int8 rows
(torch.compile of the forward, measured no faster than int4 on this CPU: x2.21 / x2.90 vs
x2.75 / x2.89, was removed from prepare_inference.)
Quantized variants also print how many of their greedy tokens equal the fp32 ones (in order,
up to the first difference).

    .venv/bin/python benchmarks/bench_decode.py [--new-tokens 48] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time

import torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a .gguf/HF folder (default: fetched SmolLM2)")
    ap.add_argument("--prompt", default="The capital of France is")
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--prefill-tokens", type=int, default=200,
                    help="prompt length of the prefill comparison (0: skip it)")
    ap.add_argument("--no-ref-int8", dest="ref_int8", action="store_false",
                    help="skip transformers + torch.ao dynamic int8")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    import transformers

    import zeroformer
    from zeroformer import data
    from zeroformer.inference.load import load_lm
    from zeroformer.io import hf_llama
    from zeroformer.nn.fast import prepare_inference

    path = args.model or data.locate("smollm2")
    if path is None:
        sys.exit("SmolLM2 not fetched: zeroformer data fetch smollm2")
    ours = zeroformer.load(path).eval()
    tok = ours.tokenizer
    with tempfile.TemporaryDirectory() as d:
        hf_llama.export(ours, d)
        hf = transformers.LlamaForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    hf.generation_config.eos_token_id = None          # run every step (no early stop)
    hf.generation_config.pad_token_id = 0
    hf8 = None
    if args.ref_int8:
        import warnings

        with warnings.catch_warnings():                   # torch.ao.quantization is deprecated
            warnings.simplefilter("ignore")
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            hf8 = quantize_dynamic(copy.deepcopy(hf), {torch.nn.Linear: per_channel_dynamic_qconfig},
                                   dtype=torch.qint8).eval()
    fused = prepare_inference(copy.deepcopy(ours), fuse=True)
    int8 = prepare_inference(copy.deepcopy(ours), fuse=True, int8=True)
    int4 = prepare_inference(copy.deepcopy(ours), fuse=True, int4=True, int4_head="int8")
    int4_all = prepare_inference(copy.deepcopy(ours), fuse=True, int4=True)
    int4_r = prepare_inference(copy.deepcopy(ours), fuse=True, int4=True, int4_head="refine")
    default, _ = load_lm(path, report=lambda line: print(f"default path: {line}"))
    ids = torch.tensor([tok.encode(args.prompt)])
    n = args.new_tokens
    llama = _llama_cpp(str(path), torch.get_num_threads())

    runs = {
        "transformers fp32": lambda: hf.generate(ids, max_new_tokens=n, do_sample=False),
        "transformers int8": lambda: hf8.generate(ids, max_new_tokens=n, do_sample=False),
        "zeroformer default": lambda: default.generate(ids, max_new_tokens=n, eos_token_id=-1),
        "zeroformer fp32": lambda: ours.generate(ids, max_new_tokens=n, eos_token_id=-1),
        "zeroformer fp32+fuse": lambda: fused.generate(ids, max_new_tokens=n, eos_token_id=-1),
        "zeroformer int8": lambda: int8.generate(ids, max_new_tokens=n, eos_token_id=-1),
        "zeroformer int4": lambda: int4.generate(ids, max_new_tokens=n, eos_token_id=-1),
        "zeroformer int4 all": lambda: int4_all.generate(ids, max_new_tokens=n, eos_token_id=-1),
        "zeroformer int4 refine": lambda: int4_r.generate(ids, max_new_tokens=n, eos_token_id=-1),
    }
    if hf8 is None:
        del runs["transformers int8"]
    if llama is not None:
        runs["llama.cpp"] = lambda: _llama_generate(llama, ids, n)
    outs = {k: f() for k, f in runs.items()}  # warm-up (and outputs to compare)
    same = torch.equal(outs["zeroformer fp32"], outs["transformers fp32"])
    times = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, f in runs.items():  # alternate
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    tps = {k: n / statistics.median(ts) for k, ts in times.items()}
    base = tps["transformers fp32"]
    print(f"SmolLM2-135M greedy, batch 1, prompt {ids.size(1)} tokens, {n} new tokens, "
          f"threads {torch.get_num_threads()}, median of {args.repeats}")
    for k in times:
        print(f"  {k:24s} {tps[k]:7.2f} tokens/s   x{tps[k] / base:.2f}")
    print(f"  greedy tokens identical (zeroformer fp32 vs transformers fp32): {same}")
    ref = outs["zeroformer fp32"][0, ids.size(1):].tolist()
    for k in ("llama.cpp", "transformers int8", "zeroformer default", "zeroformer int8", "zeroformer int4", "zeroformer int4 all",
              "zeroformer int4 refine"):
        if k not in outs:
            continue
        got = outs[k][0, ids.size(1):].tolist()
        agree = next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), len(ref))
        print(f"  {k}: {agree}/{len(ref)} greedy tokens equal fp32 before the first difference; "
              f"text {tok.decode(got)!r}")
    like = [f"fp32 {tps['zeroformer fp32'] / base:.2f}"]
    if "transformers int8" in tps:
        r8 = tps["transformers int8"]
        like.append("int8 weights (ours int8 / transformers torch.ao int8) "
                    f"{tps['zeroformer int8'] / r8:.2f}")
        best = max(base, r8)
        print("  faster paths against transformers' best CPU setting here "
              f"({'int8' if r8 > base else 'fp32'}, {best:.2f} tokens/s): "
              + ", ".join(f"{k.removeprefix('zeroformer ')} x{tps[k] / best:.2f}" for k in tps
                          if k.startswith("zeroformer") and k != "zeroformer fp32"))
    print(f"  like for like (ours / transformers): {'; '.join(like)}.")
    if args.prefill_tokens:
        _prefill(args, default, ours, tok, llama)
    if llama is None:
        print(f"  llama.cpp: skipped ({_LLAMA_SKIP})")
    else:
        lc = tps["llama.cpp"]
        print(f"  against llama.cpp ({lc:.2f} tokens/s): default x{tps['zeroformer default'] / lc:.2f}, "
              f"best of ours ({max((k for k in tps if k.startswith('zeroformer')), key=tps.get)}) "
              f"x{max(v for k, v in tps.items() if k.startswith('zeroformer')) / lc:.2f}; "
              f"default's tokens equal llama.cpp's: "
              f"{outs['zeroformer default'][0, ids.size(1):].tolist() == outs['llama.cpp'][0, ids.size(1):].tolist()}")


def _prefill(args, default, fp32, tok, llama):
    """Prompt tokens/s: the time to read a prompt of --prefill-tokens tokens and give the first
    token's logits (ours: model(ids) with a new cache; llama.cpp: eval with n_batch=1)."""
    text = "The quick brown fox jumps over the lazy dog while the cat sleeps. " * 64
    ids = torch.tensor([tok.encode(text)[:args.prefill_tokens]])
    t_len = ids.size(1)
    runs = {"zeroformer default": lambda: default(ids, cache=default.new_cache(1, t_len + 1),
                                                  last_only=True),
            "zeroformer fp32": lambda: fp32(ids, cache=fp32.new_cache(1, t_len + 1),
                                            last_only=True)}
    if llama is not None:
        runs["llama.cpp (n_batch=1)"] = lambda: (llama.reset(), llama.eval(ids[0].tolist()))
    times = {k: [] for k in runs}
    with torch.no_grad():
        for f in runs.values():
            f()
        for _ in range(args.repeats):
            for k, f in runs.items():
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
    print(f"prefill: a {t_len}-token prompt, prompt tokens/s (median of {args.repeats})")
    for k, ts in times.items():
        print(f"  {k:24s} {t_len / statistics.median(ts):8.1f}")


_LLAMA_SKIP = "llama_cpp is not installed"


def _llama_cpp(path: str, threads: int):
    """llama.cpp's model on the same file, or None (the reason in _LLAMA_SKIP)."""
    global _LLAMA_SKIP
    try:
        from llama_cpp import Llama
    except ImportError as e:
        _LLAMA_SKIP = f"llama_cpp is not importable: {e}; see this file's docstring to build it"
        return None
    if not path.endswith(".gguf"):
        _LLAMA_SKIP = "llama.cpp reads GGUF files only"
        return None
    return Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_batch=1,
                 n_ctx=512, verbose=False)


def _llama_generate(llm, ids: torch.Tensor, n: int) -> torch.Tensor:
    """n greedy tokens after the prompt ids (1, T) -> (1, T + n), like model.generate."""
    out = []
    for t in llm.generate(ids[0].tolist(), top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
        out.append(t)
        if len(out) == n:
            break
    return torch.cat([ids, torch.tensor([out])], 1)


if __name__ == "__main__":
    main()
