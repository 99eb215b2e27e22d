"""Translation training pieces (zeroformer/train/translation.py) and a tiny end-to-end run through
the one trainer: the model learns to reverse digit strings (translated with
zeroformer/inference/translation.py)."""

import torch

import zeroformer
from zeroformer.models import build_model
from zeroformer.train import Trainer, TrainConfig
from zeroformer.train.losses import IGNORE_INDEX
from zeroformer.inference.translation import bleu_chrf, translate
from zeroformer.train.translation import TranslationTask, collate, make_buckets
from zeroformer.train.trainer import seed_everything


class DigitTokenizer:
    """'3 1 4' <-> ids: <pad>=0, </s>=1, digit d = d + 2."""

    vocab_size = 12

    def encode(self, text):
        return [int(c) + 2 for c in text.split()]

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(str(i - 2) for i in ids if i >= 2)

    def save(self, path):  # checkpoints ask for it
        pass


def reverse_pairs(n, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        k = int(torch.randint(2, 7, (1,), generator=g))
        d = torch.randint(0, 10, (k,), generator=g).tolist()
        out.append((" ".join(map(str, d)), " ".join(map(str, d[::-1]))))
    return out


def test_buckets_cover_everything_within_budget():
    g = torch.Generator().manual_seed(0)
    lengths = [tuple(torch.randint(1, 40, (2,), generator=g).tolist()) for _ in range(500)]
    buckets = make_buckets(lengths, 200)
    assert sorted(i for b in buckets for i in b) == list(range(500))
    for b in buckets:
        assert len(b) * max(max(lengths[i]) for i in b) <= 200


def test_collate_shifts_targets():
    batch = collate([([5, 6, 1], [7, 8, 9, 1]), ([5, 1], [7, 1])], pad=0, start=0)
    assert batch["tgt_in"].tolist() == [[0, 7, 8, 9], [0, 7, 0, 0]]
    assert batch["labels"].tolist() == [[7, 8, 9, 1], [7, 1, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["src_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def tiny_task(scheduled_sampling=0.0, seed=0):
    tok = DigitTokenizer()
    cfg = zeroformer.preset("transformer-small", vocab_size=12, n_layer=2, n_encoder_layer=2,
                            d_model=64, n_head=4, d_ff=128, max_seq_len=16, dropout=0.0,
                            pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    seed_everything(seed)
    model = build_model(cfg)
    enc = lambda ps: [(tok.encode(s) + [1], tok.encode(t) + [1]) for s, t in ps]  # noqa: E731
    return TranslationTask(model, tok, enc(reverse_pairs(2000, 1)), reverse_pairs(40, 2),
                           batch_tokens=256, seed=seed, scheduled_sampling=scheduled_sampling)


def test_batches_are_a_pure_function_of_the_index():
    a, b = tiny_task(), tiny_task()
    n = len(a.buckets)
    for i in (0, 5, n - 1, n, n + 3, 3 * n + 1):  # across epochs, in any order
        for k, v in a.train_batch(i).items():
            assert torch.equal(v, b.train_batch(i)[k])
    epoch0 = {tuple(a.train_batch(i)["src_ids"].flatten().tolist()) for i in range(n)}
    assert len(epoch0) == n  # one epoch visits every bucket once


def test_learns_to_reverse():
    task = tiny_task()
    cfg = TrainConfig(max_steps=120, schedule="noam", warmup_steps=30, noam_factor=0.15,
                      beta2=0.98, eps=1e-9, weight_decay=0.0, label_smoothing=0.1, eval_every=0,
                      log_every=40, save_every=0, progress=False, device="cpu", block_size=16)
    result = Trainer(task, cfg).fit()
    losses = [e["loss"] for e in result["log"] if "loss" in e]
    assert losses[-1] < 0.6 * losses[0]
    srcs = [s for s, _ in task.valid]
    hyps = translate(task.model, task.tokenizer, srcs, beams=2)
    exact = sum(h == t for h, (_, t) in zip(hyps, task.valid)) / len(hyps)
    assert exact > 0.5, list(zip(srcs, hyps))[:5]
    bleu, chrf = bleu_chrf(hyps, [t for _, t in task.valid])
    assert bleu > 50


def test_scheduled_sampling_feeds_the_models_own_predictions():
    from zeroformer.train.losses import cross_entropy

    task = tiny_task(scheduled_sampling=1.0)
    model, batch = task.model, task.train_batch(0)
    model.train()
    with torch.no_grad():
        model.eval()  # no dropout, so the two passes are comparable
        pred = model(batch["src_ids"], batch["tgt_in"], src_mask=batch["src_mask"]).argmax(-1)
        fed = torch.where(batch["labels"] != IGNORE_INDEX, torch.roll(pred, 1, 1), batch["tgt_in"])
        fed[:, 0] = batch["tgt_in"][:, 0]
        want = cross_entropy(model(batch["src_ids"], fed, src_mask=batch["src_mask"]),
                             batch["labels"], 0.1)[0]
        gold = cross_entropy(model(batch["src_ids"], batch["tgt_in"], src_mask=batch["src_mask"]),
                             batch["labels"], 0.1)[0]
        model.training = True  # the task only samples in training mode; dropout modules stay off
        got = task.loss(model, batch)[0]
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, gold)


def test_translate_keeps_order_and_empty_lines():
    task = tiny_task()
    texts = ["1 2 3", "", "4 5 6 7 8 9", "   ", "1"]
    out = translate(task.model, task.tokenizer, texts, beams=2, max_new_tokens=4)
    assert len(out) == 5 and out[1] == "" and out[3] == ""
    alone = [translate(task.model, task.tokenizer, [t], beams=2, max_new_tokens=4)[0]
             for t in texts]
    assert out == alone
