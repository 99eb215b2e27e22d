"""Our Decoder gives the same logits as transformers' GPT2LMHeadModel and LlamaForCausalLM on the
same (random) weights: HF builds the model from a config, saves it with save_pretrained, and
`zeroformer.load` reads the folder. Also: left-padded batches, export back to HF format, fast paths."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

import zeroformer  # noqa: E402
from zeroformer.errors import UserError  # noqa: E402

ATOL = 2e-5


def _randomize(model, seed=0):
    """Perturb every parameter so norms, biases and attention are far from their init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.08)
    return model.eval()


def make_gpt2(tmp_path, tie=True, act="gelu_new", n_layer=2, d=64, h=4, inner=None, seed=0):
    cfg = transformers.GPT2Config(vocab_size=101, n_positions=48, n_embd=d, n_layer=n_layer,
                                  n_head=h, n_inner=inner, activation_function=act,
                                  tie_word_embeddings=tie, resid_pdrop=0.0, embd_pdrop=0.0,
                                  attn_pdrop=0.0)
    torch.manual_seed(seed)
    hf = _randomize(transformers.GPT2LMHeadModel(cfg), seed)
    hf.save_pretrained(tmp_path)
    return hf, zeroformer.load(tmp_path)


def make_llama(tmp_path, tie=False, h=4, kv=2, d=64, head_dim=None, bias=False, theta=10000.0,
               n_layer=2, seed=0):
    cfg = transformers.LlamaConfig(vocab_size=103, hidden_size=d, intermediate_size=96,
                                   num_hidden_layers=n_layer, num_attention_heads=h,
                                   num_key_value_heads=kv, head_dim=head_dim,
                                   max_position_embeddings=64, rms_norm_eps=1e-5,
                                   rope_theta=theta, tie_word_embeddings=tie,
                                   attention_bias=bias, mlp_bias=bias)
    torch.manual_seed(seed)
    hf = _randomize(transformers.LlamaForCausalLM(cfg), seed)
    hf.save_pretrained(tmp_path)
    return hf, zeroformer.load(tmp_path)


GPT2_CASES = [dict(), dict(tie=False), dict(act="relu", inner=80), dict(n_layer=3, d=48, h=6)]
LLAMA_CASES = [dict(), dict(kv=4), dict(h=8, kv=1), dict(tie=True, theta=100000.0),
               dict(head_dim=32), dict(bias=True, h=6, kv=3, d=48)]


def _ids(vocab, b=2, t=11, seed=1):
    return torch.randint(0, vocab, (b, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kw", GPT2_CASES, ids=str)
def test_gpt2_logits(tmp_path, kw):
    hf, ours = make_gpt2(tmp_path, **kw)
    ids = _ids(101)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("kw", LLAMA_CASES, ids=str)
def test_llama_logits(tmp_path, kw):
    hf, ours = make_llama(tmp_path, **kw)
    assert ours.config.n_kv_head == hf.config.num_key_value_heads
    ids = _ids(103)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, atol=ATOL, rtol=1e-4)


def _left_padded(vocab, lengths=(9, 5, 7)):
    t = max(lengths)
    ids = _ids(vocab, len(lengths), t, seed=3)
    mask = torch.zeros(len(lengths), t, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, t - n:] = 1
        ids[i, : t - n] = 0
    return ids, mask


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_left_padded_batch(tmp_path, family):
    hf, ours = (make_gpt2 if family == "gpt2" else make_llama)(tmp_path)
    ids, mask = _left_padded(ours.config.vocab_size)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)   # HF needs explicit positions under left padding
    with torch.no_grad():
        a = ours(ids, attention_mask=mask)
        b = hf(ids, attention_mask=mask, position_ids=pos).logits
        real = mask.bool()
        torch.testing.assert_close(a[real], b[real], atol=ATOL, rtol=1e-4)
        # a padded row equals the same prompt run alone, unpadded
        n = int(mask[1].sum())
        alone = ours(ids[1:2, -n:])
        torch.testing.assert_close(a[1, -n:], alone[0], atol=ATOL, rtol=1e-4)


