"""Our Q4 kernel (zeroformer/nn/q4.py, q4_kernel.c) against formulas written out here:

- Q4Linear: y = sum_b (d q + m) e a, with the activations' int8 blocks (e = max|x| / 127,
  a = round(x / e)) computed in this file, in float64: equal up to float32 summation order;
- LlamaStep (one decoding step of a LLaMA-style decoder in one C call) against the module path
  (nn/blocks.py with the same Q4Linear layers): the same greedy tokens, logits within one int8
  rounding flip of an activation (the paths round floats differently, ~1e-7),
  at 1 and 2 threads, over two generate calls in a row (each call has a new KV cache).
"""

import copy

import pytest
import torch

import zeroformer
from zeroformer.models.decoder import Decoder
from zeroformer.nn import q4
from zeroformer.nn.fast import prepare_inference

pytestmark = [pytest.mark.ci_may_skip,  # a CPU feature (AVX-512 VNNI) and a C compiler
              pytest.mark.skipif(not q4.available(), reason="the Q4 kernel is not available "
                                 f"here ({q4._lib_error or 'no AVX-512 VNNI'})")]


def _reference(layer: q4.Q4Linear, x: torch.Tensor) -> torch.Tensor:
    """x (R, K) -> (R, N) from the docstring's formulas, in float64."""
    r, k = x.shape
    xb = x.double().view(r, k // 32, 32)
    e = xb.abs().amax(-1, keepdim=True) / 127
    a = torch.where(e > 0, torch.round(xb / e), torch.zeros_like(xb)).clamp(-127, 127)
    y = (a * e).view(r, k) @ layer.dequantized().double().t()
    return y if layer.bias is None else y + layer.bias.double()


@pytest.mark.parametrize("k", [64, 128, 576, 1088, 96])   # 2, 4, 18, 34, 3 blocks
@pytest.mark.parametrize("rows", [1, 3, 6, 13])      # 13: VNNI's 8-row tile, then 5
def test_q4_linear_equals_its_formula(k, rows):
    torch.manual_seed(k + rows)
    lin = torch.nn.Linear(k, 40, bias=True)
    layer = q4.Q4Linear.from_linear(lin)
    x = torch.randn(rows, k) * 3
    x[0, :32] = 0.0                                   # an all-zero block: e = 0
    got = layer(x)
    ref = _reference(layer, x)
    assert got.shape == (rows, 40) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-4 * ref.abs().max().item())
    for i in range(rows):   # a row in a batch is computed exactly as alone (batched decoding)
        assert torch.equal(got[i], layer(x[i:i + 1])[0])
    # and the weights are the group-wise 4-bit grid of the float layer (error <= d / 2)
    w = lin.weight.detach().view(40, k // 32, 32)
    step = (w.amax(-1) - w.amin(-1)) / 15
    err = (layer.dequantized().view(40, k // 32, 32) - w).abs().amax(-1)
    assert (err <= step / 2 * 1.01 + 1e-3 * step.max()).all()


@pytest.mark.parametrize("k", [64, 96, 576])
@pytest.mark.parametrize("rows", [2, 8, 17])        # 17: two AMX passes (16 rows, then 1)
def test_every_kernel_path_gives_the_same_numbers(k, rows):
    """The portable loop, AVX-512 VNNI and AMX tiles (where the CPU has them) compute each block's
    integer dot product exactly and scale and sum the blocks in one order: bit-equal outputs,
    each equal to the formula, and every row equal to it alone (1 row: the VNNI path)."""
    torch.manual_seed(k + rows)
    layer = q4.Q4Linear.from_linear(torch.nn.Linear(k, 40))     # 40 rows: a padded group of 16
    x = torch.randn(rows, k) * 2
    outs = []
    try:
        for path in (0, 1, 2):
            q4.set_path(path)
            outs.append(layer(x))
    finally:
        q4.set_path(None)
    torch.testing.assert_close(outs[0].double(), _reference(layer, x), rtol=1e-5,
                               atol=1e-4 * outs[0].abs().max().item())
    for other in outs[1:]:
        assert torch.equal(other, outs[0])
    for i in range(rows):
        assert torch.equal(outs[2][i], layer(x[i:i + 1])[0])


def test_two_threads_split_the_weight_rows_not_the_numbers():
    """From 256 output rows on, threads take groups of weight rows: the same outputs as 1 thread."""
    torch.manual_seed(3)
    layer = q4.Q4Linear.from_linear(torch.nn.Linear(576, 300))
    x = torch.randn(8, 576)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [layer(x), layer(x[:1])]
        torch.set_num_threads(2)
        two = [layer(x), layer(x[:1])]
    finally:
        torch.set_num_threads(old)
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    torch.testing.assert_close(one[0].double(), _reference(layer, x), rtol=1e-5,
                               atol=1e-4 * one[0].abs().max().item())


@pytest.mark.parametrize("shape", [(8, 1, 49152), (3, 100), (1, 64)])
def test_topk_indices_are_torch_topk(shape):
    """The output layer's top-k (q4_kernel.c:zf_topk, RefinedInt4Linear): the same values as
    torch.topk, the same indices where the values are distinct; with ties, the first ones."""
    torch.manual_seed(shape[-1])
    x = torch.randn(*shape)
    idx = q4.topk_indices(x, 64)
    ref = x.topk(64, dim=-1)
    assert torch.equal(idx.sort(-1).values, ref.indices.sort(-1).values)
    ties = torch.zeros(2, 300)
    ties[0, 7] = ties[1, 299] = 1.0
    assert sorted(q4.topk_indices(ties, 4)[0].tolist()) == [0, 1, 2, 7]
    assert sorted(q4.topk_indices(ties, 4)[1].tolist()) == [0, 1, 2, 299]


def _llama(seed=0, d_model=64, n_head=4, n_kv_head=2):
    torch.manual_seed(seed)
    cfg = zeroformer.ModelConfig(arch="decoder", vocab_size=96, n_layer=3, d_model=d_model,
                                 n_head=n_head, n_kv_head=n_kv_head, d_ff=128, activation="silu", gated_ffn=True,
                                 norm="rmsnorm", position="rope", bias=False, max_seq_len=64,
                                 tie_embeddings=False, dropout=0.0)
    model = Decoder(cfg).eval()
    with torch.no_grad():  # larger weights: peaked distributions, no near-ties for argmax
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return prepare_inference(model, fuse=True, int4=True, int4_head="refine")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(64, 4, 2), (192, 3, 1)])  # head_dim 16; 64 with 3 heads per
def test_fused_step_equals_module_path(threads, shape):          # KV head (SmolLM2's attention)
    fast = _llama(0, *shape)
    assert fast.fast_step is not None
    slow = copy.deepcopy(fast)
    slow.fused_step = False
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for prompt in ([5, 17, 3], [40, 2, 2, 9, 61, 7, 7]):  # two calls: two caches
            ids = torch.tensor([prompt])
            cache_a, cache_b = fast.new_cache(1, 40), slow.new_cache(1, 40)
            ta = tb = None
            with torch.no_grad():
                la, lb = fast(ids, cache=cache_a)[:, -1], slow(ids, cache=cache_b)[:, -1]
                for _ in range(30):
                    ta, tb = la.argmax(-1, keepdim=True), lb.argmax(-1, keepdim=True)
                    assert torch.equal(ta, tb)
                    la = fast(ta, cache=cache_a, last_only=True)[:, -1]
                    lb = slow(tb, cache=cache_b, last_only=True)[:, -1]
                    # float rounding differs (C vs torch norms, attention): ~1e-7, which can move
                    # one activation across an int8 rounding boundary (a jump of e |w|, seen
                    # ~1e-2 of the largest logit, at a rate of ~1 in 60 steps here)
                    torch.testing.assert_close(la, lb, rtol=1e-4, atol=3e-2 * lb.abs().max().item())
            assert cache_a.length == cache_b.length == len(prompt) + 30
            n = cache_a.length                    # the positions written (the rest is unset)
            for x, y in zip(cache_a, cache_b):
                torch.testing.assert_close(x.self_kv.k[:, :, :n], y.self_kv.k[:, :, :n], rtol=1e-4,
                                           atol=3e-2)
                torch.testing.assert_close(x.self_kv.v[:, :, :n], y.self_kv.v[:, :, :n], rtol=1e-4,
                                           atol=3e-2)
            a = fast.generate(ids, max_new_tokens=20, eos_token_id=-1)
            b = slow.generate(ids, max_new_tokens=20, eos_token_id=-1)
            assert torch.equal(a, b)
    finally:
        torch.set_num_threads(old)


def test_fused_step_only_where_it_fits(monkeypatch):
    """GPT-2-style blocks (LayerNorm, GELU, biases): no fused step. A padded batch runs the module
    path; an unpadded batch of 2 and batched decoding (BatchEngine's slot cache) run the fused
    step, and every row's tokens equal the module path's and the row's tokens alone."""
    from zeroformer.batching import BatchEngine

    gpt = prepare_inference(Decoder(zeroformer.preset("tiny", dropout=0.0)).eval(), int4=True)
    assert gpt.fast_step is None
    fast = _llama(1)
    slow = copy.deepcopy(fast)
    slow.fused_step = False
    ids = torch.tensor([[5, 17, 3], [40, 2, 9]])
    cache = fast.new_cache(2, 8)
    assert fast.fast_step.fits(ids[:, -1:], None, None, cache)
    assert not fast.fast_step.fits(ids[:, -1:], torch.ones(2, 1), None, cache)
    together = fast.generate(ids, max_new_tokens=10, eos_token_id=-1)
    assert torch.equal(together, slow.generate(ids, max_new_tokens=10, eos_token_id=-1))
    prompts = [torch.tensor([[5, 17, 3]]), torch.tensor([[40, 2, 9, 9, 1, 33]]),
               torch.tensor([[7]])]
    rows = []
    call = q4.LlamaStep.__call__
    monkeypatch.setattr(q4.LlamaStep, "__call__",
                        lambda self, h, *a: rows.append(h.size(0)) or call(self, h, *a))
    engine = BatchEngine(fast, max_batch=4, max_len=32)
    done = engine.run([dict(prompt_ids=p, max_new_tokens=12, eos_token_id=-1) for p in prompts])
    for got, p in zip(done, prompts):
        alone = fast.generate(p, max_new_tokens=12, eos_token_id=-1)[0, p.size(1):].tolist()
        assert got == alone
        assert alone == slow.generate(p, max_new_tokens=12, eos_token_id=-1)[0, p.size(1):].tolist()
    assert max(rows) == 3  # the engine's steps with all three requests ran fused


@pytest.mark.parametrize("k", [576, 96])
def test_many_rows_take_a_bf16_product_of_the_same_weights(k):
    """From GEMM_ROWS rows on (a prompt) the layer multiplies bf16 activations by its weights
    dequantized to bf16 in C: that matrix equals d q + m rounded to bf16, and the output is
    within bf16 rounding of the float64 product (measured ~0.3% of the largest output)."""
    torch.manual_seed(k)
    layer = q4.Q4Linear.from_linear(torch.nn.Linear(k, 48))
    assert torch.equal(layer.bf16_weight(), layer.dequantized().bfloat16())
    x = torch.randn(q4.GEMM_ROWS + 3, k)
    ref = x.double() @ layer.dequantized().double().t() + layer.bias.double()
    err = (layer(x).double() - ref).abs().max() / ref.abs().max()
    assert err < 0.02
