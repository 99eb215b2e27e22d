"""A toy translator: the 2017 encoder-decoder Transformer learns to write its input backwards,
then shows where it looked (its cross-attention alignment).

    source  "abcde</s>"      the encoder reads all of it at once (bidirectional self-attention)
    target  "edcba</s>"      the decoder writes one character at a time; while training it is fed
                             the true previous characters ("teacher forcing": <pad> e d c b a)
    cross-attention          each target position's query against the source keys: to write the
                             t-th character of the reversal it should look at source position n-1-t,
                             an anti-diagonal alignment

Model: zeroformer/models/encoder_decoder.py:EncoderDecoder (1 encoder + 1 decoder layer, d 64,
one head, so the alignment is one matrix); data, teacher forcing and loss:
zeroformer/train/translation.py:TranslationTask; trained by zeroformer's one trainer.

Run: python examples/05_reverse_translation.py   (about ten seconds on a CPU)
"""

import random

import torch

from show import show
from zeroformer.config import preset
from zeroformer.models.encoder_decoder import EncoderDecoder
from zeroformer.tokenizers.char import CharTokenizer
from zeroformer.train import TrainConfig, Trainer
from zeroformer.train.translation import TranslationTask, encode_pairs

LETTERS = "abcdefgh"
tok = CharTokenizer(LETTERS, special_tokens=["<pad>", "</s>"])   # <pad> = 0 = decoder start
PAD, EOS = 0, 1


def words(n, seed):
    rng = random.Random(seed)
    return ["".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 7))) for _ in range(n)]


train = [(w, w[::-1]) for w in words(4000, seed=1)]
test = words(100, seed=2)

torch.manual_seed(0)
cfg = preset("transformer-small", vocab_size=tok.vocab_size, n_layer=1, d_model=64, n_head=1,
             d_ff=128, max_seq_len=16, dropout=0.0, pad_token_id=PAD, eos_token_id=EOS,
             decoder_start_token_id=PAD)
model = EncoderDecoder(cfg)
task = TranslationTask(model, tok, encode_pairs(tok, train, EOS), [], batch_tokens=512, seed=0,
                       label_smoothing=0.0)
Trainer(task, TrainConfig(max_steps=450, lr=3e-3, min_lr=3e-4, warmup_steps=30, beta2=0.98, block_size=16,
                          weight_decay=0.0, eval_every=0, log_every=100, save_every=0,
                          progress=False, device="cpu", dtype="fp32", seed=0)).fit()
model.eval()

# -- accuracy on words it never saw --------------------------------------------------------------
src = [tok.encode(w) + [EOS] for w in test]
correct = 0
for w, ids in zip(test, src):
    out = model.generate(torch.tensor([ids]), max_new_tokens=len(ids))[0, 1:].tolist()
    guess = tok.decode([i for i in out[: out.index(EOS)]] if EOS in out else out)
    correct += guess == w[::-1]
print(f"reversed correctly: {correct} of {len(test)} new words (greedy)")
show("accuracy", correct / len(test))

# -- the cross-attention alignment of one example ------------------------------------------------
word = "abcdefg"
s = torch.tensor([tok.encode(word) + [EOS]])
t = torch.tensor([[PAD] + tok.encode(word[::-1])])          # teacher forcing: <pad> g f e d c b a
attn = model.decoder[0].cross_attn
attn.keep_weights = True
with torch.no_grad():
    model(s, t)
attn.keep_weights = False
align = attn.last_weights[0, 0]                             # (target positions, source positions)
print(f"\ncross-attention for {word!r} -> {word[::-1]!r}: row = the target character being "
      "written, column = the source character looked at")
print("        " + "".join(f"{c:>6}" for c in list(word) + ["</s>"]))
for r, c in enumerate(word[::-1] + "$"):
    print(f"  {c if c != '$' else '</s>':>5} " + "".join(f"{v:6.2f}" for v in align[r].tolist()))
show("alignment", align)
