"""Softmax (and temperature), layer normalisation, inverted dropout: three small functions every
Transformer layer uses, on numbers small enough to check by hand.

    softmax(z)_i   = exp(z_i) / sum_j exp(z_j)             probabilities: positive, sum to 1
    softmax(z / T)                                          temperature T: < 1 sharper, > 1 flatter
    LayerNorm(x)   = g * (x - mean(x)) / sqrt(var(x) + eps) + b     (g = 1, b = 0 when untrained)
    RMSNorm(x)     = g * x / sqrt(mean(x^2) + eps)                  (LLaMA: no centring, no b)
    dropout(x)     = x * m / (1 - p),  m_i ~ Bernoulli(1 - p)  while training; x at inference

The norms and dropout are zeroformer's own modules (zeroformer/nn/norms.py, zeroformer/nn/dropout.py);
temperature is applied the way generation does it (zeroformer/generate.py:next_tokens: logits / T).

Run: python examples/02_softmax_norm_dropout.py
"""

import torch

from show import show
from zeroformer.nn.dropout import Dropout
from zeroformer.nn.norms import LayerNorm, RMSNorm

# -- softmax --------------------------------------------------------------------------------------
z = torch.tensor([3.0, 1.0, 0.2])
e = z.exp()
print("softmax of z = [3.0, 1.0, 0.2]")
print(f"   exp(z) = {[round(v, 3) for v in e.tolist()]}, sum = {e.sum():.3f}")
p = torch.softmax(z, dim=-1)
print(f"   exp(z) / sum = {[round(v, 3) for v in p.tolist()]}")
show("softmax", p)
for t in (0.5, 2.0):
    pt = torch.softmax(z / t, dim=-1)
    print(f"   temperature {t}: softmax(z / {t}) = {[round(v, 3) for v in pt.tolist()]}")
    show(f"softmax T={t}", pt)
print("   (generation: temperature -> 0 is greedy, argmax; a large temperature -> uniform)")

# -- layer normalisation --------------------------------------------------------------------------
x = torch.tensor([[2.0, 4.0, 6.0, 8.0]])
print("\nlayer normalisation of x =", x[0].tolist())
mean, var = x.mean().item(), x.var(unbiased=False).item()
print(f"   mean = {mean:g}, variance = {var:g} (divided by n, not n - 1), "
      f"std = sqrt(var + eps) = {(var + 1e-5) ** 0.5:.4f}")
ln = LayerNorm(4, eps=1e-5)
show("layernorm", ln(x)[0].detach())
print("   = (x - mean) / std: mean 0, variance 1; then the learned gain g and bias b "
      "(ones and zeros before training)")
rms = RMSNorm(4, eps=1e-5)
print(f"   RMSNorm: sqrt(mean(x^2)) = {(x.pow(2).mean().item()) ** 0.5:.4f}")
show("rmsnorm", rms(x)[0].detach())

# -- inverted dropout -----------------------------------------------------------------------------
print("\ninverted dropout on a vector of 100,000 ones")
torch.manual_seed(0)
ones = torch.ones(100_000)
for p_drop in (0.1, 0.5):
    drop = Dropout(p_drop).train()
    y = drop(ones)
    kept = y[y != 0]
    print(f"   p = {p_drop}: {(y == 0).float().mean():.4f} of the values dropped, the others "
          f"scaled to {kept[0]:.4f} = 1 / (1 - p); mean of y = {y.mean():.4f} (E[y] = x)")
    show(f"dropout p={p_drop} dropped", (y == 0).float().mean().item())
    show(f"dropout p={p_drop} kept value", kept.unique().tolist())
    show(f"dropout p={p_drop} mean", y.mean().item())
    show(f"dropout p={p_drop} eval", bool(torch.equal(drop.eval()(ones), ones)))
print("   at inference (model.eval()) dropout is the identity: nothing to rescale")
