"""Our EncoderDecoder equals transformers.MarianMTModel on the same (random) weights: logits,
greedy output and beam output; export back to Marian round-trips through transformers."""

import pytest
import torch

import zeroformer

transformers = pytest.importorskip("transformers")
from transformers import MarianConfig, MarianMTModel  # noqa: E402

V, PAD, EOS = 97, 96, 0


def marian(tmp_path, share=True, tie=True, act="swish", scale=True, seed=0, eos_bias=0.0):
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
        hf.final_logits_bias[0, EOS] += eos_bias  # > 0: hypotheses end (EOS) at varied lengths
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


@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_targets_logits_match(tmp_path, side):
    """A batch of targets of different lengths, padded (right as for training, or left) with a
    decoder attention mask: the logits at every real target position equal transformers'
    (decoder_attention_mask). Left padding puts real tokens after padding, so the mask matters."""
    hf = marian(tmp_path, seed=2)
    ours = zeroformer.load(tmp_path)
    src, src_mask, _ = batch()
    g = torch.Generator().manual_seed(3)
    lengths, t = [7, 4, 2], 7
    tgt = torch.randint(1, PAD, (3, t), generator=g)
    tgt_mask = torch.zeros(3, t, dtype=torch.long)
    for i, n in enumerate(lengths):
        real = slice(0, n) if side == "right" else slice(t - n, t)
        tgt_mask[i, real] = 1
        tgt[i, real.start] = PAD  # each target starts with the decoder start token
    tgt = tgt.masked_fill(tgt_mask == 0, PAD)
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt,
                 decoder_attention_mask=tgt_mask).logits
        got = ours(src, tgt, src_mask=src_mask, tgt_mask=tgt_mask)
    real = tgt_mask.bool()
    assert int(real.sum()) == sum(lengths)
    torch.testing.assert_close(got[real], ref[real], atol=1e-4, rtol=1e-4)


def _strip(row):
    """A generated row without the decoder start token and the trailing padding."""
    row = row[1:]
    while row and row[-1] == PAD:
        row = row[:-1]
    return row


def test_greedy_matches(tmp_path):
    hf = marian(tmp_path)
    ours = zeroformer.load(tmp_path)
    src, src_mask, _ = batch()
    with torch.no_grad():
        ref = hf.generate(input_ids=src, attention_mask=src_mask, max_new_tokens=12,
                          num_beams=1, do_sample=False)
    got = ours.generate(src, 12, attention_mask=src_mask)
    assert got.tolist() == ref.tolist()


@pytest.mark.parametrize("eos_bias,alpha", [(0.0, 1.0), (2.5, 1.0), (2.5, 0.6)])
def test_beam_matches_over_seeds(tmp_path, eos_bias, alpha):
    """4 beams, 6 random models x 6 sentences (1 to 9 source tokens): every output equals
    transformers' with early_stopping=False, the stopping rule ours implements (a sentence is done
    when its K-th best finished hypothesis beats the best running score / current length^alpha).
    early_stopping=True (stop at K finished hypotheses) agrees on only 33/36 (no EOS bias: every
    best hypothesis runs to the length limit) and 15/36 (EOS bias 2.5: 11 end in EOS, at 1 or 10
    tokens). alpha 0.6: the 2017 paper's length penalty value (in transformers' |Y|^alpha form)."""
    n_eos = 0
    for seed in range(6):
        hf = marian(tmp_path / str(seed), seed=seed, eos_bias=eos_bias)
        ours = zeroformer.load(tmp_path / str(seed))
        g = torch.Generator().manual_seed(100 + seed)
        src = torch.randint(1, PAD, (6, 9), generator=g)
        src_mask = torch.ones_like(src)
        for i, n in enumerate([9, 7, 5, 3, 8, 1]):
            src_mask[i, n:] = 0
        src = src.masked_fill(src_mask == 0, PAD)
        with torch.no_grad():
            ref = hf.generate(input_ids=src, attention_mask=src_mask, max_new_tokens=12,
                              num_beams=4, do_sample=False, early_stopping=False,
                              length_penalty=alpha)
        got = ours.generate(src, 12, attention_mask=src_mask, num_beams=4, length_penalty=alpha)
        assert len(got) == len(ref) == 6
        for i, (a, b) in enumerate(zip(got.tolist(), ref.tolist())):
            assert _strip(a) == _strip(b), (seed, i)
            n_eos += EOS in _strip(a)
    if eos_bias:
        assert n_eos >= 6, n_eos  # outputs that end in EOS: the stopping rule decides them


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
