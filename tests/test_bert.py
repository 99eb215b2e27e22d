"""BERT against Hugging Face transformers on random weights: hidden states, MLM/NSP/classifier
logits with padding and token type ids; export back to HF; preset parameter counts."""

import pytest
import torch

import zeroformer
from zeroformer.config import preset
from zeroformer.models.bert import Bert, mean_pool

transformers = pytest.importorskip("transformers")

SMALL = dict(vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=48, max_position_embeddings=40, type_vocab_size=2)


def _inputs(seed=0, b=3, t=11, vocab=101):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, 7:] = 0   # right padding, as BERT tokenizers pad
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    types = torch.zeros(b, t, dtype=torch.long)
    types[:, 5:] = 1
    types[mask == 0] = 0
    return ids, mask, types


def _save(cls, tmp_path, **kw):
    torch.manual_seed(1)
    ref = cls(transformers.BertConfig(**SMALL, **kw)).eval()
    for p in ref.parameters():  # make LayerNorms and biases non-trivial too
        torch.nn.init.normal_(p, std=0.2) if p.dim() == 1 else None
    ref.save_pretrained(tmp_path)
    return ref


def _close(a, b, tol=1e-5):
    assert a.shape == b.shape
    assert (a - b).abs().max().item() < tol, (a - b).abs().max().item()


def test_hidden_states_equal_bertmodel(tmp_path):
    ref = _save(transformers.BertModel, tmp_path)
    ours = zeroformer.load(tmp_path)
    assert ours.heads == ["pooler"]
    ids, mask, types = _inputs()
    with torch.no_grad():
        out = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
        h = ours(ids, attention_mask=mask, token_type_ids=types)
        real = mask.bool()
        _close(h[real], out.last_hidden_state[real])          # padded rows are don't-care
        _close(ours.pool(h), out.pooler_output)
        # no mask / no token types: HF's defaults (all real, segment 0)
        _close(ours(ids), ref(input_ids=ids).last_hidden_state)


def test_mlm_logits_equal_bertformaskedlm(tmp_path):
    ref = _save(transformers.BertForMaskedLM, tmp_path)
    ours = zeroformer.load(tmp_path)
    assert ours.heads == ["mlm"]
    ids, mask, types = _inputs(seed=3)
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        got = ours(ids, attention_mask=mask, token_type_ids=types)
    assert got.shape == (3, 11, SMALL["vocab_size"])
    _close(got[mask.bool()], want[mask.bool()])


def test_pretraining_heads_equal(tmp_path):
    ref = _save(transformers.BertForPreTraining, tmp_path)
    ours = zeroformer.load(tmp_path)
    assert ours.heads == ["mlm", "nsp", "pooler"]
    ids, mask, types = _inputs(seed=4)
    with torch.no_grad():
        out = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
        h = ours.encode(ids, mask, types)
        _close(ours.mlm_logits(h)[mask.bool()], out.prediction_logits[mask.bool()])
        _close(ours.nsp_logits(h), out.seq_relationship_logits)


def test_sequence_classification_equal(tmp_path):
    ref = _save(transformers.BertForSequenceClassification, tmp_path,
                id2label={0: "neg", 1: "mid", 2: "pos"}, label2id={"neg": 0, "mid": 1, "pos": 2})
    ours = zeroformer.load(tmp_path)
    assert ours.labels == ["neg", "mid", "pos"]
    ids, mask, types = _inputs(seed=5)
    with torch.no_grad():
        _close(ours.classify(ids, mask, types),
               ref(input_ids=ids, attention_mask=mask, token_type_ids=types).logits)


