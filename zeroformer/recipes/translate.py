"""Translation recipes on the encoder-decoder (the 2017 Transformer).

translate-es-en   Spanish -> English on `zeroformer data fetch bible-es-en` (verse pairs, split
                  by book). A joint byte-level BPE vocabulary (8000 tokens, <pad> = 0 = decoder
                  start, </s> = 1) is trained with our tokenizer on the training split, both
                  languages. Model: 3 + 3 post-norm layers, d_model 128, 4 heads, d_ff 512,
                  shared + tied embeddings, dropout 0.1 (2.4M parameters). Adam beta = (0.9,
                  0.98), eps = 1e-9, no weight decay, the paper's warmup / inverse-square-root
                  ("noam") schedule (warmup 300, factor 0.5: peak lr 2.5e-3), label smoothing
                  0.1, batches of about batch_size x block_size = 3840 padded tokens
                  (length-sorted buckets, ~290 per epoch), verses longer than block_size tokens
                  left out of training. 2000 steps (~7 epochs). Prints validation loss + greedy
                  BLEU (100 valid verses) every 500 steps, and the test books' BLEU / chrF
                  (beam 4) at the end. `--scheduled_sampling=P` feeds the decoder its own
                  greedy guess for a fraction P of the gold inputs (off by default).

Result of the default run (`zeroformer train translate-es-en --out DIR`, 2 CPU cores, nothing
else running): 19 min 24 s wall; validation BLEU (greedy, 100 verses) 1.9 / 6.8 / 10.7 / 12.6 at
steps 500 / 1000 / 1500 / 2000; test books, 4 beams: BLEU 16.2, chrF 36.8.

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

from ..inference.translation import bleu_chrf, translate
from ..train.translation import TranslationTask
from . import Recipe

BPE_VOCAB = 8000
SPECIALS = ("<pad>", "</s>")


class BleuTranslationTask(TranslationTask):
    """TranslationTask that reports BLEU: greedy (`eval_beams`) on the first
    `eval_bleu_sentences` validation pairs at every evaluation, and BLEU / chrF with
    `final_beams` on the test pairs at the end (printed with `examples` examples)."""

    def __init__(self, *args, test=None, eval_bleu_sentences=100, eval_beams=1, final_beams=4,
                 examples=5, **kwargs):
        super().__init__(*args, **kwargs)
        self.test, self.eval_bleu_sentences, self.eval_beams = test, eval_bleu_sentences, eval_beams
        self.final_beams, self.examples = final_beams, examples
        self.final: dict = {}

    def on_eval(self, model):
        if not self.eval_bleu_sentences:
            return {}
        part = self.valid[: self.eval_bleu_sentences]
        hyps = translate(model, self.tokenizer, [s for s, _ in part], beams=self.eval_beams)
        return {"bleu": round(bleu_chrf(hyps, [t for _, t in part])[0], 2)}

    def on_end(self, model):
        if not self.test:
            return
        was = model.training
        model.eval()
        hyps = translate(model, self.tokenizer, [s for s, _ in self.test], beams=self.final_beams)
        model.train(was)
        bleu, chrf = bleu_chrf(hyps, [t for _, t in self.test])
        self.final = {"test_bleu": bleu, "test_chrf": chrf, "sentences": len(hyps)}
        out = [f"--- test set ({len(hyps)} verses, beam {self.final_beams}): "
               f"BLEU {bleu:.2f}  chrF {chrf:.2f} ---"]
        for (s, t), h in list(zip(self.test, hyps))[: self.examples]:
            out += [f"  src: {s}", f"  ref: {t}", f"  hyp: {h}", ""]
        sys.stdout.write("\n".join(out) + "\n")
        sys.stdout.flush()


def build_translate_es_en(model_cfg, train_cfg):
    from .. import data
    from ..models import build_model
    from ..tokenizers.bpe import BPETokenizer
    from ..train.translation import encode_pairs, read_pairs

    root = data.fetch("bible-es-en")
    train = read_pairs(root / "train.tsv")
    valid = read_pairs(root / "valid.tsv")
    test = read_pairs(root / "test.tsv")
    sys.stderr.write(f"translate-es-en: training a {model_cfg.vocab_size}-token joint BPE "
                     f"vocabulary on {len(train)} verse pairs ...\n")
    texts = [s for s, _ in train] + [t for _, t in train]
    tok = BPETokenizer.train(texts, model_cfg.vocab_size, special_tokens=SPECIALS)
    pad, eos = tok.token_to_id("<pad>"), tok.token_to_id("</s>")
    model_cfg = model_cfg.replace(vocab_size=tok.vocab_size, pad_token_id=pad, eos_token_id=eos,
                                  decoder_start_token_id=pad)
    pairs = encode_pairs(tok, train, eos, max_len=train_cfg.block_size, max_ratio=3.0)
    sys.stderr.write(f"translate-es-en: {len(pairs)} of {len(train)} training pairs kept "
                     f"(<= {train_cfg.block_size} tokens a side)\n")
    model = build_model(model_cfg)
    model.tokenizer = tok
    return BleuTranslationTask(model, tok, pairs, valid, test=test,
                               batch_tokens=train_cfg.batch_size * train_cfg.block_size,
                               seed=train_cfg.seed, label_smoothing=train_cfg.label_smoothing,
                               scheduled_sampling=train_cfg.scheduled_sampling)


RECIPES = {
    "translate-es-en": Recipe(
        name="translate-es-en",
        description="Spanish->English 2017 Transformer (3+3 layers, d 128) on bible-es-en; "
                    "prints test BLEU/chrF",
        build=build_translate_es_en, preset="transformer-small",
        model_overrides=dict(vocab_size=BPE_VOCAB, n_layer=3, n_encoder_layer=3, d_model=128,
                             n_head=4, d_ff=512, max_seq_len=128, dropout=0.1,
                             sinusoidal_layout="split"),
        train_defaults=dict(batch_size=48, block_size=80, max_steps=2000, schedule="noam",
                            warmup_steps=300, noam_factor=0.5, beta1=0.9, beta2=0.98, eps=1e-9,
                            weight_decay=0.0, grad_clip=1.0, label_smoothing=0.1, eval_every=500,
                            eval_steps=0, log_every=50, save_every=250, keep_checkpoints=2,
                            seed=1234)),
}
