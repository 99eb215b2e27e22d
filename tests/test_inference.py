"""The inference layer (zeroformer/inference/) called directly, as a second front end would:
loaders refuse the wrong kind of model, the context is fitted from the left, streamed text equals
the text it streams (no half characters), the front ends' generation call is greedy decoding, a
classifier's batched scores equal row-by-row predictions, ranking breaks ties by position."""

import io
import string

import pytest
import torch

import zeroformer
from zeroformer.errors import UserError
from zeroformer.inference import chat, classification, embedding, load, text
from zeroformer.io.checkpoint import save_checkpoint
from zeroformer.models import build_model
from zeroformer.recipes.bert import classifier_from
from zeroformer.tokenizers import CharTokenizer

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _bert_cfg(vocab):
    return zeroformer.ModelConfig(arch="encoder", vocab_size=vocab, n_layer=1, d_model=32,
                                  n_head=4, d_ff=64, max_seq_len=32, prenorm=False,
                                  final_norm=False, embed_norm=True, type_vocab_size=2,
                                  pad_token_id=0, dropout=0.0, attn_dropout=0.0)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """{kind: checkpoint folder} for a tiny decoder, a bare BERT and a BERT classifier."""
    root = tmp_path_factory.mktemp("inference")
    torch.manual_seed(0)
    lm_tok = CharTokenizer(sorted(set(string.ascii_lowercase + " ")))
    decoder = build_model(zeroformer.preset("tiny", vocab_size=lm_tok.vocab_size, max_seq_len=32,
                                            dropout=0.0))
    save_checkpoint(decoder, root / "lm", tokenizer=lm_tok)
    tok = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz ", special_tokens=BERT_SPECIALS)
    bert = build_model(_bert_cfg(tok.vocab_size))            # a bare encoder + pooler
    save_checkpoint(bert, root / "bert", tokenizer=tok)
    clf = classifier_from(bert, ["x", "y", "z"], dropout=0.0)
    with torch.no_grad():   # weights that tell rows apart (a fresh init gives every row one class)
        for w in clf.parameters():
            if w.dim() == 2:
                w.normal_(0, 0.5)
    save_checkpoint(clf, root / "clf", tokenizer=tok)
    return {k: root / k for k in ("lm", "bert", "clf")}


def test_loaders_refuse_the_wrong_kind_of_model(folders):
    model, tok = load.load_lm(folders["lm"])
    assert model.config.arch == "decoder" and not model.training and tok.vocab_size == 27
    with pytest.raises(UserError, match="not a translator"):
        load.load_translator(folders["lm"])
    with pytest.raises(UserError, match="not a decoder-only language model"):
        load.load_lm(folders["bert"])
    with pytest.raises(UserError, match=r"not a BERT \(encoder\) model"):
        load.load_encoder(folders["lm"])
    with pytest.raises(UserError, match="no classification head"):
        load.load_encoder(folders["bert"], classifier=True)
    with pytest.raises(UserError, match="exclude each other"):
        load.load_lm(folders["lm"], int8=True, int4=True)
    model, _ = load.load_encoder(folders["clf"], classifier=True)
    assert model.labels == ["x", "y", "z"]


def test_fit_context_keeps_the_end_and_says_so():
    said = []
    ids, n = text.fit_context(list(range(10)), 4, 8, warn=said.append)
    assert (ids, n) == ([6, 7, 8, 9], 4) and len(said) == 1 and "cut from the left" in said[0]
    ids, n = text.fit_context(list(range(3)), 20, 8, warn=said.append)
    assert (ids, n) == ([2], 7) and "reduced to 7" in said[1]      # 1 prompt + 7 new = 8
    said.clear()
    assert text.fit_context([1, 2], 3, 8, warn=said.append) == ([1, 2], 3) and not said


def test_stream_never_shows_half_a_character():
    """A byte-level BPE that never saw these characters splits each into byte tokens; the stream
    must hold a character back until its last byte, and end with exactly the input text."""
    from zeroformer.tokenizers.bpe import BPETokenizer

    tok = BPETokenizer.train(["plain ascii text only"] * 3, 260)
    want = "naïve café 🙂 ok"
    ids = tok.encode(want)
    assert len(ids) > len(want)                     # some characters are several tokens
    out = io.StringIO()
    stream = text.TextStream(tok, out=out)
    shown = []
    for i in ids:
        stream(torch.tensor([i]))
        shown.append(out.getvalue())
    stream.finish()
    assert out.getvalue() == want + "\n"
    assert all("\ufffd" not in s and want.startswith(s) for s in shown)


