"""Our EncoderDecoder equals transformers.MarianMTModel on the same (random) weights: logits,
greedy output and beam output; export back to Marian round-trips through transformers."""

import pytest
import torch

import zeroformer

transformers = pytest.importorskip("transformers")
from transformers import MarianConfig, MarianMTModel  # noqa: E402

V, PAD, EOS = 97, 96, 0


def marian(tmp_path, share=True, tie=True, act="swish", scale=True, seed=0):
    torch.manual_seed(seed)
    cfg = MarianConfig(vocab_size=V, d_model=32, encoder_layers=2, decoder_layers=3,
                       encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                       decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=PAD,
                       decoder_start_token_id=PAD, eos_token_id=EOS, forced_eos_token_id=None,
                       activation_function=act, scale_embedding=scale,
                       share_encoder_decoder_embeddings=share, tie_word_embeddings=tie)
    hf = MarianMTModel(cfg).eval()
    with torch.no_grad():  # make every parameter (norms, biases, logits bias) non-trivial
        for name, p in hf.named_parameters():
            if "embed_positions" not in name:
                p.add_(torch.randn_like(p) * 0.1)
        hf.final_logits_bias.normal_(0, 0.5)
    hf.save_pretrained(tmp_path)
    return hf


def batch():
    g = torch.Generator().manual_seed(1)
    src = torch.randint(1, PAD, (3, 9), generator=g)
    src_mask = torch.ones_like(src)
    src_mask[1, 6:] = 0
    src_mask[2, 3:] = 0
    src = src.masked_fill(src_mask == 0, PAD)
    tgt = torch.randint(1, PAD, (3, 7), generator=g)
    tgt[:, 0] = PAD  # decoder start
    return src, src_mask, tgt


@pytest.mark.parametrize("share,tie,act,scale", [(True, True, "swish", True),
                                                 (False, False, "relu", False),
                                                 (False, True, "gelu", True)])
def test_logits_match(tmp_path, share, tie, act, scale):
    hf = marian(tmp_path, share, tie, act, scale)
    ours = zeroformer.load(tmp_path)
    assert ours.config.arch == "encoder_decoder"
    src, src_mask, tgt = batch()
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt).logits
        got = ours(src, tgt, src_mask=src_mask)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_greedy_and_beam_match(tmp_path):
    hf = marian(tmp_path)
    ours = zeroformer.load(tmp_path)
    src, src_mask, _ = batch()
    with torch.no_grad():
        ref = hf.generate(input_ids=src, attention_mask=src_mask, max_new_tokens=12,
                          num_beams=1, do_sample=False)
    got = ours.generate(src, 12, attention_mask=src_mask)
    assert got.tolist() == ref.tolist()
    with torch.no_grad():
        ref4 = hf.generate(input_ids=src, attention_mask=src_mask, max_new_tokens=12,
                           num_beams=4, do_sample=False, early_stopping=True, length_penalty=1.0)
    got4 = ours.generate(src, 12, attention_mask=src_mask, num_beams=4)
    # rows may differ in padding width only
    for a, b in zip(got4.tolist(), ref4.tolist()):
        strip = lambda r: [t for t in r[1:] if t != PAD]  # noqa: E731
        assert strip(a) == strip(b)


def test_export_round_trip(tmp_path):
    marian(tmp_path / "hf", share=False, tie=False)
    ours = zeroformer.load(tmp_path / "hf")
    from zeroformer.io.hf_marian import export

    export(ours, tmp_path / "out")
    back = MarianMTModel.from_pretrained(tmp_path / "out").eval()
    src, src_mask, tgt = batch()
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=src, attention_mask=src_mask,
                                        decoder_input_ids=tgt).logits,
                                   ours(src, tgt, src_mask=src_mask), atol=1e-4, rtol=1e-4)
    again = zeroformer.load(tmp_path / "out")
    a, b = ours.state_dict(), again.state_dict()
    assert list(a) == list(b)     # the same tensors, none missing or extra
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_convert_cli_to_hf(tmp_path):
    marian(tmp_path / "hf")
    from zeroformer.cli import main

    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "zf")]) == 0
    assert main(["convert", str(tmp_path / "zf"), str(tmp_path / "hf2"), "--to", "hf"]) == 0
    a = MarianMTModel.from_pretrained(tmp_path / "hf").eval()
    b = MarianMTModel.from_pretrained(tmp_path / "hf2").eval()
    src, src_mask, tgt = batch()
    with torch.no_grad():
        torch.testing.assert_close(a(input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt).logits,
                                   b(input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt).logits)
