"""The `Task` protocol: what the one trainer needs from a model family.

A recipe builds a Task; the trainer only ever calls these:

    task.model                      an nn.Module with .config (a ModelConfig)
    task.tokenizer                  saved into checkpoints (or None)
    task.train_batch(i) -> batch    micro-batch number i; a PURE function of (seed, i)
    task.eval_batches() -> iterable the same held-out batches at every evaluation
    task.loss(model, batch) -> (loss, n_targets)   mean loss (scalar tensor), positions counted
    task.on_eval(model) -> dict     optional extras per evaluation (a sample, BLEU, accuracy)
    task.on_end(model) -> None      optional, after training (e.g. print a generated sample)
    task.data_parallel              True when N processes train exactly as one (see below)

Data parallel training (zeroformer/train/distributed.py) splits each batch's rows over ranks and
combines the ranks' losses as  sum_r n_r * loss_r / sum_r n_r : exact when `loss` is ONE mean
over the n positions it returns and the model is called through `model(...)` (DDP hooks only
its forward). A task whose loss is otherwise (a sum of means over different counts, or calls to
model.encode / model.classify) sets `data_parallel = False` and N > 1 processes refuse it.

Translation, BERT MLM, classification and LM fine-tuning subclass `Task` (or `LMTask`).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .data import batch_generator, random_windows
from .losses import model_loss


class Task:
    model: nn.Module
    tokenizer = None
    data_parallel = True

    def train_batch(self, index: int) -> dict:
        raise NotImplementedError

    def eval_batches(self) -> Iterable[dict]:
        return []

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def on_eval(self, model: nn.Module) -> dict:
        return {}

    def on_end(self, model: nn.Module) -> None:
        return None


class LMTask(Task):
    """Next-token prediction on 1-D token streams (train and validation), random windows.

    loss = cross_entropy(model(input_ids), labels): the logits at position t predict token t+1.
    Subclasses can override `make_batch(gen, split)` to synthesise data instead.
    """

    def __init__(self, model, train_ids=None, val_ids=None, batch_size=16, block_size=128,
                 seed=0, eval_steps=20, tokenizer=None, label_smoothing=0.0):
        self.model, self.tokenizer = model, tokenizer
        self.train_ids, self.val_ids = train_ids, val_ids
        self.batch_size, self.block_size = batch_size, block_size
        self.seed, self.eval_steps, self.label_smoothing = seed, eval_steps, label_smoothing

    def make_batch(self, gen: torch.Generator, split: str) -> dict:
        ids = self.train_ids if split == "train" else self.val_ids
        return random_windows(ids, self.batch_size, self.block_size, gen)

    def train_batch(self, index: int) -> dict:
        return self.make_batch(batch_generator(self.seed, index, "train"), "train")

    def eval_batches(self):
        if self.val_ids is None and type(self).make_batch is LMTask.make_batch:
            return []
        return [self.make_batch(batch_generator(self.seed, j, "eval"), "val")
                for j in range(self.eval_steps)]

    def loss(self, model, batch):
        return model_loss(model, batch["labels"], self.label_smoothing, batch["input_ids"],
                          attention_mask=batch.get("attention_mask"))
