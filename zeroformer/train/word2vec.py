"""Training word2vec with the one trainer: subsampling, dynamic windows, negatives, the loss.

Every epoch e (random draws from (seed, e), so batch i is a pure function of (seed, i)):
  1. subsampling (Mikolov et al. 2013b; word2vec.c and gensim's formula): an occurrence of word w
     is kept with probability  min(1, (sqrt(f_w / t) + 1) * t / f_w),  t = sample * total words,
     f_w = count(w): frequent words ("the", "and") are thinned, rare ones always kept;
  2. dynamic window: each kept position draws b ~ U{1..window} and pairs with the words at
     distance <= b on both sides (near words count more, as in word2vec.c);
  3. examples, shuffled: skip-gram (centre, context word) pairs; CBOW (the window's words,
     centre) rows, the window padded with -1.
Batch i of an epoch takes examples [i B, (i + 1) B) (steps_per_epoch = ceil(examples of epoch 0
/ B); a later epoch's examples wrap around when it has fewer) and draws K negatives per row from
P(w) ~ count(w)^0.75 by inverting its cumulative distribution. A negative that equals the row's
true word is left out of the loss (word2vec.c skips it).

Loss (models/word2vec.py): mean over the B rows of
    -log sigmoid(s_true) - sum_k log sigmoid(-s_k)
With optimizer="sgd" each row moves its vectors by lr / B times its gradient: lr = alpha * B is
word2vec.c's per-example step alpha (recipes/word2vec.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..models.word2vec import nearest
from .data import batch_generator
from .task import Task


def keep_probabilities(counts: torch.Tensor, sample: float) -> torch.Tensor:
    """(V,) probability of keeping one occurrence of each word; 1 everywhere when sample <= 0."""
    counts = counts.double()
    if sample <= 0:
        return torch.ones_like(counts)
    t = sample * counts.sum()
    p = (torch.sqrt(counts / t) + 1.0) * t / counts.clamp(min=1.0)
    return p.clamp(max=1.0)


def noise_cdf(counts: torch.Tensor, power: float = 0.75) -> torch.Tensor:
    """(V,) cumulative distribution of P(w) ~ count(w)^power (words of count 0 never drawn)."""
    p = counts.double() ** power
    return (p / p.sum()).cumsum(0)


def epoch_examples(ids: torch.Tensor, keep: torch.Tensor, window: int, cbow: bool,
                   gen: torch.Generator):
    """One epoch's shuffled examples from the corpus `ids` (N,):
    skip-gram -> (centres (M,), contexts (M,)); CBOW -> (windows (M, 2 window), centres (M,))."""
    kept = ids[torch.rand(ids.numel(), generator=gen, dtype=torch.float64) < keep[ids]]
    n = kept.numel()
    b = torch.randint(1, window + 1, (n,), generator=gen)
    if cbow:
        offsets = torch.cat([torch.arange(-window, 0), torch.arange(1, window + 1)])
        pos = torch.arange(n)[:, None] + offsets[None, :]                     # (n, 2 window)
        ok = (pos >= 0) & (pos < n) & (offsets.abs()[None, :] <= b[:, None])
        windows = torch.where(ok, kept[pos.clamp(0, max(n - 1, 0))], -1)
        rows = ok.any(1)
        windows, centres = windows[rows], kept[rows]
        perm = torch.randperm(centres.numel(), generator=gen)
        return windows[perm], centres[perm]
    centres, contexts = [], []
    for o in range(1, window + 1):
        right = b[: n - o] >= o                       # centre p sees p + o
        centres += [kept[: n - o][right]]
        contexts += [kept[o:][right]]
        left = b[o:] >= o                             # centre p sees p - o
        centres += [kept[o:][left]]
        contexts += [kept[: n - o][left]]
    centres, contexts = torch.cat(centres), torch.cat(contexts)
    perm = torch.randperm(centres.numel(), generator=gen)
    return centres[perm], contexts[perm]


class Word2VecTask(Task):
    """Task (train/task.py) for models/word2vec.py:Word2Vec on a corpus of word ids."""

    def __init__(self, model, ids: torch.Tensor, batch_size: int, window: int = 5,
                 negative: int = 5, sample: float = 1e-3, cbow: bool = False, seed: int = 0,
                 tokenizer=None, probe: tuple[str, ...] = ()):
        self.model, self.tokenizer = model, tokenizer
        self.ids, self.batch_size, self.window, self.negative = ids, batch_size, window, negative
        self.cbow, self.seed, self.probe = cbow, seed, probe
        counts = torch.bincount(ids, minlength=model.config.vocab_size)
        self.keep, self.cdf = keep_probabilities(counts, sample), noise_cdf(counts)
        self._epoch, self._examples = -1, None
        self.examples_per_epoch = self.examples(0)[1].numel()
        self.steps_per_epoch = max(1, math.ceil(self.examples_per_epoch / batch_size))

    def examples(self, epoch: int):
        if epoch != self._epoch:
            gen = batch_generator(self.seed, epoch, "word2vec-epoch")
            self._examples = epoch_examples(self.ids, self.keep, self.window, self.cbow, gen)
            self._epoch = epoch
        return self._examples

    def train_batch(self, index: int) -> dict:
        epoch, j = divmod(index, self.steps_per_epoch)
        inputs, true = self.examples(epoch)
        rows = torch.arange(j * self.batch_size, (j + 1) * self.batch_size) % true.numel()
        gen = batch_generator(self.seed, index, "word2vec-negatives")
        u = torch.rand(rows.numel(), self.negative, generator=gen, dtype=torch.float64)
        neg = torch.searchsorted(self.cdf, u).clamp(max=self.cdf.numel() - 1)
        batch = {"inputs": inputs[rows], "targets": torch.cat([true[rows, None], neg], 1)}
        if self.cbow:
            batch["input_mask"] = (batch["inputs"] >= 0).long()
            batch["inputs"] = batch["inputs"].clamp(min=0)
        return batch

    def loss(self, model, batch):
        t = batch["targets"]
        with torch.autocast(t.device.type, enabled=False):  # dot products: cheap, keep fp32
            s = model(batch["inputs"], t, batch.get("input_mask")).float()    # (B, 1 + K)
        real = (t[:, 1:] != t[:, :1]).float()                                 # skip n_k = o
        per_row = -F.logsigmoid(s[:, 0]) - (F.logsigmoid(-s[:, 1:]) * real).sum(1)
        return per_row.mean(), t.size(0)

    def on_eval(self, model) -> dict:
        """The nearest neighbours of the probe words that are in the vocabulary."""
        if self.tokenizer is None:
            return {}
        stoi, itos = self.tokenizer.stoi, self.tokenizer.itos
        vec, out = model.embed.weight.detach(), []
        for w in self.probe:
            if w in stoi:
                best = nearest(vec, vec[stoi[w]], 5, exclude=[stoi[w], *range(min(stoi.values()))])
                out.append(f"{w}: {' '.join(itos[i] for i, _ in best)}")
        return {"neighbors": "; ".join(out)} if out else {}
