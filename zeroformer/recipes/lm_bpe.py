"""Language-model recipes with a byte-level BPE tokenizer, and fine-tuning a loaded model.

shakespeare-bpe   a GPT-2-style model (learned positions, LayerNorm, GELU) on Shakespeare with a
                  byte-level BPE of 1,024 tokens learned from the first 300,000 characters
                  (seconds), 90/10 split; prints a sample at the end.
finetune          continue training a loaded model (zeroformer checkpoint, HF folder or .gguf)
                  on the user's data:
                    zeroformer train finetune --out DIR --model MODEL --data FILE
                  FILE.txt   plain text: next-token prediction (90/10 split);
                  FILE.jsonl {"prompt": ..., "response": ...} per line: supervised fine-tuning
                             with the combined objective (Radford et al. 2018, eq. 3)
                                 L = L_task + λ · L_LM
                             L_task: cross-entropy on the response tokens (prompt masked),
                             L_LM:   cross-entropy on the prompt tokens (the auxiliary LM loss),
                             λ = extra "lm_weight" (default 0.5; 0 = response-only SFT).
                  A model with a chat template (e.g. SmolLM2) sees each prompt rendered as a user
                  turn and learns to end the response with its end-of-turn token.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import UserError
from ..tokenizers.base import read_training_text
from ..train.data import batch_generator
from ..train.losses import IGNORE_INDEX, cross_entropy
from ..train.task import LMTask
from . import Recipe
from .lm import SampledLMTask, text_lm_task


def build_shakespeare_bpe(model_cfg, train_cfg):
    from .. import data
    from ..tokenizers.bpe import BPETokenizer

    text = (data.fetch("shakespeare") / "input.txt").read_text(encoding="utf-8")
    tok = BPETokenizer.train(text[:300_000], 1024)
    return text_lm_task(text, tok, model_cfg, train_cfg, sample_tokens=120)


# ----------------------------------------------------------------------------------- finetune
class SFTTask(LMTask):
    """Prompt/response pairs; loss = L_task(response) + λ · L_LM(prompt). Right-padded batches."""

    def __init__(self, model, train_rows, val_rows, lm_weight, pad_id, **kw):
        super().__init__(model, **kw)
        self.train_rows, self.val_rows = train_rows, val_rows
        self.lm_weight, self.pad_id = lm_weight, pad_id
        self.data_parallel = not lm_weight  # task mean + lm_weight * LM mean: two different counts

    def make_batch(self, gen, split):
        rows = self.train_rows if split == "train" else self.val_rows
        pick = torch.randint(0, len(rows), (self.batch_size,), generator=gen).tolist()
        seqs = [rows[i] for i in pick]
        t = min(self.block_size, max(len(p) + len(r) for p, r in seqs) - 1)
        ids = torch.full((len(seqs), t), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(seqs), t, dtype=torch.long)
        task = torch.full((len(seqs), t), IGNORE_INDEX, dtype=torch.long)
        lm = torch.full((len(seqs), t), IGNORE_INDEX, dtype=torch.long)
        for b, (p, r) in enumerate(seqs):
            full = (p + r)[-(t + 1):]                 # too long: keep the end (the response)
            n_prompt = max(len(p) - (len(p) + len(r) - len(full)), 0)
            x, y = torch.tensor(full[:-1]), torch.tensor(full[1:])
            ids[b, :len(x)], mask[b, :len(x)] = x, 1
            is_resp = torch.arange(1, len(full)) >= n_prompt   # target index j+1 is a response token
            task[b, :len(y)] = torch.where(is_resp, y, IGNORE_INDEX)
            lm[b, :len(y)] = torch.where(is_resp, IGNORE_INDEX, y)
        return {"input_ids": ids, "attention_mask": mask, "labels": task, "lm_labels": lm}

    def loss(self, model, batch):
        logits = model(batch["input_ids"], attention_mask=batch["attention_mask"])
        l_task, n = cross_entropy(logits, batch["labels"], self.label_smoothing)
        if self.lm_weight and bool((batch["lm_labels"] != IGNORE_INDEX).any()):
            l_lm, _ = cross_entropy(logits, batch["lm_labels"])
            return l_task + self.lm_weight * l_lm, n
        return l_task, n


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for i, line in enumerate(read_training_text([path])[0].splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not (isinstance(row["prompt"], str) and isinstance(row["response"], str)):
                raise TypeError
            pairs.append((row["prompt"], row["response"]))
        except (ValueError, KeyError, TypeError, RecursionError):
            raise UserError(f"{path}:{i}: expected a JSON object with \"prompt\" and "
                            "\"response\"") from None
    if len(pairs) < 2:
        raise UserError(f"{path}: need at least 2 prompt/response pairs")
    return pairs


def _encode_pair(tok, prompt: str, response: str) -> tuple[list[int], list[int]]:
    end = None
    if getattr(tok, "chat_template", None):
        from ..inference.chat import end_of_turn_id, render

        p = tok.encode(render(tok, [{"role": "user", "content": prompt}]))
        end = end_of_turn_id(tok)
    else:
        p = tok.encode(prompt)
    end = end if end is not None else tok.eos_token_id
    return p, tok.encode(response) + ([end] if end is not None else [])


def build_finetune(model_cfg, train_cfg):
    from .. import load, load_tokenizer

    opts = dict(train_cfg.extra)
    for key, flag in (("init", "--model PATH"), ("data", "--data FILE.txt|FILE.jsonl")):
        if getattr(train_cfg, key, None):
            opts[key] = getattr(train_cfg, key)
        if not opts.get(key):
            raise UserError(f"finetune needs {flag}")
    model = load(opts["init"], dtype=torch.float32)
    if model.config.arch != "decoder":
        raise UserError(f"{opts['init']}: not a decoder-only model (arch {model.config.arch!r})")
    model.config = model.config.replace(dropout=model_cfg.dropout)
    tok = model.tokenizer or load_tokenizer(opts.get("tokenizer", opts["init"]))
    path = Path(opts["data"])
    if not path.is_file():
        raise UserError(f"finetune data not found: {path}")
    block = min(train_cfg.block_size, model.config.max_seq_len)
    train_cfg.block_size = block  # fit the loaded model's context (the trainer checks it)
    kw = dict(batch_size=train_cfg.batch_size, block_size=block, seed=train_cfg.seed,
              eval_steps=train_cfg.eval_steps, tokenizer=tok,
              label_smoothing=train_cfg.label_smoothing)
    model.train()
    if path.suffix == ".jsonl":
        rows = [_encode_pair(tok, p, r) for p, r in _read_pairs(path)]
        order = torch.randperm(len(rows), generator=batch_generator(train_cfg.seed, 0, "split"))
        rows = [rows[i] for i in order.tolist()]
        n_val = max(1, len(rows) // 10)
        pad = tok.pad_token_id if getattr(tok, "pad_token_id", None) is not None else 0
        return SFTTask(model, rows[n_val:], rows[:n_val], float(opts.get("lm_weight", 0.5)), pad,
                       **kw)
    ids = torch.tensor(tok.encode(read_training_text([path])[0]), dtype=torch.long)
    n = int(0.9 * len(ids))
    task = SampledLMTask(model, ids[:n], ids[n:], **kw)
    task.sample_tokens = 120
    return task


RECIPES = {
    "shakespeare-bpe": Recipe(
        name="shakespeare-bpe",
        description="GPT-2-style LM on Shakespeare with a 1,024-token byte-level BPE",
        build=build_shakespeare_bpe, preset="tiny",
        model_overrides=dict(n_layer=4, d_model=128, n_head=4, d_ff=512, max_seq_len=128,
                             activation="gelu_tanh", dropout=0.1),
        train_defaults=dict(batch_size=16, block_size=128, max_steps=2000, lr=1e-3, min_lr=1e-4,
                            warmup_steps=100, eval_every=250, eval_steps=20, log_every=50,
                            save_every=500, beta2=0.99, weight_decay=0.1)),
    "finetune": Recipe(
        name="finetune",
        description="fine-tune a loaded LM on a .txt (LM) or .jsonl (SFT, L_task + λ·L_LM) "
                    "(--extra init/data)",
        build=build_finetune, preset="tiny", model_overrides=dict(dropout=0.0),
        train_defaults=dict(batch_size=4, block_size=256, max_steps=100, lr=5e-5, min_lr=5e-6,
                            warmup_steps=10, eval_every=50, eval_steps=5, log_every=10,
                            save_every=50, weight_decay=0.0),
        inputs=("tokenizer",)),
}
