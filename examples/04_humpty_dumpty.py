"""A character-level language model learns one line: "humpty dumpty sat on a wall".

    vocabulary   the line's distinct characters, sorted; a character's id = its index
    embeddings   a learned vector of d numbers per id (a row of the model's table E)
    context      the model reads a fixed window of the last N = 8 characters
    prediction   logits for the next character -> softmax -> probabilities; loss = -log p(true)
    generation   start from "h", append the most likely next character, slide the window, repeat

The model is zeroformer's decoder-only Transformer (the class GPT-2 and LLaMA are configs of,
zeroformer/models/decoder.py:Decoder), made tiny, trained by zeroformer's one trainer
(zeroformer/train/trainer.py:Trainer) on every 8-character window of the line.

Run: python examples/04_humpty_dumpty.py   (a few seconds on a CPU)
"""

import torch

from show import show
from zeroformer.config import ModelConfig
from zeroformer.models.decoder import Decoder
from zeroformer.tokenizers.char import CharTokenizer
from zeroformer.train import Task, TrainConfig, Trainer
from zeroformer.train.losses import model_loss

TEXT = "humpty dumpty sat on a wall"
N = 8  # the context window

tok = CharTokenizer.train(TEXT)
vocab = [tok.decode([i]) for i in range(tok.vocab_size)]
ids = tok.encode(TEXT)
print(f"vocabulary ({tok.vocab_size} characters): {vocab}")
show("vocabulary", vocab)
show("ids", ids)

torch.manual_seed(0)
cfg = ModelConfig(arch="decoder", vocab_size=tok.vocab_size, n_layer=1, d_model=32, n_head=2,
                  d_ff=64, max_seq_len=N, dropout=0.0)
model = Decoder(cfg)
print(f"embedding table E: {tuple(model.embed.tok.weight.shape)} (a row of {cfg.d_model} numbers "
      f"per character); 'h' starts as {[round(v, 3) for v in model.embed.tok.weight[tok.encode('h')[0], :4].tolist()]}...")

# every window of N characters and the N characters that follow each position
data = torch.tensor(ids)
windows = torch.stack([data[s: s + N + 1] for s in range(len(ids) - N)])
batch = {"input_ids": windows[:, :-1], "labels": windows[:, 1:]}
print(f"{len(windows)} training windows, e.g. {TEXT[0:N]!r} -> next characters {TEXT[1:N + 1]!r}")
show("windows", len(windows))


class Windows(Task):
    """The whole line's windows in every batch; the loss of zeroformer's LM objective."""

    def __init__(self, model):
        self.model, self.tokenizer = model, tok

    def train_batch(self, index):
        return batch

    def loss(self, model, b):
        return model_loss(model, b["labels"], 0.0, b["input_ids"])


def next_char_probs(context: str) -> torch.Tensor:
    with torch.no_grad():
        logits = model(torch.tensor([tok.encode(context[-N:])]))[0, -1]
    return torch.softmax(logits, -1)


probe = "humpty d"
p = next_char_probs(probe)
print(f"before training, p(next | {probe!r}) is flat: max {p.max():.2f}, "
      f"p('u') = {p[tok.encode('u')[0]]:.3f} (about 1/{tok.vocab_size})")

Trainer(Windows(model), TrainConfig(max_steps=150, lr=1e-2, min_lr=1e-3, warmup_steps=10,
                                    batch_size=len(windows), block_size=N, weight_decay=0.0,
                                    eval_every=0, log_every=50, save_every=0, progress=False,
                                    device="cpu", dtype="fp32", seed=0)).fit()
model.eval()

p = next_char_probs(probe)
top = torch.topk(p, 3)
print(f"after training, p(next | {probe!r}): " +
      ", ".join(f"{tok.decode([int(i)])!r} {v:.3f}" for v, i in zip(top.values, top.indices)))
show("p after 'humpty d'", p)

out = "h"
while len(out) < len(TEXT):
    out += tok.decode([int(next_char_probs(out).argmax())])   # greedy, window of the last N chars
print(f"generated from 'h', greedy, window {N}: {out!r}")
show("generated", out)
