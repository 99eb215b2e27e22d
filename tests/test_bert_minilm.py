"""all-MiniLM-L6-v2 (real weights): our sentence embeddings equal transformers' BertModel + mean
pooling + L2 normalisation on the same token ids (max |diff| < 1e-4)."""

import pytest
import torch

import zeroformer
from zeroformer.data import locate

transformers = pytest.importorskip("transformers")

TEXTS = [
    "A man is playing a guitar on the street.",
    "The quick brown fox jumps over the lazy dog.",
    "",                                     # empty text: [CLS] [SEP] only
    "Transformers read the whole sentence in both directions, and BERT is pretrained by "
    "filling in masked words. " * 3,
    "Shall I compare thee to a summer's day?",
]


@pytest.fixture(scope="module")
def minilm():
    path = locate("minilm")
    if path is None:
        pytest.skip("MiniLM weights not fetched (run `zeroformer data fetch minilm`)")
    return path


def _reference(path, texts):
    tok = transformers.BertTokenizerFast.from_pretrained(path)
    ref = transformers.BertModel.from_pretrained(path).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        h = ref(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return enc, torch.nn.functional.normalize(e, dim=-1)


def test_minilm_sentence_embeddings_equal_transformers(minilm):
    enc, want = _reference(minilm, TEXTS)
    model = zeroformer.load(minilm)
    assert model.config.n_layer == 6 and model.config.d_model == 384 and model.heads == ["pooler"]
    with torch.no_grad():
        got = model.sentence_embedding(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    assert got.shape == (len(TEXTS), 384)
    diff = (got - want).abs().max().item()
    assert diff < 1e-4, diff
    # one text at a time (no padding) gives the same vectors as the padded batch
    with torch.no_grad():
        for i in (0, 3):
            n = int(enc["attention_mask"][i].sum())
            one = model.sentence_embedding(enc["input_ids"][i:i + 1, :n])
            assert (one[0] - want[i]).abs().max().item() < 1e-4


def test_minilm_similarity_is_meaningful(minilm):
    """Paraphrases are closer than unrelated sentences (a property of the real weights)."""
    model = zeroformer.load(minilm)
    enc = transformers.BertTokenizerFast.from_pretrained(minilm)(
        ["A man is playing a guitar.", "Someone plays the guitar.",
         "The stock market fell sharply today."], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = model.sentence_embedding(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    assert float(ours[0] @ ours[1]) > float(ours[0] @ ours[2]) + 0.3
