"""word2vec recipe: word vectors by skip-gram with negative sampling (or CBOW), the third way of
getting word vectors in the tutorials (after an embedding layer and a pre-trained table).

word2vec   `zeroformer train word2vec --out RUN [--data FILE]`: Shakespeare (`zeroformer data
           fetch shakespeare`, input.txt) unless --data names a UTF-8 text file. Words are the
           lower-cased \\w+ runs; words seen fewer than min_count times are dropped (as gensim
           does). Settings are gensim's Word2Vec defaults with sg=1: 100 dimensions, window 5,
           5 negatives, sample 1e-3, min_count 5, 5 epochs, SGD with alpha 0.025 decaying
           linearly to 0.0001 (Mikolov et al. 2013). The examples come in batches of
           batch_size = 1024; the loss is their mean, so lr = alpha * batch_size (25.6) is
           word2vec's per-example step (train/word2vec.py). With SGD the two tables get sparse
           gradients (only the rows a batch touches; the same update, 1.5x faster steps).

Options (--extra='{"cbow": true, "window": 8}'; the keys below, any subset): window, negative,
sample, min_count, epochs, cbow, probe (comma-separated words whose neighbours the final
evaluation prints). max_steps 0 (the default) means `epochs` epochs; --max-steps N overrides.
The vectors are the run's model.safetensors (`embed.weight`, one row per tokenizer id);
`zeroformer neighbors --model RUN WORD` and `--analogy A B C` query them, `--export FILE` writes
the word2vec text format (gensim's KeyedVectors.load_word2vec_format reads it).
"""

from __future__ import annotations

import sys
from collections import Counter

import regex
import torch

from ..errors import UserError
from ..tokenizers.base import read_training_text
from . import Recipe

OPTIONS = dict(window=5, negative=5, sample=1e-3, min_count=5, epochs=5, cbow=False,
               probe="king,love,night,sword,father,she")
WORD = regex.compile(r"\w+")


def words_of(text: str) -> list[str]:
    """The corpus as words: lower-cased runs of \\w (letters, digits, _); punctuation dropped."""
    return WORD.findall(text.lower())


def vocabulary(words: list[str], min_count: int) -> list[str]:
    """Words seen at least min_count times, most frequent first (ties: first seen)."""
    return [w for w, c in Counter(words).most_common() if c >= min_count]


def read_corpus(train_cfg) -> str:
    """--data as UTF-8 text (UserError naming the file otherwise), default Shakespeare."""
    if train_cfg.data:
        return read_training_text([train_cfg.data])[0]
    from .. import data

    return read_training_text([data.fetch("shakespeare") / "input.txt"])[0]


def options(train_cfg) -> dict:
    unknown = sorted(set(train_cfg.extra) - set(OPTIONS))
    if unknown:
        raise UserError(f"--extra: unknown word2vec option(s) {', '.join(unknown)} "
                        f"(known: {', '.join(OPTIONS)})")
    opts = {**OPTIONS, **train_cfg.extra}
    for key in ("window", "negative", "min_count", "epochs"):
        if not isinstance(opts[key], int) or opts[key] < 1:
            raise UserError(f"--extra: {key} must be a positive integer (got {opts[key]!r})")
    if isinstance(opts["sample"], bool) or not isinstance(opts["sample"], (int, float)) \
            or opts["sample"] < 0:
        raise UserError(f"--extra: sample must be a number >= 0 (got {opts['sample']!r})")
    if not isinstance(opts["cbow"], bool):
        raise UserError(f"--extra: cbow must be true or false (got {opts['cbow']!r})")
    return opts


def build_word2vec(model_cfg, train_cfg):
    from ..models.word2vec import Word2Vec
    from ..tokenizers.word import WordTokenizer
    from ..train.word2vec import Word2VecTask

    opts = options(train_cfg)
    words = words_of(read_corpus(train_cfg))
    vocab = vocabulary(words, opts["min_count"])
    if len(vocab) < 2:
        raise UserError(f"the corpus has {len(vocab)} word(s) seen at least min_count="
                        f"{opts['min_count']} times; give a longer text or a lower min_count")
    tok = WordTokenizer(vocab, lowercase=True)
    ids = torch.tensor([tok.stoi[w] for w in words if w in tok.stoi], dtype=torch.long)
    model = Word2Vec(model_cfg.replace(arch="word2vec", vocab_size=tok.vocab_size))
    if train_cfg.optimizer == "sgd":  # the same SGD step on the rows a batch touches only
        model.embed.sparse = model.context.sparse = True
    task = Word2VecTask(model, ids, train_cfg.batch_size, window=opts["window"],
                        negative=opts["negative"], sample=float(opts["sample"]),
                        cbow=bool(opts["cbow"]), seed=train_cfg.seed, tokenizer=tok,
                        probe=tuple(w for w in str(opts["probe"]).split(",") if w))
    if train_cfg.max_steps == 0:  # the recipe's default: whole epochs (the trainer reads this)
        train_cfg.max_steps = opts["epochs"] * task.steps_per_epoch
    sys.stderr.write(f"word2vec ({'CBOW' if opts['cbow'] else 'skip-gram'}): {len(words):,} words, "
                     f"{len(vocab):,} in the vocabulary (min_count {opts['min_count']}), "
                     f"{task.examples_per_epoch:,} examples per epoch = {task.steps_per_epoch} "
                     f"steps of {train_cfg.batch_size}; {train_cfg.max_steps} steps = "
                     f"{train_cfg.max_steps / task.steps_per_epoch:.2f} epochs\n")
    return task


BATCH = 1024
RECIPES = {
    "word2vec": Recipe(
        name="word2vec",
        description="word vectors: skip-gram with negative sampling (CBOW: --extra='{\"cbow\": "
                    "true}') on Shakespeare or --data FILE; gensim's defaults",
        build=build_word2vec, preset="tiny",
        model_overrides=dict(arch="word2vec", d_model=100, n_head=1, n_layer=0, d_ff=0,
                             max_seq_len=1, dropout=0.0),
        train_defaults=dict(batch_size=BATCH, block_size=1, max_steps=0, optimizer="sgd",
                            lr=0.025 * BATCH, min_lr=0.0001 * BATCH, schedule="linear_decay",
                            warmup_steps=0, weight_decay=0.0, grad_clip=0.0, eval_every=0,
                            log_every=500, save_every=0, keep_checkpoints=1)),
}
