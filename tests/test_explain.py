"""`zeroformer explain` pages in headless Chromium (Debian's `chromium` + `chromium-driver`,
driven by selenium): for a decoder (LLaMA-style: RoPE, GQA), a BERT with an MLM head, the
translator and MiniLM, the page opens with no console error and loads nothing from the network;
the test reads its DOM: every stack / layer / head the selectors offer shows the model's attention
(rows summing to 1), hovering a row shows where that token looks, and the top-10 table shows
softmax(z / T) of the model's own logits (computed here with the model) as the temperature slider
moves and the position changes. That the data equals transformers is tests/test_explain_data.py."""

import string

import pytest
import torch

import zeroformer
from requires import require_data, require_package, require_program
from zeroformer.cli import main
from zeroformer.inference.trace import capture_attention
from zeroformer.io.checkpoint import save_checkpoint
from zeroformer.models import build_model
from zeroformer.tokenizers.bpe import BPETokenizer
from zeroformer.tokenizers.char import CharTokenizer
from zeroformer.tokenizers.wordpiece import WordPieceTokenizer

MATRIX = ("return [...document.querySelectorAll('#attn tr[data-row]')].map((r) =>"
          " [...r.querySelectorAll('td')].map((td) => parseFloat(td.dataset.w)))")
TOP = ("return [...document.querySelectorAll('#top tr[data-id]')].map((r) =>"
       " [parseInt(r.dataset.id), parseFloat(r.dataset.p), r.querySelector('td.p').textContent])")


@pytest.fixture(scope="module")
def browser():
    require_package("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = require_program(("chromium", "chromium-browser"), "apt-get install -y chromium")
    driver = require_program("chromedriver", "apt-get install -y chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1200,900"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=opts, service=Service(driver))
    yield d
    d.quit()


def build(kind: str, folder):
    """A tiny random model of `kind` with its tokenizer, saved to `folder` -> (model, tok)."""
    torch.manual_seed(0)
    if kind == "decoder":  # LLaMA-style: RoPE, RMSNorm, SwiGLU, 4 query heads / 2 KV heads
        tok = CharTokenizer(string.ascii_lowercase + " .,")
        cfg = zeroformer.preset("tiny", vocab_size=tok.vocab_size, max_seq_len=32, d_model=32,
                                n_head=4, n_kv_head=2, position="rope", norm="rmsnorm",
                                activation="silu", gated_ffn=True, bias=False)
    elif kind == "encoder":
        words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat",
                 "dog", ".", "##s", "a"]
        tok = WordPieceTokenizer({w: i for i, w in enumerate(words)})
        cfg = zeroformer.preset("bert-base", vocab_size=len(words), n_layer=2, d_model=32,
                                n_head=4, d_ff=48, max_seq_len=32, heads=["mlm"])
    else:
        text = ["el libro es rojo", "the book is red", "la casa es grande", "the house is big"]
        tok = BPETokenizer.train(text * 5, 300, special_tokens=("<pad>", "</s>"))
        cfg = zeroformer.preset("transformer-small", vocab_size=tok.vocab_size, n_layer=2,
                                n_encoder_layer=2, d_model=32, n_head=2, d_ff=64, max_seq_len=24,
                                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                decoder_start_token_id=tok.pad_token_id)
    model = build_model(cfg).eval()
    with torch.no_grad():  # weights far from the init: attention far from uniform
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    save_checkpoint(model, folder, tokenizer=tok)
    return model, tok


CASES = {  # kind -> (--text, --target)
    "decoder": ("to be or not to be", None),
    "encoder": ("the cat [MASK] on the mats.", None),
    "translator": ("el libro es rojo", "the book is red"),
}


@pytest.fixture(scope="module", params=list(CASES))
def page(request, tmp_path_factory):
    """(kind, page path, model, {stack: [(h, T_q, T_k)]}, logits (T, V), default position)."""
    kind = request.param
    d = tmp_path_factory.mktemp(kind)
    model, tok = build(kind, d / "model")
    text, target = CASES[kind]
    argv = ["explain", "--model", str(d / "model"), "--text", text, "--out", str(d / "p.html")]
    assert main(argv + (["--target", target] if target else [])) == 0
    if kind == "decoder":
        x = torch.tensor([tok.encode(text)])
        run, default = (lambda: model(x)), x.size(1) - 1
    elif kind == "encoder":
        x = torch.tensor([tok.encode(text, add_special_tokens=True)])
        run, default = (lambda: model(x)), x[0].tolist().index(tok.mask_token_id)
    else:
        src = torch.tensor([tok.encode(text) + [tok.eos_token_id]])
        tgt = torch.tensor([[tok.pad_token_id] + tok.encode(target)])
        run, default = (lambda: model(src, tgt)), tgt.size(1) - 1
    stacks, logits = capture_attention(model, run)
    return kind, d / "p.html", model, stacks, logits[0], default