def test_token_classification_equal(tmp_path):
    ref = _save(transformers.BertForTokenClassification, tmp_path, num_labels=5)
    ours = zeroformer.load(tmp_path)
    assert "tokens" in ours.heads
    ids, mask, types = _inputs(seed=6)
    with torch.no_grad():
        got = ours.token_logits(ids, mask, types)
        want = ref(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    _close(got[mask.bool()], want[mask.bool()])


@pytest.mark.parametrize("b,t,pad", [(1, 1, False), (1, 40, False), (2, 3, True), (5, 17, True),
                                     (4, 40, True)])
def test_pretraining_model_equal_at_several_shapes(tmp_path, b, t, pad):
    """BertForPreTraining (encoder, MLM, NSP, pooler) at batch sizes 1-5 and lengths 1 to the
    maximum position (40), with rows right-padded to different lengths (one of them length 1)
    and random segment boundaries (token_type_ids)."""
    ref = _save(transformers.BertForPreTraining, tmp_path)
    ours = zeroformer.load(tmp_path)
    g = torch.Generator().manual_seed(b * 100 + t)
    ids = torch.randint(1, SMALL["vocab_size"], (b, t), generator=g)
    lengths = torch.randint(1, t + 1, (b,), generator=g) if pad else torch.full((b,), t)
    if pad:
        lengths[0], lengths[-1] = t, 1   # a full row and a one-token row
    mask = (torch.arange(t)[None, :] < lengths[:, None]).long()
    cut = torch.randint(0, t + 1, (b, 1), generator=g)  # segment B starts at `cut`
    types = ((torch.arange(t)[None, :] >= cut) & mask.bool()).long()
    ids[mask == 0] = 0
    with torch.no_grad():
        out = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
        h = ours.encode(ids, mask, types)
        real = mask.bool()
        _close(ours.mlm_logits(h)[real], out.prediction_logits[real])
        _close(ours.nsp_logits(h), out.seq_relationship_logits)
        base = ref.bert(input_ids=ids, attention_mask=mask, token_type_ids=types)
        _close(h[real], base.last_hidden_state[real])
        _close(ours.pool(h), base.pooler_output)


@pytest.mark.parametrize("cls", ["BertModel", "BertForMaskedLM", "BertForPreTraining",
                                 "BertForSequenceClassification"])
def test_export_loads_in_transformers(tmp_path, cls):
    from zeroformer.io.hf_bert import export

    ref = _save(getattr(transformers, cls), tmp_path / "src")
    ours = zeroformer.load(tmp_path / "src")
    export(ours, tmp_path / "out")
    back = getattr(transformers, cls).from_pretrained(tmp_path / "out").eval()
    ids, mask, types = _inputs(seed=7)
    with torch.no_grad():
        a = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
        b = back(input_ids=ids, attention_mask=mask, token_type_ids=types)
    key = "last_hidden_state" if cls == "BertModel" else (
        "prediction_logits" if cls == "BertForPreTraining" else "logits")
    assert torch.equal(a[key], b[key])
    sa, sb = ref.state_dict(), back.state_dict()
    assert set(sa) == set(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_mean_pool_ignores_padding():
    h = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    e = mean_pool(h, mask, normalize=False)
    _close(e[0], h[0, :3].mean(0), 1e-6)
    _close(e[1], h[1].mean(0), 1e-6)
    n = mean_pool(h, mask)
    _close(n.norm(dim=-1), torch.ones(2), 1e-6)


def _count(name, **over):
    with torch.device("meta"):
        m = Bert(preset(name, **over))
    return sum(p.numel() for p in m.parameters())


def _hf_count(**cfg):
    with torch.device("meta"):
        m = transformers.BertModel(transformers.BertConfig(**cfg))
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts():
    assert _count("bert-base") == 109_482_240            # BertModel (with pooler), bert-base-uncased
    assert _count("bert-large") == _hf_count(hidden_size=1024, num_hidden_layers=24,
                                             num_attention_heads=16, intermediate_size=4096)
    assert 330e6 < _count("bert-large") < 340e6           # ~335M ("340M" in the paper)
    # the MLM head adds transform (H*H + H + 2H) and the vocabulary bias; the decoder is tied
    base_mlm = _count("bert-base", heads=["mlm"])
    assert base_mlm == 109_482_240 - (768 * 768 + 768) + (768 * 768 + 768 + 2 * 768) + 30522
