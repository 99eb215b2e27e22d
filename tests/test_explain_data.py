"""`zeroformer explain`'s data (inference/explain.py) is transformers' forward pass on the same
weights: attention of every stack, layer and head (output_attentions, eager), the residual stream
(output_hidden_states), the embedding and position vectors, the logits and probabilities; for a
decoder (GPT-2), BERT with an MLM head, a Marian translator and MiniLM. The page is the data."""

import json
import re
import string

import pytest
import torch

import zeroformer
from requires import require_data, require_package
from zeroformer.cli import main
from zeroformer.inference.explain import explain
from zeroformer.inference.explain_page import render
from zeroformer.tokenizers.char import CharTokenizer
from zeroformer.tokenizers.wordpiece import WordPieceTokenizer

transformers = pytest.importorskip("transformers")

CHARS = string.ascii_lowercase + " .,"


def perturb(model, scale=0.3):
    """Weights far from the init, so attention is far from uniform."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" not in name:
                p.add_(torch.randn_like(p) * scale)
    return model


def check_attention(data, want: dict):
    """data's attention stacks == `want` {stack: [(1, h, T_q, T_k) per layer]} (rounded to 5
    decimals in the page), every row a distribution."""
    got = {s["name"]: s["layers"] for s in data["attention"]}
    assert set(got) == set(want)
    for name, layers in want.items():
        assert len(got[name]) == len(layers)
        for g, w in zip(got[name], layers):
            g = torch.tensor(g, dtype=torch.float64)
            torch.testing.assert_close(g, w[0].double(), atol=2e-5, rtol=0)
            torch.testing.assert_close(g.sum(-1), torch.ones(g.shape[:-1], dtype=torch.float64),
                                       atol=1e-4, rtol=0)


def check_prediction(pred, logits: torch.Tensor, top: int):
    """pred's per-position top logits, ids and p == logits (T, V) computed by transformers."""
    assert len(pred["positions"]) == logits.size(0)
    p = torch.softmax(logits.double(), -1)
    for t, row in enumerate(pred["positions"]):
        z, ids = logits[t].topk(min(top, logits.size(-1)))
        assert row["ids"] == ids.tolist()
        torch.testing.assert_close(torch.tensor(row["logits"]), z, atol=1e-4, rtol=0)
        torch.testing.assert_close(torch.tensor(row["p"], dtype=torch.float64), p[t, ids],
                                   atol=1e-6, rtol=0)


def test_decoder_is_transformers_gpt2(tmp_path):
    cfg = transformers.GPT2Config(vocab_size=len(CHARS), n_positions=32, n_embd=32, n_layer=2,
                                  n_head=4)
    torch.manual_seed(0)
    perturb(transformers.GPT2LMHeadModel(cfg)).save_pretrained(tmp_path)
    ref = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, attn_implementation="eager")
    tok = CharTokenizer(CHARS)
    text = "to be or not to be"
    data = explain(zeroformer.load(tmp_path), tok, text, top=10)
    ids = torch.tensor([tok.encode(text)])
    with torch.no_grad():
        out = ref.eval()(ids, output_attentions=True, output_hidden_states=True)
    assert [t["id"] for t in data["tokens"]["input"]] == ids[0].tolist()
    assert [t["text"] for t in data["tokens"]["input"]] == list(text)
    check_attention(data, {"self": out.attentions})
    # the residual stream: transformers' hidden_states[l] for l < L (its last has ln_f applied;
    # ours is the stream itself, before the final norm)
    (res,) = data["residual"]
    norms = torch.tensor(res["norms"])
    assert norms.shape == (cfg.n_layer + 1, ids.size(1))
    for layer in range(cfg.n_layer):
        torch.testing.assert_close(norms[layer], out.hidden_states[layer][0].norm(dim=-1),
                                   atol=1e-3, rtol=1e-4)
    emb = data["embedding"]["input"]
    torch.testing.assert_close(torch.tensor(emb["token"]["norm"]),
                               ref.transformer.wte.weight[ids[0]].norm(dim=-1), atol=1e-3, rtol=0)
    torch.testing.assert_close(torch.tensor(emb["position"]["norm"]),
                               ref.transformer.wpe.weight[:ids.size(1)].norm(dim=-1),
                               atol=1e-3, rtol=0)
    torch.testing.assert_close(torch.tensor(emb["token"]["head"]),
                               ref.transformer.wte.weight[ids[0]].detach(), atol=1e-4, rtol=0)
    pred = data["prediction"]
    assert pred["top"] == 10 and pred["vocab_size"] == len(CHARS)
    assert pred["default"] == ids.size(1) - 1
    check_prediction(pred, out.logits[0], 10)


def test_bert_mask_prediction_is_transformers(tmp_path):
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat",
             "dog", ".", "##s", "a"]
    tok = WordPieceTokenizer({w: i for i, w in enumerate(words)})
    cfg = transformers.BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=48,
                                  max_position_embeddings=40)
    torch.manual_seed(0)
    perturb(transformers.BertForMaskedLM(cfg), 0.1).save_pretrained(tmp_path)
    ref = transformers.BertForMaskedLM.from_pretrained(tmp_path, attn_implementation="eager")
    data = explain(zeroformer.load(tmp_path), tok, "the cat [MASK] on the mats.", top=10)
    ids = torch.tensor([tok.encode("the cat [MASK] on the mats.", add_special_tokens=True)])
    assert [t["piece"] for t in data["tokens"]["input"]] == [
        "[CLS]", "the", "cat", "[MASK]", "on", "the", "mat", "##s", ".", "[SEP]"]
    with torch.no_grad():
        out = ref.eval()(ids, output_attentions=True, output_hidden_states=True)
    check_attention(data, {"self": out.attentions})
    norms = torch.tensor(data["residual"][0]["norms"])
    want = torch.stack([h[0].norm(dim=-1) for h in out.hidden_states])  # post-norm: all of them
    torch.testing.assert_close(norms, want, atol=1e-3, rtol=1e-4)
    pred = data["prediction"]
    assert pred["default"] == 3  # the [MASK]
    check_prediction(pred, out.logits[0], 10)


