"""GGUF import: the Q/K permutation against transformers' own GGUF reader, tiny GGUF files written
with the `gguf` package from a random HF LLaMA (logits equal), refusals, and the real SmolLM2."""

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")

import zeroformer  # noqa: E402
from zeroformer import data  # noqa: E402
from zeroformer.errors import UserError  # noqa: E402
from zeroformer.io.gguf_import import permute_rope, unpermute_rope  # noqa: E402

Q = gguf.GGMLQuantizationType


@pytest.mark.parametrize("n_head", [1, 3, 9])
def test_unpermute_matches_transformers(n_head):
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    w = np.random.default_rng(0).standard_normal((n_head * 8, 5)).astype(np.float32)
    ref = LlamaTensorProcessor()._reverse_permute_weights(w, n_head, n_head)
    ours = unpermute_rope(torch.from_numpy(w), n_head).numpy()
    np.testing.assert_array_equal(ours, ref)
    back = permute_rope(torch.from_numpy(ours), n_head).numpy()
    np.testing.assert_array_equal(back, w)


_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
          "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
          "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
          "mlp.down_proj": "ffn_down"}


def write_gguf(path, hf, qtype=Q.F32, arch="llama", extra=None):
    """Write `hf` (a LlamaForCausalLM) as a GGUF file like llama.cpp's converter does; set each
    parameter of `hf` to its quantize->dequantize round trip so both sides hold the same weights."""
    c = hf.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"])
    w.add_vocab_size(c.vocab_size)
    for name, p in hf.named_parameters():
        if name == "lm_head.weight" and c.tie_word_embeddings:
            continue
        if name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        elif name == "lm_head.weight":
            gname = "output.weight"
        else:
            i, rest = name[len("model.layers."):].split(".", 1)
            gname = f"blk.{i}.{_NAMES[rest.rsplit('.', 1)[0]]}.weight"
        x = p.detach().numpy().astype(np.float32)
        qt = qtype if x.ndim == 2 else Q.F32
        if qt not in (Q.F32, Q.Q8_1):
            x = gguf.quants.dequantize(gguf.quants.quantize(x, qt), qt)
            with torch.no_grad():
                p.copy_(torch.from_numpy(x.copy()))
        if ".attn_q." in gname or ".attn_k." in gname:
            n = c.num_attention_heads if ".attn_q." in gname else c.num_key_value_heads
            x = permute_rope(torch.from_numpy(x), n).numpy()
        if qt == Q.Q8_1:   # the gguf package cannot make (or read) these: raw bytes of that size
            raw = np.zeros((x.shape[0], x.shape[1] // 32 * 40), dtype=np.uint8)
            w.add_tensor(gname, raw, raw_shape=raw.shape, raw_dtype=qt)
        elif qt == Q.F32:
            w.add_tensor(gname, x)
        else:
            qx = gguf.quants.quantize(x, qt)
            w.add_tensor(gname, qx, raw_shape=qx.shape, raw_dtype=qt)
    for k, v in (extra or {}).items():
        w.add_string(k, v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def tiny_llama(tie=False, kv=2):
    cfg = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=96,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=kv, max_position_embeddings=64,
                                   rms_norm_eps=1e-5, rope_theta=50000.0, tie_word_embeddings=tie)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.08)
    return hf


@pytest.mark.parametrize("qtype,tie", [(Q.F32, False), (Q.Q8_0, True), (Q.Q4_1, False)],
                         ids=["f32", "q8_0-tied", "q4_1"])
def test_tiny_gguf_logits_equal_transformers(tmp_path, qtype, tie):
    hf = tiny_llama(tie=tie)
    path = write_gguf(tmp_path / "m.gguf", hf, qtype)
    ours = zeroformer.load(path)
    assert ours.config.n_kv_head == 2 and ours.config.rope_base == 50000.0
    assert ours.config.tie_embeddings == tie
    ids = torch.randint(0, 96, (2, 13), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, atol=2e-5, rtol=1e-4)


def test_unsupported_architecture(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", tiny_llama(), Q.F32, arch="falcon")
    with pytest.raises(UserError, match="architecture 'falcon'"):
        zeroformer.load(path)


def test_unsupported_quantization(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", tiny_llama(), Q.Q8_1)
    with pytest.raises(UserError, match="Q8_1"):
        zeroformer.load(path)


def test_not_a_gguf(tmp_path):
    (tmp_path / "x.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(UserError, match="GGUF"):
        zeroformer.load(tmp_path / "x.gguf")


@pytest.mark.parametrize("qtype", [Q.F32, Q.Q8_0], ids=["f32", "q8_0"])
def test_truncated_tensor_data_is_refused(tmp_path, capsys, qtype):
    """Cut inside the last tensor, mid-file and inside the first tensor: always a UserError (the
    reader maps the file; a tensor running past its end must never be read or allocated)."""
    from zeroformer.cli import main

    whole = write_gguf(tmp_path / "m.gguf", tiny_llama(), qtype)
    size = whole.stat().st_size
    first = min(int(t.data_offset) for t in gguf.GGUFReader(str(whole)).tensors)
    for cut in (size - 1, size - 1000, size // 2, first + 10):
        path = tmp_path / f"cut-{cut}.gguf"
        path.write_bytes(whole.read_bytes()[:cut])
        with pytest.raises(UserError, match=f"{path.name}: not a readable GGUF"):
            zeroformer.load(path)
        assert main(["generate", "--model", str(path), "--prompt", "hi"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("zeroformer: error:") and err.count("\n") == 1, err


# ------------------------------------------------------------------------------ real SmolLM2
@pytest.fixture(scope="module")
def smollm2_path():
    p = data.locate("smollm2")
    if p is None:
        pytest.skip("SmolLM2 GGUF not fetched (zeroformer data fetch smollm2)")
    return p


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    return zeroformer.load(smollm2_path)


def test_smollm2_config(smollm2):
    c = smollm2.config
    assert (c.n_layer, c.d_model, c.n_head, c.n_kv_head, c.d_ff) == (30, 576, 9, 3, 1536)
    assert c.rope_base == 100000.0 and c.tie_embeddings and c.vocab_size == 49152
    assert "<|im_start|>" in smollm2.tokenizer.chat_template


def test_smollm2_says_paris(smollm2):
    tok = smollm2.tokenizer
    ids = torch.tensor([tok.encode("The capital of France is")])
    out = smollm2.generate(ids, max_new_tokens=3)
    assert tok.decode(out[0, ids.size(1):].tolist()).startswith(" Paris")


@pytest.mark.slow
def test_smollm2_logits_equal_transformers_gguf_loader(smollm2, smollm2_path):
    """transformers reads the same GGUF with its own dequantizer and permutation (needs accelerate)."""
    pytest.importorskip("accelerate")
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        smollm2_path.parent, gguf_file=smollm2_path.name, dtype=torch.float32).eval()
    ids = torch.tensor([smollm2.tokenizer.encode("The capital of France is Paris, and the")])
    with torch.no_grad():
        torch.testing.assert_close(smollm2(ids), hf(ids).logits, atol=1e-3, rtol=1e-3)