def _until_eos(row, eos):
    """A generated continuation up to and including its first EOS (what follows is padding)."""
    return row[: row.index(eos) + 1] if eos in row else row


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("eos_bias", [0.0, 2.0])
def test_beam_search_equals_transformers(tmp_path, family, eos_bias):
    """4 beams on a left-padded batch of 3 prompts, 3 random models: our output equals
    transformers' generate(num_beams=4, do_sample=False, early_stopping=False, length_penalty=1.0)
    token for token up to EOS. eos_bias > 0 pushes the EOS logit up so that hypotheses end at
    varied lengths (and sentences leave the batch early); at 0 they run to the length limit."""
    eos, n_eos = 5, 0
    for seed in range(3):
        folder = tmp_path / str(seed)
        hf, _ = (make_gpt2 if family == "gpt2" else make_llama)(folder, seed=seed)
        with torch.no_grad():  # logit_EOS += eos_bias * 3 |final-norm direction|
            if family == "gpt2":
                b = hf.transformer.ln_f.bias
                hf.transformer.wte.weight[eos] += eos_bias * 3 * b / b.norm()
            else:
                w = hf.model.norm.weight
                hf.lm_head.weight[eos] += eos_bias * 3 * w / w.norm()
        hf.save_pretrained(folder)
        ours = zeroformer.load(folder)
        ids, mask = _left_padded(ours.config.vocab_size)
        ids[ids == eos] = 7
        with torch.no_grad():
            ref = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=10, num_beams=4,
                              do_sample=False, early_stopping=False, length_penalty=1.0,
                              eos_token_id=eos, pad_token_id=0)
        got = ours.generate(ids, 10, num_beams=4, attention_mask=mask, eos_token_id=eos,
                            pad_token_id=0)
        assert len(got) == len(ref) == 3
        t = ids.size(1)
        for i, (a, b) in enumerate(zip(got.tolist(), ref.tolist())):
            a, b = _until_eos(a[t:], eos), _until_eos(b[t:], eos)
            assert a == b, (seed, i)
            assert got[i, t + len(a):].eq(0).all()   # then padding
            n_eos += eos in a
    if eos_bias:
        assert n_eos >= 4, n_eos


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_export_round_trip(tmp_path, family):
    """What we save with export(), transformers loads and computes the same logits with."""
    hf, ours = (make_gpt2 if family == "gpt2" else make_llama)(tmp_path / "src", tie=False)
    from zeroformer.io import hf_gpt2, hf_llama

    (hf_gpt2 if family == "gpt2" else hf_llama).export(ours, tmp_path / "out")
    cls = transformers.GPT2LMHeadModel if family == "gpt2" else transformers.LlamaForCausalLM
    back = cls.from_pretrained(tmp_path / "out").eval()
    ids = _ids(ours.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, hf(ids).logits, atol=ATOL, rtol=1e-4)
    again = zeroformer.load(tmp_path / "out")
    a, b = ours.state_dict(), again.state_dict()
    assert list(a) == list(b)     # the same tensors, none missing or extra
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_export_our_config_as_gpt2(tmp_path):
    """A model trained from one of our presets (exact GELU, untied) exports to transformers."""
    from zeroformer.io import hf_gpt2
    from zeroformer.models.decoder import Decoder

    cfg = zeroformer.preset("tiny", activation="gelu", tie_embeddings=False, dropout=0.0)
    ours = Decoder(cfg).eval()
    hf_gpt2.export(ours, tmp_path)
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    ids = _ids(cfg.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, ours(ids), atol=ATOL, rtol=1e-4)


def test_export_refuses_what_the_format_cannot_hold(tmp_path):
    from zeroformer.io import hf_gpt2, hf_llama
    from zeroformer.models.decoder import Decoder

    llama_like = Decoder(zeroformer.preset("tiny", position="rope", norm="rmsnorm", bias=False))
    with pytest.raises(UserError, match="GPT-2"):
        hf_gpt2.export(llama_like, tmp_path / "a")
    with pytest.raises(UserError, match="LLaMA"):
        hf_llama.export(Decoder(zeroformer.preset("tiny")), tmp_path / "b")


def test_bad_hf_folders(tmp_path):
    hf, _ = make_llama(tmp_path)
    import json

    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["rope_parameters"] = {"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="yarn"):
        zeroformer.load(tmp_path)
    cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e4}
    cfg["num_hidden_layers"] = 3          # the file holds 2 layers
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="missing"):
        zeroformer.load(tmp_path)
