"""Translation recipes on the encoder-decoder (the 2017 Transformer).

translate         any parallel corpus of yours (zeroformer/data/parallel.py reads it):
                    zeroformer train translate --data train.tsv [--eval-data valid.tsv]
                        [--test-data test.tsv] --out DIR
                  TSV (source and target columns: --src-col / --tgt-col, 0-based indices or header
                  names; default the first two), JSON lines {"src": ..., "tgt": ...}, or two
                  aligned text files (--data train.es --data-target train.en; likewise
                  --eval-data-target, --test-data-target). Bad rows (a missing column, an empty
                  side, ...) are left out and reported by reason and line; a file with no pair
                  at all is an error. Without --eval-data the last 2% of the training pairs (at
                  least 1, at most 500) are held out for validation (said in the log). The final
                  BLEU / chrF is on --test-data, else on the validation pairs. The joint BPE
                  vocabulary (vocab_size tokens) is trained on the training pairs, both sides, or
                  taken from --tokenizer PATH (it needs a pad and an end-of-sentence token).
translate-es-en   the same recipe with the data filled in: Spanish -> English on `zeroformer data
                  fetch bible-es-en` (verse pairs, split by book; columns 3 and 4).

Both: a joint byte-level BPE vocabulary (8000 tokens, <pad> = 0 = decoder start, </s> = 1).
Model: 3 + 3 post-norm layers, d_model 128, 4 heads, d_ff 512, shared + tied embeddings, dropout
0.1 (2.4M parameters with 8000 tokens). Adam beta = (0.9, 0.98), eps = 1e-9, no weight decay, the
paper's warmup / inverse-square-root ("noam") schedule (warmup 300, factor 0.5: peak lr 2.5e-3),
label smoothing 0.1, batches of about batch_size x block_size = 3840 padded tokens (length-sorted
buckets, ~290 per epoch on the Bible), pairs longer than block_size tokens left out of training.
2000 steps (~7 epochs of the Bible), or `--time-budget 25m` (zeroformer/train/budget.py). Prints
validation loss + greedy BLEU (100 valid pairs) every 500 steps, and BLEU / chrF (beam 4) of the
final set at the end. `--average-last N` averages the last N checkpoints first (set save_every so
they are spread as you want). `--scheduled_sampling=P` feeds the decoder its own greedy guess for
a fraction P of the gold inputs (off by default).

Recipe options (--extra='{"final_beams": 4, ...}'; the flags above fill the file ones):
    eval_bleu_sentences 100   eval_beams 1   final_beams 4   examples 5
    length_penalty 1.0   length_norm "length" ("gnmt": the paper's, with 0.6)
    max_len_a 1.5   max_len_b 10   (output limit a x source + b; the paper: 1 and 50)

Result of the default es-en run (`zeroformer train translate-es-en --out DIR`, 2 CPU cores,
nothing else running): 19 min 24 s wall; validation BLEU (greedy, 100 verses) 1.9 / 6.8 / 10.7 /
12.6 at steps 500 / 1000 / 1500 / 2000; test books, 4 beams: BLEU 16.2, chrF 36.8. With
`--time-budget 25m --average-last 5 --save-every 200` (fp32, 4,825 steps): BLEU 23.8, chrF 44.9
(the last step alone 21.7 / 43.2).

Compute: the budget is what matters at this scale. A d_model-256 model (7.6M parameters) got
test BLEU 1.5 after 500 steps (26 CPU-minutes); this smaller one takes 4-5x less CPU per step, so
it sees several epochs in the same time and translates far better. The schedule does not depend
on max_steps: `--max-steps N` is exactly the first N steps of the default run. On a busy
machine use OMP_NUM_THREADS=1: torch's OpenMP threads spin-wait when the cores are
oversubscribed, and a step then costs 2-3x more CPU time.

The positional table uses the "split" layout (all sines, then all cosines; a fixed permutation of
the paper's interleaved dimensions, the same model) so that the result exports to Marian:
`zeroformer convert RUN OUT --to hf` loads in transformers.MarianMTModel.
"""

from __future__ import annotations

import sys

from ..errors import UserError
from ..inference.translation import bleu_chrf, translate
from ..train.translation import TranslationTask
from . import Recipe

BPE_VOCAB = 8000
SPECIALS = ("<pad>", "</s>")
FILE_INPUTS = ("data_target", "eval_data_target", "test_data", "test_data_target", "src_col",
               "tgt_col", "tokenizer")   # what cmd_train's flags put in TrainConfig.extra
