"""Which dtype `--dtype auto` should train in on this CPU: fp32 vs bf16 autocast, by model width.

Times one training step (forward, cross-entropy, backward, Adam) of our models in fp32 and under
bf16 autocast, alternating in one process (median of --rounds), for the 2017 encoder-decoder
(3 + 3 layers, vocabulary 8000, 96 x 40 tokens a side: translate-es-en's shape) and a GPT-2-style
decoder (6 layers, vocabulary 8000, 16 x 256 tokens), at several widths d_model (d_ff = 4 d).
Prints ms per step and fp32 time / bf16 time (> 1: bf16 is faster). bf16 autocast casts every
weight and activation at each matmul; below some width that costs more than the bf16 matmuls
save, and train/machine.py:resolve_dtype uses the crossover measured here.

    OMP_NUM_THREADS=2 python benchmarks/bench_train_dtype.py [--rounds 5] [--widths 128,256,384,512]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def step_fn(model, batch, arch, bf16):
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(batch, batch) if arch == "encoder_decoder" else model(batch)
            loss = F.cross_entropy(logits.float().flatten(0, 1), batch.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def main(argv=None):
    from zeroformer.config import preset
    from zeroformer.models import build_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--widths", default="128,256,384,512")
    args = ap.parse_args(argv)
    print(f"threads {torch.get_num_threads()}; ms per training step (median of {args.rounds})")
    print(f"{'model':>16} {'d_model':>7} {'fp32':>8} {'bf16':>8} {'fp32/bf16':>9}")
    for arch in ("encoder_decoder", "decoder"):
        for d in (int(w) for w in args.widths.split(",")):
            torch.manual_seed(0)
            common = dict(vocab_size=8000, d_model=d, n_head=max(1, d // 64), d_ff=4 * d,
                          dropout=0.1)
            if arch == "encoder_decoder":
                cfg = preset("transformer-small", n_layer=3, n_encoder_layer=3, max_seq_len=128,
                             **common)
                batch = torch.randint(3, 8000, (96, 40))
            else:
                cfg = preset("gpt2", n_layer=6, max_seq_len=256, **common)
                batch = torch.randint(3, 8000, (16, 256))
            model = build_model(cfg).train()
            steps = {k: step_fn(model, batch, arch, k == "bf16") for k in ("fp32", "bf16")}
            times = {k: [] for k in steps}
            for k in steps:      # warm-up
                steps[k]()
            for _ in range(args.rounds):
                for k, fn in steps.items():
                    t = time.perf_counter()
                    fn()
                    times[k].append(time.perf_counter() - t)
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            print(f"{arch:>16} {d:>7} {med['fp32']:>8.0f} {med['bf16']:>8.0f} "
                  f"{med['fp32'] / med['bf16']:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
