"""A GPT-2-style training step: zeroformer's Decoder vs transformers' GPT2LMHeadModel, same loop.

Model: 6 layers, d_model 384, 6 heads, FFN 1536, context 256, batch 8 (nanoGPT's
shakespeare-char shape; vocabulary 65 by default, --vocab 50257 for GPT-2's), dropout 0, fp32.
Both start from the same weights (ours exported to HF format) and run the same loop: forward,
cross-entropy, backward, AdamW step (the same AdamW implementation for all; fused by default, as
the optimizer's share of a CPU step is large). Each model runs twice: in fp32, and under bf16
autocast (what `zeroformer train ... --dtype=bf16` does: bf16 matmuls, fp32 weights, optimizer
and loss). Steps alternate between the models in one process; prints tokens/s (batch * context /
step time, median), the ratio to transformers in fp32, the like-for-like ratio (to transformers
in the same dtype: fp32 vs fp32, bf16 autocast vs bf16 autocast), and ours' fastest setting
against transformers' fastest. On a CPU with AVX512-BF16 or AMX, bf16
matmuls run 2.5-3x faster than fp32 (oneDNN); tests/test_trainer.py bounds the bf16 step's loss
and gradients against the fp32 one.

    .venv/bin/python benchmarks/bench_train_step.py [--steps 6] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=65)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4, help="steps per round per model")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(ours)")
    ap.add_argument("--eager", action="store_true",
                    help="also time transformers with attn_implementation='eager'")
    ap.add_argument("--no-bf16", dest="bf16", action="store_false",
                    help="skip the bf16-autocast runs")
    ap.add_argument("--optimizer", choices=["fused", "foreach"], default="fused",
                    help="AdamW implementation, the same for every model (default: fused)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    import transformers

    import zeroformer
    from zeroformer.io import hf_gpt2
    from zeroformer.models.decoder import Decoder

    torch.manual_seed(0)
    cfg = zeroformer.preset("gpt2", vocab_size=args.vocab, n_layer=6, d_model=384, n_head=6,
                            d_ff=1536, max_seq_len=args.context, dropout=0.0, attn_dropout=0.0)
    ours = Decoder(cfg)
    with tempfile.TemporaryDirectory() as d:
        hf_gpt2.export(ours, d)
        hf = transformers.GPT2LMHeadModel.from_pretrained(d, attn_implementation="sdpa")
        hf_eager = transformers.GPT2LMHeadModel.from_pretrained(d, attn_implementation="eager")
    models = {"transformers GPT2LMHeadModel": (hf, lambda m, x: m(x).logits),
              "zeroformer Decoder": (ours, lambda m, x: m(x))}
    if args.eager:
        models["transformers (eager attention)"] = (hf_eager, lambda m, x: m(x).logits)
    if args.compile:
        models["zeroformer Decoder compiled"] = (torch.compile(copy.deepcopy(ours)), lambda m, x: m(x))

    dtypes = {k: torch.float32 for k in models}
    if args.bf16:
        for k in ("transformers GPT2LMHeadModel", "zeroformer Decoder"):
            name = k + " bf16"
            models[name] = (copy.deepcopy(models[k][0]), models[k][1])
            dtypes[name] = torch.bfloat16

    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, args.vocab, (args.batch, args.context + 1), generator=g)
    inp, tgt = x[:, :-1], x[:, 1:]
    impl = {"fused": dict(fused=True), "foreach": dict(foreach=True)}[args.optimizer]
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4, **impl) for k, (m, _) in models.items()}

    def step(name):
        m, fwd = models[name]
        m.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtypes[name] != torch.float32):
            logits = fwd(m, inp)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), tgt.reshape(-1))
        loss.backward()
        opts[name].step()
        opts[name].zero_grad(set_to_none=True)
        return loss.item()

    first = {k: step(k) for k in models}          # warm-up (compiles, allocates)
    times = {k: [] for k in models}
    for _ in range(args.rounds):
        for k in models:                            # alternate
            for _ in range(args.steps):
                t = time.perf_counter()
                step(k)
                times[k].append(time.perf_counter() - t)
    tokens = args.batch * args.context
    tps = {k: tokens / statistics.median(ts) for k, ts in times.items()}
    base = tps["transformers GPT2LMHeadModel"]
    print(f"GPT-2-style training step: 6 layers, d 384, batch {args.batch}, context "
          f"{args.context}, vocab {args.vocab}, fp32{' and bf16 autocast' if args.bf16 else ''}, "
          f"AdamW {args.optimizer}, "
          f"threads {torch.get_num_threads()}; "
          f"median of {args.rounds * args.steps} steps")
    print(f"  {'':35s} {'tokens/s':>9s}  {'ms/step':>7s}  vs transformers fp32 | same dtype")
    for k, ts in times.items():
        same = "transformers GPT2LMHeadModel" + (" bf16" if dtypes[k] != torch.float32 else "")
        print(f"  {k:35s} {tps[k]:9.0f}  {statistics.median(ts) * 1e3:7.1f}  "
              f"x{tps[k] / base:.2f}{'':12s}| x{tps[k] / tps[same]:.2f}")
    like = ["fp32 x%.2f" % (tps["zeroformer Decoder"] / base)]
    if args.bf16:
        like.append("bf16 autocast x%.2f" % (tps["zeroformer Decoder bf16"]
                                             / tps["transformers GPT2LMHeadModel bf16"]))
    fo = max((k for k in tps if k.startswith("zeroformer")), key=tps.get)
    fr = max((k for k in tps if k.startswith("transformers")), key=tps.get)
    print(f"  like for like (ours / transformers, same dtype): {', '.join(like)}; "
          f"fastest vs fastest: {fo} / {fr} x{tps[fo] / tps[fr]:.2f}")
    print("  first-step loss (same weights, same batch): "
          + ", ".join(f"{k}: {v:.5f}" for k, v in first.items()))


if __name__ == "__main__":
    main()