def test_translator_is_transformers_marian(tmp_path):
    tok = CharTokenizer(CHARS, special_tokens=("</s>", "<pad>"))
    eos, pad = 0, 1
    cfg = transformers.MarianConfig(
        vocab_size=tok.vocab_size, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=48, pad_token_id=pad,
        decoder_start_token_id=pad, eos_token_id=eos, forced_eos_token_id=None)
    torch.manual_seed(0)
    perturb(transformers.MarianMTModel(cfg), 0.1).save_pretrained(tmp_path)
    ref = transformers.MarianMTModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    model = zeroformer.load(tmp_path)
    src = torch.tensor([tok.encode("el gato") + [eos]])
    # with a target: the target starts with the decoder start token
    data = explain(model, tok, "el gato", target="the cat", top=10)
    tgt = torch.tensor([[pad] + tok.encode("the cat")])
    assert [t["id"] for t in data["tokens"]["source"]] == src[0].tolist()
    assert [t["id"] for t in data["tokens"]["target"]] == tgt[0].tolist()
    with torch.no_grad():
        out = ref(input_ids=src, decoder_input_ids=tgt, output_attentions=True)
    check_attention(data, {"encoder": out.encoder_attentions, "decoder": out.decoder_attentions,
                           "cross": out.cross_attentions})
    assert data["attention"][2]["queries"] == "target" and data["attention"][2]["keys"] == "source"
    check_prediction(data["prediction"], out.logits[0], 10)
    # without one: transformers' greedy translation (its </s> left off)
    data = explain(model, tok, "el gato", max_tokens=12)
    with torch.no_grad():
        greedy = ref.generate(src, num_beams=1, do_sample=False, max_new_tokens=11)[0].tolist()
    if eos in greedy[1:]:
        greedy = greedy[:greedy.index(eos, 1)]
    assert [t["id"] for t in data["tokens"]["target"]] == greedy
    assert any("greedy translation" in n for n in data["notes"])


def test_minilm_has_no_mlm_head(tmp_path):
    path = require_data("minilm")
    model = zeroformer.load(path)
    tok = zeroformer.load_tokenizer(path)
    text = "The capital of France is [MASK]."
    data = explain(model, tok, text)
    assert data["prediction"] is None and data["model"]["mlm_head"] is False
    ref = transformers.BertModel.from_pretrained(path, attn_implementation="eager").eval()
    hf_tok = require_package("tokenizers").Tokenizer.from_file(str(path / "tokenizer.json"))
    hf_tok.no_padding()
    ids = hf_tok.encode(text).ids
    assert [t["id"] for t in data["tokens"]["input"]] == ids
    with torch.no_grad():
        out = ref(torch.tensor([ids]), output_attentions=True, output_hidden_states=True)
    check_attention(data, {"self": out.attentions})
    torch.testing.assert_close(torch.tensor(data["residual"][0]["norms"][-1]),
                               out.last_hidden_state[0].norm(dim=-1), atol=1e-3, rtol=1e-4)


def tiny_decoder(tmp_path):
    tok = CharTokenizer(CHARS + "<>/()&1")
    cfg = zeroformer.preset("tiny", vocab_size=tok.vocab_size, max_seq_len=24)
    from zeroformer.io.checkpoint import save_checkpoint
    from zeroformer.models import build_model

    torch.manual_seed(0)
    save_checkpoint(build_model(cfg), tmp_path / "dec", tokenizer=tok)
    return tmp_path / "dec"


def test_long_text_is_cut_with_a_note_and_page_escapes_the_text(tmp_path, capsys):
    path = tiny_decoder(tmp_path)
    text = "</script><script>alert(1)</script> & more " * 3
    assert main(["explain", "--model", str(path), "--text", text, "--max-tokens", "16",
                 "--out", str(tmp_path / "p.html")]) == 0
    assert "only its first 16" in capsys.readouterr().out
    page = (tmp_path / "p.html").read_text(encoding="utf-8")
    assert page.count("</script>") == 2 and "alert(1)</" not in page
    blob = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    data = json.loads(blob.group(1))
    assert data["text"] == text and len(data["tokens"]["input"]) == 16
    assert data["notes"] == [f"the text has {len(text)} tokens; only its first 16 are shown"]
    assert render(data) == page  # the page is the data
    # the context bounds the cut too
    data = explain(zeroformer.load(path), zeroformer.load(path).tokenizer, text, max_tokens=500)
    assert len(data["tokens"]["input"]) == 24


def test_explain_cli_mistakes_are_one_line(tmp_path, capsys):
    path = tiny_decoder(tmp_path)
    for argv in (["--model", str(tmp_path / "nope"), "--text", "a"],
                 ["--model", str(path), "--text", "a", "--max-tokens", "1"],
                 ["--model", str(path), "--text", "a", "--top", "3"],
                 ["--model", str(path), "--text", "a", "--out", str(tmp_path)],
                 ["--model", str(path), "--text", ""]):
        assert main(["explain", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("zeroformer: error:") and err.count("\n") == 1, err
