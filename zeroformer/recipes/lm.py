"""Language-model recipes on the decoder-only model.

toy               a synthetic, deterministic task generated in-process: sequences
                  x_t = (s + d*t) mod V with random start s and stride d per row. Learnable by a tiny
                  model in seconds; used by the tests (exact resume, SIGKILL, CLI).
shakespeare-char  a character-level GPT on Shakespeare's works (nanoGPT's classic CPU demo):
                  90/10 split of `zeroformer data fetch shakespeare`/input.txt, 4 layers x 128 wide,
                  context 128; prints a generated sample at the end.
"""

from __future__ import annotations

import sys

import torch

from ..errors import UserError
from ..train.task import LMTask
from . import Recipe


class ToyTask(LMTask):
    """Rows of an arithmetic progression mod V: predicting x_{t+1} needs s and d from context."""

    def make_batch(self, gen, split):
        v, b, t = self.model.config.vocab_size, self.batch_size, self.block_size
        start = torch.randint(0, v, (b, 1), generator=gen)
        stride = torch.randint(1, 4, (b, 1), generator=gen)
        rows = (start + stride * torch.arange(t + 1)) % v
        return {"input_ids": rows[:, :-1], "labels": rows[:, 1:]}


def build_toy(model_cfg, train_cfg):
    from ..models import build_model

    return ToyTask(build_model(model_cfg), batch_size=train_cfg.batch_size,
                   block_size=train_cfg.block_size, seed=train_cfg.seed,
                   eval_steps=train_cfg.eval_steps, label_smoothing=train_cfg.label_smoothing)


class SampledLMTask(LMTask):
    """An LMTask that prints a temperature-0.8 sample of `sample_tokens` tokens at the end."""

    sample_tokens = 300

    def on_end(self, model):
        """The model sees at most max_seq_len tokens, so a long sample is generated in windows:
        each call continues the last max_seq_len // 2 tokens."""
        if not hasattr(model, "generate"):
            return
        try:
            out = self.tokenizer.encode("\n")
        except UserError as e:  # e.g. a tokenizer without "\n": the run itself succeeded
            print(f"(no sample: {e})")
            return
        device = next(model.parameters()).device
        ctx = model.config.max_seq_len
        start = len(out)
        while len(out) - start < self.sample_tokens:
            window = out[-(ctx // 2):]
            n = min(self.sample_tokens - (len(out) - start), ctx - len(window))
            ids = model.generate(torch.tensor([window], device=device), max_new_tokens=n,
                                 temperature=0.8, seed=self.seed + len(out))
            out += ids[0, len(window):].tolist()
        text = self.tokenizer.decode(out[start:])
        sys.stdout.write(f"--- sample ({self.sample_tokens} tokens, temperature 0.8) ---\n"
                         f"{text.strip()}\n---\n")
        sys.stdout.flush()


def text_lm_task(text: str, tok, model_cfg, train_cfg, sample_tokens: int = 300):
    """Next-token prediction on `text` encoded by `tok`: first 90% train, last 10% validation."""
    from ..models import build_model

    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    n = int(0.9 * len(ids))
    model = build_model(model_cfg.replace(vocab_size=tok.vocab_size))
    task = SampledLMTask(model, ids[:n], ids[n:], batch_size=train_cfg.batch_size,
                         block_size=train_cfg.block_size, seed=train_cfg.seed,
                         eval_steps=train_cfg.eval_steps, tokenizer=tok,
                         label_smoothing=train_cfg.label_smoothing)
    task.sample_tokens = sample_tokens
    return task


def build_shakespeare_char(model_cfg, train_cfg):
    from .. import data
    from ..tokenizers.char import CharTokenizer

    text = (data.fetch("shakespeare") / "input.txt").read_text(encoding="utf-8")
    return text_lm_task(text, CharTokenizer.train(text), model_cfg, train_cfg)


RECIPES = {
    "toy": Recipe(
        name="toy",
        description="tiny synthetic LM (arithmetic sequences mod 16); seconds on CPU, for tests",
        build=build_toy, preset="tiny",
        model_overrides=dict(vocab_size=16, n_layer=2, d_model=32, n_head=2, d_ff=64,
                             max_seq_len=32, dropout=0.1),
        train_defaults=dict(batch_size=8, block_size=16, max_steps=60, lr=3e-3, min_lr=3e-4,
                            warmup_steps=5, eval_every=20, eval_steps=2, log_every=10,
                            save_every=20, seed=1234, beta2=0.99)),
    "shakespeare-char": Recipe(
        name="shakespeare-char",
        description="character-level GPT on Shakespeare (4 layers, d_model 128, context 128)",
        build=build_shakespeare_char, preset="tiny",
        model_overrides=dict(n_layer=4, d_model=128, n_head=4, d_ff=512, max_seq_len=128,
                             dropout=0.1),
        train_defaults=dict(batch_size=16, block_size=128, max_steps=2000, lr=1e-3, min_lr=1e-4,
                            warmup_steps=100, eval_every=250, eval_steps=20, log_every=50,
                            save_every=500, beta2=0.99, weight_decay=0.1)),
}
