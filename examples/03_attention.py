"""Scaled dot-product attention on a three-token sentence, every matrix printed; then multi-head
attention as a split and a concat, checked against zeroformer's attention module.

    Q = X W_Q,  K = X W_K,  V = X W_V                       X: (3 tokens, d = 4)
    scores  = Q K^T / sqrt(d_k)                              (3, 3): how much token i looks at j
    causal  : scores[i, j] = -inf for j > i                  a token never sees the future
    weights = softmax(scores) row by row                     each row sums to 1
    output  = weights V                                      (3, d): a weighted mix of values
    multi-head: split the d columns of Q, K, V into h heads of d/h, attend in each head,
                concatenate the heads' outputs, multiply by W_O

The numbers are small on purpose (tests/test_examples.py recomputes them with numpy).
zeroformer stores a Linear layer's weight as (out, in), so its q_proj.weight is W_Q^T.

Run: python examples/03_attention.py
"""

import math

import torch

from show import show
from zeroformer.nn.attention import MultiHeadAttention

torch.set_default_dtype(torch.float64)

tokens = ["the", "cat", "sat"]
X = torch.tensor([[1.0, 0.0, 1.0, 0.0],      # "the"
                  [0.0, 2.0, 0.0, 1.0],      # "cat"
                  [1.0, 1.0, 1.0, 1.0]])     # "sat"
W_Q = torch.tensor([[1.0, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, 0.5], [0.5, 0.0, 1.0, 0.0], [0.0, 0.5, 0.0, 1.0]])
W_K = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.5], [0.0, 0.0, 1.0, 0.0], [0.5, 0.0, 0.0, 1.0]])
W_V = torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 2.0], [1.0, 0.0, 0.0, 1.0]])
W_O = torch.tensor([[1.0, 0.0, 0.0, 0.5], [0.0, 1.0, 0.5, 0.0], [0.0, 0.0, 1.0, 0.0], [0.5, 0.0, 0.0, 1.0]])
d = X.size(1)

print("tokens:", tokens, " X (one row per token):")
print(X)
Q, K, V = X @ W_Q, X @ W_K, X @ W_V
show("Q", Q)
show("K", K)
show("V", V)
scores = Q @ K.T / math.sqrt(d)
print(f"scores = Q K^T / sqrt({d}): row i = how much token i's query matches each key")
show("scores", scores)
masked = scores.masked_fill(torch.ones(3, 3, dtype=torch.bool).triu(1), float("-inf"))
print("causal mask: -inf above the diagonal ('the' sees only itself, 'cat' sees 'the' and 'cat')")
print(masked)
weights = torch.softmax(masked, dim=-1)
show("weights", weights)
out = weights @ V
show("output", out)

# -- multi-head: 2 heads of 2 dimensions ---------------------------------------------------------
h, dh = 2, d // 2
print(f"\nmulti-head attention: {h} heads of {dh} dimensions: head i uses columns "
      f"{dh}i..{dh}i+{dh - 1} of Q, K, V")
heads = []
for i in range(h):
    cols = slice(i * dh, (i + 1) * dh)
    s = Q[:, cols] @ K[:, cols].T / math.sqrt(dh)
    w = torch.softmax(s.masked_fill(torch.ones(3, 3, dtype=torch.bool).triu(1), float("-inf")), -1)
    show(f"head{i} weights", w)
    heads.append(w @ V[:, cols])
concat = torch.cat(heads, dim=-1)
show("concat", concat)
mha_out = concat @ W_O
show("multihead", mha_out)

mha = MultiHeadAttention(d_model=d, n_head=h, n_kv_head=h, head_dim=dh, bias=False)
with torch.no_grad():
    for lin, w in ((mha.q_proj, W_Q), (mha.k_proj, W_K), (mha.v_proj, W_V), (mha.o_proj, W_O)):
        lin.weight.copy_(w.T)
    ours = mha(X[None], causal=True)[0]
diff = (ours - mha_out).abs().max().item()
print(f"zeroformer.nn.attention.MultiHeadAttention with these weights: max |difference| = {diff:.1e}")
show("zeroformer multihead", ours)
