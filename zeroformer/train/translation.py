"""Training a translator (the encoder-decoder) with the one trainer: data, batches, loss.

Batches by token count (Vaswani et al. section 5.1: "each training batch contained a set of
sentence pairs containing approximately 25000 source tokens and 25000 target tokens"): pairs are
sorted by length, then cut into consecutive buckets holding at most `batch_tokens` padded tokens
(rows x longest side), so a batch of short verses has many rows and one of long verses few. The
bucket list is fixed; every epoch visits all buckets in an order drawn from (seed, epoch), so
micro-batch i is a pure function of (seed, i) and a resumed run sees exactly the same batches.

Teacher forcing: the decoder reads  [start] y_1 ... y_n  and must predict  y_1 ... y_n </s>.
Loss: label-smoothed cross-entropy (eps = 0.1, section 5.4), padding positions ignored.
Scheduled sampling (Bengio et al. 2015; the two-pass form of Mihaylova & Martins 2019), optional:
with probability p each decoder input token y_t (t >= 1) is replaced by the model's own greedy
prediction from a first, gradient-free pass, so training sees some of its own mistakes.

Tensors of a batch: src_ids (B, S), src_mask (B, S), tgt_in (B, T), labels (B, T) (-100 = pad).
Translating and BLEU are inference (zeroformer/inference/translation.py); the translate-es-en
recipe adds them to the evaluations (zeroformer/recipes/translate.py).
"""

from __future__ import annotations

import torch

from ..tokenizers.base import read_training_text
from .data import batch_generator
from .losses import IGNORE_INDEX, model_loss
from .task import Task


def read_pairs(path, src_col=3, tgt_col=4) -> list[tuple[str, str]]:
    """A tab-separated file -> [(source, target)] (bible-es-en: book ch verse es en)."""
    out = []
    for line in read_training_text([path])[0].split("\n"):  # UserError: missing, not UTF-8
        cols = line.split("\t")
        if len(cols) > max(src_col, tgt_col):
            out.append((cols[src_col], cols[tgt_col]))
    return out


def encode_pairs(tokenizer, pairs, eos: int, max_len: int | None = None, max_ratio: float = 0.0,
                 truncate: int | None = None):
    """Texts -> [(src ids + [eos], tgt ids + [eos])]. With max_len, pairs whose side is longer are
    dropped (training); with max_ratio, pairs whose lengths differ more than that factor too;
    with truncate, each side is cut to that many ids (evaluation)."""
    out = []
    for s, t in pairs:
        a, b = tokenizer.encode(s) + [eos], tokenizer.encode(t) + [eos]
        if truncate is not None:
            a, b = a[:truncate], b[:truncate]
        if max_len is not None and (len(a) > max_len or len(b) > max_len):
            continue
        if max_ratio and max(len(a), len(b)) > max_ratio * min(len(a), len(b)) + 3:
            continue
        out.append((a, b))
    return out


def make_buckets(lengths: list[tuple[int, int]], batch_tokens: int) -> list[list[int]]:
    """Indices sorted by (src, tgt) length, cut so rows * max(longest src, longest tgt) <=
    batch_tokens (a pair longer than the budget gets a bucket of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i][0], lengths[i][1], i))
    buckets, cur, longest = [], [], 0
    for i in order:
        m = max(longest, *lengths[i])
        if cur and (len(cur) + 1) * m > batch_tokens:
            buckets.append(cur)
            cur, m = [], max(lengths[i])
        cur.append(i)
        longest = m
    if cur:
        buckets.append(cur)
    return buckets


def collate(pairs, pad: int, start: int) -> dict:
    """[(src, tgt)] -> right-padded tensors (see the module docstring)."""
    b = len(pairs)
    s = max(len(p[0]) for p in pairs)
    t = max(len(p[1]) for p in pairs)
    src = torch.full((b, s), pad, dtype=torch.long)
    src_mask = torch.zeros((b, s), dtype=torch.long)
    tgt_in = torch.full((b, t), pad, dtype=torch.long)
    labels = torch.full((b, t), IGNORE_INDEX, dtype=torch.long)
    for i, (a, y) in enumerate(pairs):
        src[i, : len(a)] = torch.tensor(a)
        src_mask[i, : len(a)] = 1
        tgt_in[i, 0] = start
        tgt_in[i, 1: len(y)] = torch.tensor(y[:-1])
        labels[i, : len(y)] = torch.tensor(y)
    return {"src_ids": src, "src_mask": src_mask, "tgt_in": tgt_in, "labels": labels}


class TranslationTask(Task):
    """Task (zeroformer/train/task.py) for an EncoderDecoder on (source, target) id pairs."""

    def __init__(self, model, tokenizer, train, valid, batch_tokens=4096, seed=0,
                 label_smoothing=0.1, scheduled_sampling=0.0):
        self.model, self.tokenizer = model, tokenizer
        cfg = model.config
        self.pad, self.eos = cfg.pad_token_id, cfg.eos_token_id
        self.start = cfg.decoder_start_token_id if cfg.decoder_start_token_id is not None else self.pad
        self.train_pairs, self.valid = train, valid
        self.seed, self.label_smoothing = seed, label_smoothing
        self.scheduled_sampling = scheduled_sampling
        self.buckets = make_buckets([(len(a), len(b)) for a, b in train], batch_tokens)
        self.valid_ids = encode_pairs(tokenizer, valid, self.eos, truncate=cfg.max_seq_len)
        self.valid_buckets = make_buckets([(len(a), len(b)) for a, b in self.valid_ids],
                                          batch_tokens)
        self._perm_epoch, self._perm = -1, None

    # -- batches --------------------------------------------------------------------------------
    def train_batch(self, index: int) -> dict:
        epoch, j = divmod(index, len(self.buckets))
        if epoch != self._perm_epoch:
            gen = batch_generator(self.seed, epoch, "translation-epoch")
            self._perm, self._perm_epoch = torch.randperm(len(self.buckets), generator=gen), epoch
        bucket = self.buckets[int(self._perm[j])]
        return collate([self.train_pairs[i] for i in bucket], self.pad, self.start)

    def eval_batches(self):
        return [collate([self.valid_ids[i] for i in b], self.pad, self.start)
                for b in self.valid_buckets]

    # -- loss -----------------------------------------------------------------------------------
    def loss(self, model, batch):
        tgt_in = batch["tgt_in"]
        if self.scheduled_sampling > 0 and model.training:
            with torch.no_grad():
                pred = model(batch["src_ids"], tgt_in, src_mask=batch["src_mask"]).argmax(-1)
            # the prediction made at position t-1 replaces the gold token fed at position t
            swap = torch.rand(tgt_in.shape, device=tgt_in.device) < self.scheduled_sampling
            swap[:, 0] = False
            swap &= batch["labels"] != IGNORE_INDEX
            tgt_in = torch.where(swap, torch.roll(pred, 1, dims=1), tgt_in)
        return model_loss(model, batch["labels"], self.label_smoothing, batch["src_ids"], tgt_in,
                          src_mask=batch["src_mask"])
