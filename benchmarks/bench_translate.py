"""Ours vs transformers.MarianMTModel: training quality in a time budget, and beam-search speed.

1. Training. Both models have the same architecture and size (the translate-es-en model, or the
   sizes given), the SAME initial weights (ours exported to Marian), the same joint BPE tokenizer,
   the same token-count batches in the same order, the same label-smoothed loss, Adam(0.9, 0.98,
   1e-9) and noam schedule, and the same wall-clock budget. Each trains as it would on its own:
   ours through TranslationTask.loss (the output layer fused with the loss, padding rows skipped:
   train/losses.py; dropout with nn/dropout.py's mask), MarianMTModel through its logits and
   torch's dropout — the same function, computed differently. Training alternates between the two
   in slices of --slice-s seconds, so load changes on a shared machine hit both alike. Then both
   are scored identically: teacher-forced validation loss, and greedy test BLEU/chrF (Marian's
   trained weights are imported into our decoder for decoding, which is exact: see
   tests/test_marian_parity.py), so only *training* differs.
2. Beam search. Our trained weights exported to a Marian folder; the first --beam-sentences test
   verses translated with 4 beams by `model.generate` (ours) and `MarianMTModel.generate`,
   alternating, best of --rounds: sentences/s of each, the ratio, and how many outputs agree,
   for each --beam-batch size (e.g. 1,16,32,64), then each side at its own best batch size.
   Where ours gains: the beams of a sentence share one encoder output and cross-attention K/V
   (MarianMTModel copies them per beam), and a sentence whose search is over leaves the batch
   (MarianMTModel keeps computing it until the whole batch is done), so the gap grows with the
   batch; at batch 1 only per-step overhead differs.

    .venv/bin/python benchmarks/bench_translate.py                  # defaults (about 15 min)
    .venv/bin/python benchmarks/bench_translate.py --budget-s 60 --beam-sentences 32  # quick
    .venv/bin/python benchmarks/bench_translate.py --seeds 1234,1,2 --skip-beam  # 3 seeds, means
    .venv/bin/python benchmarks/bench_translate.py --skip-train --beam-model RUN --threads 1 \
        --beam-sentences 389 --beam-batch 1,16,32,64       # beam search only, a trained model
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zeroformer  # noqa: E402
from zeroformer.models import build_model  # noqa: E402
from zeroformer.train.data import batch_generator  # noqa: E402,F401
from zeroformer.train.schedules import noam  # noqa: E402
from zeroformer.inference.translation import bleu_chrf, translate  # noqa: E402
from zeroformer.train.translation import TranslationTask, encode_pairs, read_pairs  # noqa: E402


class MarianAsOurs(torch.nn.Module):
    """MarianMTModel behind our forward signature, so TranslationTask.loss trains it as is."""

    def __init__(self, hf, config):
        super().__init__()
        self.hf, self.config = hf, config

    def forward(self, src_ids, tgt_ids, src_mask=None, tgt_mask=None):
        return self.hf(input_ids=src_ids, attention_mask=src_mask, decoder_input_ids=tgt_ids,
                       use_cache=False).logits


def train_slice(model, opt, task, state, seconds, d_model, warmup, factor):
    """Optimizer steps for `seconds` of wall time; state = {"step", "time"} of this model."""
    model.train()
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        state["step"] += 1
        for g in opt.param_groups:
            g["lr"] = noam(state["step"], d_model, warmup, factor)
        loss, _ = task.loss(model, task.train_batch(state["step"] - 1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        state["time"] += time.perf_counter() - t0
        state["loss"] = loss.item()


@torch.no_grad()
def val_loss(model, task):
    model.eval()
    total = n_all = 0
    for batch in task.eval_batches():
        loss, n = task.loss(model, batch)
        total, n_all = total + float(loss) * n, n_all + n
    return total / n_all


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=300, help="training seconds per model")
    ap.add_argument("--slice-s", type=float, default=20)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--d-ff", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch-tokens", type=int, default=48 * 80)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--noam-factor", type=float, default=0.5)
    ap.add_argument("--test-sentences", type=int, default=389)
    ap.add_argument("--beam-sentences", type=int, default=128)
    ap.add_argument("--beam-batch", default="32",
                    help="sentences per generate call, or several: 1,8,16,32,64 (32: what "
                         "`zeroformer translate` uses)")
    ap.add_argument("--beam-order", choices=["file", "length"], default="file",
                    help="batch the verses in file order, or sorted by length (as `zeroformer "
                         "translate` does: less padding, sentences of a batch end together)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--seeds", default=None, help="comma-separated seeds: part 1 for each, then "
                    "the means (e.g. 1234,1,2)")
    ap.add_argument("--skip-beam", action="store_true", help="only part 1")
    ap.add_argument("--skip-train", action="store_true",
                    help="only the beam-search timing (needs --beam-model)")
    ap.add_argument("--beam-model", metavar="DIR", help="translator for the beam-search timing "
                    "(e.g. a translate-es-en run); default: the model trained above")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from zeroformer.train.trainer import keep_freed_memory

    keep_freed_memory()  # as our trainer does; one process, so both models get it
    from transformers import MarianMTModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    from zeroformer import data
    from zeroformer.io.hf_marian import export
    from zeroformer.tokenizers.bpe import BPETokenizer

    root = data.locate("bible-es-en")
    if root is None:
        sys.exit("bible-es-en is not fetched: run `zeroformer data fetch bible-es-en`")
    tmp = Path(tempfile.mkdtemp(prefix="bench_translate_"))
    if args.skip_train:
        if not args.beam_model:
            sys.exit("--skip-train needs --beam-model DIR")
        return beam_benchmark(args, root, tmp, None, MarianMTModel, export)
    train, valid = read_pairs(root / "train.tsv"), read_pairs(root / "valid.tsv")
    test = read_pairs(root / "test.tsv")[: args.test_sentences]
    t0 = time.perf_counter()
    tok = BPETokenizer.train([s for s, _ in train] + [t for _, t in train], args.vocab,
                             special_tokens=("<pad>", "</s>"))
    print(f"tokenizer: {tok.vocab_size} tokens in {time.perf_counter() - t0:.1f}s")
    seeds = [int(x) for x in str(args.seeds or args.seed).split(",")]
    scores = [train_compare(args, seed, tok, train, valid, test, tmp, MarianMTModel, export)
              for seed in seeds]
    if len(seeds) > 1:
        print(f"\n== mean of {len(seeds)} seeds ({', '.join(map(str, seeds))}) ==")
        for name in ("zeroformer", "MarianMTModel"):
            mean = {k: sum(sc[name][k] for sc in scores) / len(scores)
                    for k in ("steps", "val_loss", "bleu", "chrf")}
            print(f"{name:>14}: {mean['steps']:7.1f} steps  val_loss {mean['val_loss']:.3f}  "
                  f"test BLEU {mean['bleu']:.2f}  chrF {mean['chrf']:.2f}")
        won = sum(sc["zeroformer"]["bleu"] > sc["MarianMTModel"]["bleu"] and
                  sc["zeroformer"]["val_loss"] < sc["MarianMTModel"]["val_loss"] for sc in scores)
        print(f"  ours ahead on both val_loss and BLEU in {won} of {len(seeds)} seeds")
    if not args.skip_beam:
        beam_benchmark(args, root, tmp, scores[-1]["model"], MarianMTModel, export)


def train_compare(args, seed, tok, train, valid, test, tmp, MarianMTModel, export) -> dict:
    """Part 1 for one seed (initial weights, batch order, dropout): {name: {steps, val_loss,
    bleu, chrf}, "model": ours trained}."""
    pad, eos = tok.token_to_id("<pad>"), tok.token_to_id("</s>")
    print(f"\n-- seed {seed} --")
    cfg = zeroformer.preset("transformer-small", vocab_size=tok.vocab_size, n_layer=args.layers,
                            n_encoder_layer=args.layers, d_model=args.d_model, n_head=args.heads,
                            d_ff=args.d_ff, max_seq_len=128, dropout=0.1, pad_token_id=pad,
                            eos_token_id=eos, decoder_start_token_id=pad, sinusoidal_layout="split")
    torch.manual_seed(seed)
    ours = build_model(cfg)
    ours.tokenizer = tok
    export(ours, tmp / f"init-{seed}")                       # the same initial weights for both
    theirs = MarianAsOurs(MarianMTModel.from_pretrained(tmp / f"init-{seed}"), cfg)
    pairs = encode_pairs(tok, train, eos, max_len=80, max_ratio=3.0)
    task = TranslationTask(ours, tok, pairs, valid, batch_tokens=args.batch_tokens,
                           seed=seed)
    n_params = sum(p.numel() for p in ours.parameters())
    print(f"model: {args.layers}+{args.layers} layers, d_model {args.d_model}, d_ff {args.d_ff}, "
          f"{args.heads} heads, {n_params / 1e6:.2f}M parameters; {len(pairs)} training pairs, "
          f"{len(task.buckets)} batches/epoch of <= {args.batch_tokens} tokens; threads "
          f"{args.threads}")

    def adam(m):
        return torch.optim.AdamW(m.parameters(), lr=0.0, betas=(0.9, 0.98), eps=1e-9,
                                 weight_decay=0.0)

    runs = {"zeroformer": (ours, adam(ours), {"step": 0, "time": 0.0}),
            "MarianMTModel": (theirs, adam(theirs), {"step": 0, "time": 0.0})}
    torch.manual_seed(seed)
    while any(s["time"] < args.budget_s for _, _, s in runs.values()):
        for name, (m, opt, s) in runs.items():
            if s["time"] < args.budget_s:
                train_slice(m, opt, task, s, min(args.slice_s, args.budget_s - s["time"]),
                            args.d_model, args.warmup, args.noam_factor)
        print("  " + "  |  ".join(f"{n}: step {s['step']} loss {s.get('loss', 0):.3f} "
                                  f"({s['time']:.0f}s)" for n, (_, _, s) in runs.items()),
              flush=True)
    export_dir = tmp / f"theirs-{seed}"
    theirs.hf.save_pretrained(export_dir)
    theirs_as_ours = zeroformer.load(export_dir)
    print(f"\n== training: same data, batches, tokenizer, init and {args.budget_s:.0f}s budget "
          "each ==")
    results = {}
    for name, model in (("zeroformer", ours), ("MarianMTModel", theirs)):
        vl = val_loss(model, task)
        decoder = ours if name == "zeroformer" else theirs_as_ours
        decoder.eval()
        hyps = translate(decoder, tok, [s for s, _ in test], beams=1)
        bleu, chrf = bleu_chrf(hyps, [t for _, t in test])
        s = runs[name][2]
        results[name] = {"steps": s["step"], "val_loss": vl, "bleu": bleu, "chrf": chrf}
        print(f"{name:>14}: {s['step']:5d} steps ({s['step'] / s['time']:.3f} steps/s)  "
              f"val_loss {vl:.3f}  test BLEU {bleu:.2f}  chrF {chrf:.2f}  (greedy, "
              f"{len(test)} verses)")
    print(f"  steps ratio ours/Marian {runs['zeroformer'][2]['step'] / max(1, runs['MarianMTModel'][2]['step']):.2f}x;"
          f"  BLEU ours - Marian {results['zeroformer']['bleu'] - results['MarianMTModel']['bleu']:+.2f}")
    return {**results, "model": ours}


def beam_benchmark(args, root, tmp, ours, MarianMTModel, export):
    """4-beam translation speed of `ours` (or --beam-model) vs MarianMTModel on its weights, for
    each batch size in --beam-batch; then each side at its own best batch size."""
    if args.beam_model:
        ours = zeroformer.load(args.beam_model)
        print(f"\nbeam search model: {args.beam_model} "
              f"({sum(p.numel() for p in ours.parameters()) / 1e6:.2f}M parameters)")
    tok = ours.tokenizer
    pad, eos = ours.config.pad_token_id, ours.config.eos_token_id
    ours.eval()
    export(ours, tmp / "trained")
    hf = MarianMTModel.from_pretrained(tmp / "trained").eval()
    srcs = [s for s, _ in read_pairs(root / "test.tsv")][: args.beam_sentences]
    enc = [tok.encode(s)[:127] + [eos] for s in srcs]
    if args.beam_order == "length":  # as `zeroformer translate` batches a file
        enc.sort(key=len)
    n = len(srcs)
    speed = {}
    for size in [int(x) for x in str(args.beam_batch).split(",")]:
        batches = []
        for k in range(0, len(enc), size):
            chunk = enc[k: k + size]
            width = max(map(len, chunk))
            ids = torch.full((len(chunk), width), pad)
            mask = torch.zeros_like(ids)
            for r, x in enumerate(chunk):
                ids[r, : len(x)], mask[r, : len(x)] = torch.tensor(x), 1
            batches.append((ids, mask, min(127, int(1.5 * width) + 10)))

        def run_ours():
            return [ours.generate(ids, m, num_beams=4, attention_mask=msk, length_penalty=1.0)
                    for ids, msk, m in batches]

        def run_hf():
            with torch.no_grad():
                return [hf.generate(input_ids=ids, attention_mask=msk, max_new_tokens=m,
                                    num_beams=4, do_sample=False, length_penalty=1.0,
                                    early_stopping=False, forced_eos_token_id=None)
                        for ids, msk, m in batches]

        best = {"zeroformer": float("inf"), "MarianMTModel": float("inf")}
        outs = {}
        for _ in range(args.rounds):
            for name, fn in (("zeroformer", run_ours), ("MarianMTModel", run_hf)):
                t0 = time.perf_counter()
                outs[name] = fn()
                best[name] = min(best[name], time.perf_counter() - t0)

        def texts(gens):
            rows = [r for g in gens for r in g[:, 1:].tolist()]
            return [tok.decode([t for t in (r[: r.index(eos)] if eos in r else r) if t != pad])
                    for r in rows]

        a, b = texts(outs["zeroformer"]), texts(outs["MarianMTModel"])
        same = sum(x == y for x, y in zip(a, b))
        print(f"\n== beam search, 4 beams, {n} verses ({args.beam_order} order) in batches of "
              f"{size}, same weights, "
              f"best of {args.rounds} ==")
        for name in best:
            speed[name, size] = n / best[name]
            print(f"{name:>14}: {n / best[name]:.2f} sentences/s ({best[name]:.1f}s)")
        print(f"  speed-up ours/Marian {best['MarianMTModel'] / best['zeroformer']:.2f}x; "
              f"identical outputs {same}/{n}", flush=True)
    if len(speed) > 2:
        top = {name: max((v, size) for (nm, size), v in speed.items() if nm == name)
               for name in ("zeroformer", "MarianMTModel")}
        print(f"\neach at its best batch size: zeroformer {top['zeroformer'][0]:.2f} sentences/s "
              f"(batch {top['zeroformer'][1]}), MarianMTModel {top['MarianMTModel'][0]:.2f} "
              f"(batch {top['MarianMTModel'][1]}): {top['zeroformer'][0] / top['MarianMTModel'][0]:.2f}x")


if __name__ == "__main__":
    main()
