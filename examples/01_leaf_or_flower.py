"""A neural network by hand: 4 inputs, 3 hidden neurons, 2 outputs, leaf or flower.

An object is four numbers: its dominant colour (R, G, B) and its volume in millilitres. Each
hidden neuron multiplies the inputs by its weights and adds them up; each output neuron does the
same with the hidden values; the bigger output wins (output 0 = leaf, output 1 = flower):

    h_j = sum_i W1[j, i] x_i + b1[j]          (3 hidden neurons, no activation, as in the tutorial)
    z_k = sum_j W2[k, j] h_j + b2[k]          (2 outputs)

The first hidden neuron's weights are the tutorial's: 32*0.10 + 107*(-0.29) + 56*(-0.07) +
11.2*0.46 = -26.6. Training turns the outputs into probabilities with softmax and measures the
cross-entropy loss L = -mean_n log p[n, y_n]; gradient descent moves every weight against its
gradient: W <- W - lr * dL/dW (gradients by torch's autograd; tests/test_examples.py derives them
again by hand: dL/dz = (p - onehot(y)) / N, dL/dW2 = dz^T h, dL/dh = dz W2, dL/dW1 = dh^T x).

Run: python examples/01_leaf_or_flower.py   (a second or two on a CPU)
"""

import torch

from show import show

torch.set_default_dtype(torch.float64)  # float64: the printed sums are exact to the digits shown

# -- the network's numbers (W1's first row is the tutorial's; the rest are ours) ----------------
W1 = torch.tensor([[0.10, -0.29, -0.07, 0.46],
                   [-0.12, 0.33, 0.02, -0.25],
                   [0.05, 0.11, -0.20, 0.30]], requires_grad=True)
b1 = torch.zeros(3, requires_grad=True)
W2 = torch.tensor([[0.35, -0.50, 0.25],
                   [-0.40, 0.60, 0.10]], requires_grad=True)
b2 = torch.zeros(2, requires_grad=True)
params = [W1, b1, W2, b2]

# -- data: (R, G, B, volume ml) and the class (0 = leaf, 1 = flower) ----------------------------
X = torch.tensor([[32, 107, 56, 11.2],     # the tutorial's leaf
                  [40, 120, 45, 8.0],
                  [60, 140, 70, 14.5],
                  [25, 90, 40, 6.3],
                  [250, 200, 30, 60.0],    # a sunflower
                  [220, 40, 90, 35.2],
                  [240, 120, 200, 22.0],
                  [200, 180, 40, 48.0]])
Y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
NAMES = ["leaf", "flower"]
LR = 1e-4


def forward(x):
    h = x @ W1.T + b1          # (N, 4) -> (N, 3)
    return h, h @ W2.T + b2    # (N, 3) -> (N, 2)


# -- 1. the forward pass, neuron by neuron, for the first leaf ----------------------------------
x = X[0]
print("1. forward pass for the leaf x = (R, G, B, volume) =", x.tolist())
with torch.no_grad():
    h, z = forward(x[None])
for j in range(3):
    terms = " + ".join(f"{v:g}*{w:.2f}" if w >= 0 else f"{v:g}*({w:.2f})"
                       for v, w in zip(x.tolist(), W1[j].tolist()))
    print(f"   hidden neuron {j + 1}: {terms} = {h[0, j]:.1f}")
for k in range(2):
    terms = " + ".join(f"({a:.1f})*({w:.2f})" for a, w in zip(h[0].tolist(), W2[k].tolist()))
    print(f"   output neuron {k + 1} ({NAMES[k]}): {terms} = {z[0, k]:.2f}")
show("hidden", h[0])
show("output", z[0])
print(f"   the bigger output says {NAMES[int(z[0].argmax())]!r}: wrong, these weights are not "
      "trained yet")

# -- 2. the loss on the whole data set ----------------------------------------------------------
print("\n2. softmax turns outputs into probabilities; the loss is -mean log p(true class)")


def loss_of():
    _, z = forward(X)
    return torch.nn.functional.cross_entropy(z, Y)


# -- 3. a few steps of gradient descent, gradients printed ---------------------------------------
print(f"   loss = {loss_of().item():.4f}")

print(f"\n3. gradient descent, lr = {LR:g}: W <- W - lr * dL/dW")
for step in range(1, 4):
    loss = loss_of()
    for p in params:
        p.grad = None
    loss.backward()
    print(f"   step {step}: loss {loss.item():.4f}")
    show(f"loss{step}", loss.item())
    for name, p in zip(("W1", "b1", "W2", "b2"), params):
        show(f"grad{step} {name}", p.grad)
    with torch.no_grad():
        for p in params:
            p -= LR * p.grad

# -- 4. train until every object is classified --------------------------------------------------
print("\n4. training until it classifies")
for step in range(4, 5001):
    loss = loss_of()
    for p in params:
        p.grad = None
    loss.backward()
    with torch.no_grad():
        for p in params:
            p -= LR * p.grad
        pred = forward(X)[1].argmax(-1)
    if bool((pred == Y).all()) and loss.item() < 0.1:
        break
print(f"   after {step} steps: loss {loss.item():.4f}")
with torch.no_grad():
    h, z = forward(X)
for xi, zi in zip(X.tolist(), z):
    print(f"   {str(xi):26s} -> outputs {zi.tolist()[0]:8.2f} {zi.tolist()[1]:8.2f} -> "
          f"{NAMES[int(zi.argmax())]}")
show("steps", step)
show("predictions", z.argmax(-1))
show("labels", Y)