def test_text_stream_never_shows_a_stop_string():
    """The CLI's stream and the server share one Detokenizer: with stops, what is written token by
    token is always a prefix of the text cut at the first stop string, and never holds any part
    of the stop string itself (a possible start is held back until it is ruled out)."""
    tok = CharTokenizer(list("abcXYZ "))
    full = "ab cab XYa XYZ bc"
    out = io.StringIO()
    stream = text.TextStream(tok, out=out, stops=["XYZ"])
    shown = []
    for i in tok.encode(full):
        stream(torch.tensor([i]))
        shown.append(out.getvalue())
    stream.finish()
    want = full[:full.index("XYZ")]
    assert out.getvalue() == want + "\n"
    assert all(want.startswith(s) for s in shown)
    assert shown[full.index("XY") + 1] == full[:full.index("XY")]   # "XY" held back, then shown


def test_eos_ids_and_end_of_turn():
    tok = CharTokenizer(list("ab"), special_tokens=["<|im_end|>", "</s>"])

    class Model:
        config = zeroformer.preset("tiny", eos_token_id=[5, 1])

    assert text.eos_ids(Model, tok) == [1, 5]
    assert text.eos_ids(Model, tok, chat.END_OF_TURN) == sorted({1, 5, tok.token_to_id("</s>"),
                                                                 tok.token_to_id("<|im_end|>")})
    assert chat.end_of_turn_id(tok) == tok.token_to_id("<|im_end|>")
    assert chat.end_of_turn_id(CharTokenizer(list("ab"))) is None


def test_generate_stream_is_greedy_decoding_and_streams_its_text(folders):
    """The front ends' generation call at temperature 0 gives the tokens of a plain greedy loop
    (argmax of the whole prefix re-run every step), and the stream shows their text; a stop
    string ends it early."""
    model, tok = load.load_lm(folders["lm"])
    ids = tok.encode("to be or")
    x = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(12):
            x = torch.cat([x, model(x)[:, -1].argmax(-1, keepdim=True)], 1)
    out = io.StringIO()
    stream = text.TextStream(tok, out=out)
    got = text.generate_stream(model, ids, 12, stream, temperature=0.0)
    assert torch.equal(got, x)
    stream.finish()
    new_text = tok.decode(x[0, len(ids):].tolist())
    assert out.getvalue() == new_text + "\n"
    stop = text.stop_on_strings(tok, len(ids), [new_text[:3]])
    short = text.generate_stream(model, ids, 12, text.TextStream(tok, out=io.StringIO()), stop=stop)
    assert short.size(1) < x.size(1)
    assert tok.decode(short[0, len(ids):].tolist()).startswith(new_text[:3])


def test_classifier_scores_equal_row_by_row_predictions(folders):
    """Batched, padded scoring (the `eval accuracy` path and the classify recipe's evaluation)
    equals predicting each row alone, without padding; macro-F1 recomputed from the counts."""
    model, tok = load.load_encoder(folders["clf"], classifier=True)
    g = torch.Generator().manual_seed(1)
    rows = []
    for k in range(23):
        n = int(torch.randint(1, 20, (1,), generator=g))
        letters = torch.randint(0, 26, (n,), generator=g)
        words = "".join(string.ascii_lowercase[int(i)] for i in letters)
        rows.append((words, "ab cd" if k % 3 == 0 else None, "xyz"[k % 3]))
    got = classification.classifier_scores(model, tok, rows, batch_size=5, max_length=16)
    pred = []
    for r in rows:
        b = classification.classify_batch(tok, [r], model.labels, 16)
        with torch.no_grad():
            pred.append(int(model.classify(b["input_ids"], None, b["token_type_ids"]).argmax()))
    gold = [model.labels.index(r[2]) for r in rows]
    assert len(set(pred)) > 1
    assert got["accuracy"] == pytest.approx(sum(p == y for p, y in zip(pred, gold)) / len(rows))
    f1 = []
    for c in range(3):
        tp = sum(p == y == c for p, y in zip(pred, gold))
        prec = tp / max(1, sum(p == c for p in pred))
        rec = tp / max(1, sum(y == c for y in gold))
        f1.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    assert got["macro_f1"] == pytest.approx(sum(f1) / 3)


def test_rank_best_first_ties_by_position():
    docs = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [1.0, 0.0]])
    assert embedding.rank(torch.tensor([1.0, 0.0]), docs, 3) == [(1.0, 1), (1.0, 3),
                                                                 (pytest.approx(0.6), 2)]