def open_page(browser, path):
    browser.get(path.as_uri())
    assert browser.execute_script("return document.body.dataset.ready") == "1"


def console_errors(browser) -> list:
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def softmax_top(logits: torch.Tensor, T: float, k: int = 100):
    """softmax(z / T) over the k largest logits z (the page embeds min(k, V) of them)."""
    z, ids = logits.double().topk(min(k, logits.size(-1)))
    return ids.tolist(), torch.softmax(z / T, -1)


def check_top10(browser, logits, T):
    rows = browser.execute_script(TOP)
    ids, p = softmax_top(logits, T)
    assert [r[0] for r in rows] == ids[:10]
    got = torch.tensor([r[1] for r in rows], dtype=torch.float64)
    torch.testing.assert_close(got, p[:10], atol=1e-4, rtol=1e-4)
    assert all(abs(float(r[2]) - r[1]) <= 5e-5 for r in rows)  # the shown text is the value
    return got


def test_page_in_chromium(browser, page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    kind, path, model, stacks, logits, default = page
    open_page(browser, path)
    assert console_errors(browser) == []
    # nothing fetched: no CDN, no network
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0

    # attention: every stack, layer and head the selectors offer is the model's
    stack_sel = Select(browser.find_element(By.ID, "stack"))
    names = [o.text for o in stack_sel.options]
    assert len(names) == len(stacks)
    if kind == "translator":  # the alignment first
        assert stack_sel.first_selected_option.text.startswith("cross-attention")
    for si, name in enumerate(stacks):
        stack_sel.select_by_index(si)
        layers = Select(browser.find_element(By.ID, "layer"))
        heads = Select(browser.find_element(By.ID, "head"))
        assert len(layers.options) == len(stacks[name])
        assert len(heads.options) == model.config.n_head + 1  # + the mean of the heads
        for li, want_layer in enumerate(stacks[name]):
            layers.select_by_index(li)
            for hi in range(model.config.n_head + 1):
                heads.select_by_index(hi)
                got = torch.tensor(browser.execute_script(MATRIX), dtype=torch.float64)
                want = (want_layer[hi] if hi < model.config.n_head else want_layer.mean(0))
                torch.testing.assert_close(got, want.double(), atol=2e-5, rtol=0)
                torch.testing.assert_close(got.sum(-1), torch.ones(got.size(0),
                                           dtype=torch.float64), atol=1e-4, rtol=0)
        # hovering a query row colours the keys by where that token looks
        row = browser.find_element(By.CSS_SELECTOR, '#attn tr[data-row="1"] th.q')
        ActionChains(browser).move_to_element(row).perform()
        keys = browser.execute_script("return [...document.querySelectorAll("
                                      "'#attn-keys .tok')].map((c) => parseFloat(c.dataset.w))")
        torch.testing.assert_close(torch.tensor(keys, dtype=torch.float64), got[1])

    # the output: top-10 at T = 1, then the slider, then another position
    pos = Select(browser.find_element(By.ID, "pos"))
    assert pos.first_selected_option.get_attribute("value") == str(default)
    at_1 = check_top10(browser, logits[default], 1.0)
    slider = browser.find_element(By.ID, "temp")
    slider.send_keys(*[Keys.ARROW_LEFT] * 12)                  # step 0.05: T = 0.4
    T = float(slider.get_attribute("value"))
    assert abs(T - 0.4) < 1e-9
    colder = check_top10(browser, logits[default], T)
    assert colder[0] > at_1[0] + 1e-3                          # sharper
    slider.send_keys(*[Keys.ARROW_RIGHT] * 32)                 # T = 2
    T = float(slider.get_attribute("value"))
    assert abs(T - 2.0) < 1e-9
    hotter = check_top10(browser, logits[default], T)
    assert hotter[0] < at_1[0] - 1e-3                          # flatter
    pos.select_by_index(0)
    check_top10(browser, logits[0], T)
    assert console_errors(browser) == []


def test_minilm_page_says_there_is_no_mlm_head(browser, tmp_path):
    path = require_data("minilm")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    assert main(["explain", "--model", str(path), "--text", "Paris is the capital of [MASK].",
                 "--out", str(tmp_path / "p.html")]) == 0
    open_page(browser, tmp_path / "p.html")
    assert not browser.find_element(By.ID, "pred-controls").is_displayed()
    assert "no masked-LM head" in browser.find_element(By.ID, "pred-note").text
    assert len(Select(browser.find_element(By.ID, "layer")).options) == 6
    assert len(Select(browser.find_element(By.ID, "head")).options) == 13
    got = torch.tensor(browser.execute_script(MATRIX), dtype=torch.float64)
    torch.testing.assert_close(got.sum(-1), torch.ones(got.size(0), dtype=torch.float64),
                               atol=1e-4, rtol=0)
    assert console_errors(browser) == []