DECODE = dict(eval_bleu_sentences=100, eval_beams=1, final_beams=4, examples=5,
              length_penalty=1.0, length_norm="length", max_len_a=1.5, max_len_b=10)
HOLD_OUT = (0.02, 500)   # without --eval-data: this fraction of the pairs, at most this many


class BleuTranslationTask(TranslationTask):
    """TranslationTask that reports BLEU: greedy (`eval_beams`) on the first
    `eval_bleu_sentences` validation pairs at every evaluation, and BLEU / chrF with
    `final_beams` on the final pairs (`final`, named `final_name`) at the end, printed with
    `examples` examples."""

    def __init__(self, *args, final=None, final_name="test", decode=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.test, self.final_name = final, final_name
        self.decode = {**DECODE, **(decode or {})}
        self.final: dict = {}

    def _translate(self, model, texts, beams):
        d = self.decode
        return translate(model, self.tokenizer, texts, beams=beams,
                         length_penalty=d["length_penalty"], length_norm=d["length_norm"],
                         max_len_a=d["max_len_a"], max_len_b=d["max_len_b"])

    def on_eval(self, model):
        n = self.decode["eval_bleu_sentences"]
        if not n:
            return {}
        part = self.valid[:n]
        hyps = self._translate(model, [s for s, _ in part], self.decode["eval_beams"])
        return {"bleu": round(bleu_chrf(hyps, [t for _, t in part])[0], 2)}

    def on_end(self, model):
        if not self.test:
            return
        was = model.training
        model.eval()
        beams = self.decode["final_beams"]
        hyps = self._translate(model, [s for s, _ in self.test], beams)
        model.train(was)
        bleu, chrf = bleu_chrf(hyps, [t for _, t in self.test])
        self.final = {f"{self.final_name}_bleu": bleu, f"{self.final_name}_chrf": chrf,
                      "sentences": len(hyps)}
        out = [f"--- {self.final_name} set ({len(hyps)} pairs, beam {beams}): "
               f"BLEU {bleu:.2f}  chrF {chrf:.2f} ---"]
        for (s, t), h in list(zip(self.test, hyps))[: self.decode["examples"]]:
            out += [f"  src: {s}", f"  ref: {t}", f"  hyp: {h}", ""]
        sys.stdout.write("\n".join(out) + "\n")
        sys.stdout.flush()


def _log(name: str, line: str) -> None:
    sys.stderr.write(f"{name}: {line}\n")


def recipe_options(train_cfg) -> dict:
    """TrainConfig.extra checked against what this recipe knows (a typo is an error)."""
    opts = dict(train_cfg.extra)
    unknown = sorted(set(opts) - set(FILE_INPUTS) - set(DECODE))
    if unknown:
        raise UserError(f"translate: unknown option(s) {', '.join(unknown)} (known: "
                        f"{', '.join(FILE_INPUTS + tuple(DECODE))})")
    return opts


def build_from_pairs(model_cfg, train_cfg, name, train, valid, final, final_name="test",
                     tokenizer=None):
    """The Task for (source, target) text pairs: the tokenizer (trained here on `train`, both
    sides, unless given), the model, the training pairs that fit block_size."""
    from ..models import build_model
    from ..tokenizers.bpe import BPETokenizer
    from ..train.translation import encode_pairs

    opts = recipe_options(train_cfg)
    if tokenizer is None:
        _log(name, f"training a {model_cfg.vocab_size}-token joint BPE vocabulary on "
                   f"{len(train)} pairs ...")
        texts = [s for s, _ in train] + [t for _, t in train]
        tokenizer = BPETokenizer.train(texts, model_cfg.vocab_size, special_tokens=SPECIALS)
    pad = tokenizer.pad_token_id
    pad = pad if pad is not None else tokenizer.token_to_id("<pad>")
    eos = tokenizer.eos_token_id
    eos = eos if eos is not None else tokenizer.token_to_id("</s>")
    if pad is None or eos is None:
        raise UserError(f"{name}: the tokenizer needs a padding token and an end-of-sentence "
                        "token (roles pad and eos, or tokens <pad> and </s>)")
    model_cfg = model_cfg.replace(vocab_size=tokenizer.vocab_size, pad_token_id=pad,
                                  eos_token_id=eos, decoder_start_token_id=pad)
    pairs = encode_pairs(tokenizer, train, eos, max_len=train_cfg.block_size, max_ratio=3.0)
    _log(name, f"{len(pairs)} of {len(train)} training pairs kept (<= {train_cfg.block_size} "
               "tokens a side, lengths within 3x + 3)")
    if not pairs:
        raise UserError(f"{name}: no training pair fits block_size={train_cfg.block_size} "
                        "tokens a side; raise --block_size")
    model = build_model(model_cfg)
    model.tokenizer = tokenizer
    decode = {k: opts[k] for k in DECODE if k in opts}
    return BleuTranslationTask(model, tokenizer, pairs, valid, final=final, final_name=final_name,
                               decode=decode,
                               batch_tokens=train_cfg.batch_size * train_cfg.block_size,
                               seed=train_cfg.seed, label_smoothing=train_cfg.label_smoothing,
                               scheduled_sampling=train_cfg.scheduled_sampling)


def build_translate(model_cfg, train_cfg):
    """`zeroformer train translate --data ...`: the user's corpus (module docstring)."""
    from .. import load_tokenizer
    from ..data.parallel import read_parallel

    opts = recipe_options(train_cfg)
    if not train_cfg.data:
        raise UserError("translate needs --data FILE (TSV, .jsonl, or two files with "
                        "--data-target)")
    cols = (opts.get("src_col", 0), opts.get("tgt_col", 1))

    def read(path, target, what):
        if target and not path:
            raise UserError(f"translate: --{what}-target without --{what}")
        corpus = read_parallel(path, target, *cols)
        _log("translate", corpus.summary())
        return corpus.pairs

    train = read(train_cfg.data, opts.get("data_target"), "data")
    if train_cfg.eval_data:
        valid = read(train_cfg.eval_data, opts.get("eval_data_target"), "eval-data")
    else:
        if opts.get("eval_data_target"):
            raise UserError("translate: --eval-data-target without --eval-data")
        if len(train) < 2:
            raise UserError(f"{train_cfg.data}: {len(train)} pair: too few to hold some out "
                            "for validation; give --eval-data")
        n = max(1, min(HOLD_OUT[1], round(len(train) * HOLD_OUT[0])))
        train, valid = train[:-n], train[-n:]
        _log("translate", f"no --eval-data: the last {n} training pairs are held out for "
                          f"validation ({len(train)} left to train on)")
    final, final_name = valid, "validation"
    if opts.get("test_data") or opts.get("test_data_target"):
        final, final_name = read(opts.get("test_data"), opts.get("test_data_target"),
                                 "test-data"), "test"
    tok = load_tokenizer(opts["tokenizer"]) if opts.get("tokenizer") else None
    return build_from_pairs(model_cfg, train_cfg, "translate", train, valid, final, final_name,
                            tokenizer=tok)


def build_translate_es_en(model_cfg, train_cfg):
    """`translate` with the bible-es-en files (columns 3 and 4: book ch verse es en)."""
    from .. import data
    from ..train.translation import read_pairs

    given = [k for k in FILE_INPUTS if k in train_cfg.extra]
    if train_cfg.data or train_cfg.eval_data or given:
        raise UserError("translate-es-en brings its own data; for yours use "
                        "`zeroformer train translate --data FILE ...`")
    root = data.fetch("bible-es-en")
    train, valid, test = (read_pairs(root / f"{s}.tsv") for s in ("train", "valid", "test"))
    return build_from_pairs(model_cfg, train_cfg, "translate-es-en", train, valid, test)


MODEL = dict(vocab_size=BPE_VOCAB, n_layer=3, n_encoder_layer=3, d_model=128, n_head=4, d_ff=512,
             max_seq_len=128, dropout=0.1, sinusoidal_layout="split")
TRAIN = dict(batch_size=48, block_size=80, max_steps=2000, schedule="noam", warmup_steps=300,
             noam_factor=0.5, beta1=0.9, beta2=0.98, eps=1e-9, weight_decay=0.0, grad_clip=1.0,
             label_smoothing=0.1, eval_every=500, eval_steps=0, log_every=50, save_every=250,
             keep_checkpoints=2, seed=1234)

RECIPES = {
    "translate": Recipe(
        name="translate",
        description="2017 Transformer (3+3 layers, d 128) on your parallel corpus: --data "
                    "TSV/JSONL/two files; prints BLEU/chrF",
        build=build_translate, preset="transformer-small", model_overrides=MODEL,
        train_defaults=TRAIN, inputs=FILE_INPUTS),
    "translate-es-en": Recipe(
        name="translate-es-en",
        description="Spanish->English 2017 Transformer (3+3 layers, d 128) on bible-es-en; "
                    "prints test BLEU/chrF",
        build=build_translate_es_en, preset="transformer-small", model_overrides=MODEL,
        train_defaults=TRAIN),
}
