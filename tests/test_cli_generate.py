"""`zeroformer generate`, `zeroformer chat` and `zeroformer eval ppl` end to end through the CLI
entry point: outputs equal the Python API, bad input exits 2 with one line, long prompts are cut."""

import math
import string

import pytest
import torch

import zeroformer
from zeroformer.cli import main
from zeroformer.io.checkpoint import save_checkpoint
from zeroformer.models.decoder import Decoder
from zeroformer.tokenizers import CharTokenizer

TEXT = "to be or not to be, that is the question. " * 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny char-level decoder checkpoint (random weights) with its tokenizer."""
    tok = CharTokenizer(sorted(set(string.ascii_lowercase + " ,.")))
    torch.manual_seed(0)
    cfg = zeroformer.preset("tiny", vocab_size=tok.vocab_size, max_seq_len=32, dropout=0.0)
    model = Decoder(cfg).eval()
    folder = tmp_path_factory.mktemp("tiny") / "ckpt"
    save_checkpoint(model, folder, tokenizer=tok)
    return folder, model, tok


def test_generate_greedy_matches_api(tiny, capsys):
    folder, model, tok = tiny
    assert main(["generate", "--model", str(folder), "--prompt", "to be", "--max-new-tokens",
                 "10"]) == 0
    ids = torch.tensor([tok.encode("to be")])
    expect = tok.decode(model.generate(ids, max_new_tokens=10)[0].tolist())
    assert capsys.readouterr().out == expect + "\n"


def test_generate_seeded_sampling_reproducible(tiny, capsys):
    folder, _, _ = tiny
    args = ["generate", "--model", str(folder), "--prompt", "to", "--max-new-tokens", "12",
            "--temperature", "1.0", "--top-k", "5", "--top-p", "0.9"]
    outs = []
    for seed in ("1", "1", "2"):
        assert main(args + ["--seed", seed]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and outs[0] != outs[2]


@pytest.mark.parametrize("bad", [["--temperature", "-0.5"], ["--top-p", "0"], ["--top-p", "1.5"],
                                 ["--top-k", "0"], ["--max-new-tokens", "-1"]])
def test_invalid_sampling_parameters_exit_2(tiny, capsys, bad):
    folder, _, _ = tiny
    assert main(["generate", "--model", str(folder), "--prompt", "to"] + bad) == 2
    err = capsys.readouterr().err
    assert err.startswith("zeroformer: error: ") and err.count("\n") == 1


def test_long_prompt_cut_from_the_left(tiny, capsys):
    folder, model, tok = tiny
    prompt = TEXT  # longer than the 32-token context
    assert main(["generate", "--model", str(folder), "--prompt", prompt,
                 "--max-new-tokens", "4"]) == 0
    cap = capsys.readouterr()
    assert "cut from the left" in cap.err
    kept = torch.tensor([tok.encode(prompt)[-28:]])             # 32 - 4 new tokens
    new = model.generate(kept, max_new_tokens=4)[0, 28:].tolist()
    assert cap.out == prompt + tok.decode(new) + "\n"


def test_missing_model_and_missing_file_exit_2(tmp_path, capsys):
    assert main(["generate", "--model", str(tmp_path / "nope"), "--prompt", "x"]) == 2
    assert main(["eval", "ppl", "--model", str(tmp_path / "nope"), str(tmp_path / "x.txt")]) == 2
    assert capsys.readouterr().err.count("zeroformer: error:") == 2


def test_gguf_unsupported_architecture_exit_2(tmp_path, capsys):
    pytest.importorskip("gguf")
    pytest.importorskip("transformers")
    from test_gguf import tiny_llama, write_gguf

    path = write_gguf(tmp_path / "m.gguf", tiny_llama(), arch="falcon")
    assert main(["generate", "--model", str(path), "--prompt", "x"]) == 2
    assert "falcon" in capsys.readouterr().err


def test_eval_ppl_equals_cross_entropy(tiny, tmp_path, capsys):
    folder, model, tok = tiny
    text = TEXT[:30]
    f = tmp_path / "t.txt"
    f.write_text(text)
    assert main(["eval", "ppl", "--model", str(folder), str(f)]) == 0
    out = capsys.readouterr().out
    ids = torch.tensor([tok.encode(text)])
    with torch.no_grad():
        nll = torch.nn.functional.cross_entropy(model(ids)[0, :-1], ids[0, 1:]).item()
    assert f"tokens {len(text) - 1} " in out
    assert f"ppl {math.exp(nll):.3f}" in out


def test_eval_ppl_windows_count_each_token_once(tiny, tmp_path, capsys):
    from zeroformer.inference.perplexity import perplexity

    _, model, tok = tiny
    ids = tok.encode(TEXT)
    for context, stride in [(32, 32), (16, 5), (8, 1)]:
        n, nll = perplexity(model, ids, context, stride, batch_size=3)
        assert n == len(ids) - 1 and math.isfinite(nll)
    # stride 1 with a full-length window == one pass over the text
    n1, a = perplexity(model, ids[:32], 32, 1)
    with torch.no_grad():
        x = torch.tensor([ids[:32]])
        b = torch.nn.functional.cross_entropy(model(x)[0, :-1], x[0, 1:], reduction="sum").item()
    assert abs(a - b) < 1e-3 * abs(b)


def _hf_strided_nll(hf, ids, max_length, stride):
    """transformers' documented strided perplexity ("Perplexity of fixed-length models"): windows
    of max_length start every stride tokens; each scores only the tokens after the previous
    window's end (labels -100 before them). -> (n_scored, total_nll_nats)."""
    ids = torch.tensor([ids])
    seq_len, prev_end, total, count = ids.size(1), 0, 0.0, 0
    for begin in range(0, seq_len, stride):
        end = min(begin + max_length, seq_len)
        trg_len = end - prev_end
        x = ids[:, begin:end]
        labels = x.clone()
        labels[:, :-trg_len] = -100
        with torch.no_grad():
            loss = hf(x, labels=labels).loss       # mean over the shifted labels that count
        n = int((labels[:, 1:] != -100).sum())
        total, count = total + loss.item() * n, count + n
        prev_end = end
        if end == seq_len:
            break
    return count, total


@pytest.mark.parametrize("context,stride,hf_stride", [(16, 5, 5), (8, 1, 1), (12, 7, 7),
                                                      (16, 16, 15), (48, 48, 47)])
def test_eval_ppl_strided_equals_transformers_procedure(tmp_path, context, stride, hf_stride):
    """Our windows on a random HF GPT-2 checkpoint give the NLL of transformers' documented
    strided procedure on the same model, to float rounding. Back-to-back windows (stride =
    context) overlap by one token in ours so that every token after the first is scored; that is
    the documented procedure with stride = context - 1."""
    transformers = pytest.importorskip("transformers")
    from zeroformer.inference.perplexity import perplexity

    cfg = transformers.GPT2Config(vocab_size=101, n_positions=48, n_embd=32, n_layer=2, n_head=4,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # a model whose NLL depends on the history it sees
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(tmp_path)
    ours = zeroformer.load(tmp_path)
    ids = torch.randint(0, 101, (103,), generator=torch.Generator().manual_seed(2)).tolist()
    n, nll = perplexity(ours, ids, context, stride, batch_size=3)
    n_ref, nll_ref = _hf_strided_nll(hf, ids, context, hf_stride)
    assert n == n_ref == len(ids) - 1
    assert nll == pytest.approx(nll_ref, rel=1e-5)
    if context < 48:  # a different window (less history per token) gives a different figure
        _, full = _hf_strided_nll(hf, ids, 48, 47)
        assert abs(nll - full) > 1e-3 * abs(full)


def test_chat_smollm2_two_turns(monkeypatch, capsys):
    from zeroformer import data

    path = data.locate("smollm2")
    if path is None:
        pytest.skip("SmolLM2 GGUF not fetched (zeroformer data fetch smollm2)")
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("What is the capital of France?\n"
                                                 "And what is the capital of Italy?\n"))
    assert main(["chat", "--model", str(path), "--max-new-tokens", "16"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert "Paris" in lines[0] and "Rome" in lines[1]


# --------------------------------------------------------------------- finetune / SFT recipe
def test_sft_batch_masks_prompt_and_response(tiny):
    """L_task sees only response targets, L_LM only prompt targets; the loss is their mix."""
    from zeroformer.recipes.lm_bpe import SFTTask
    from zeroformer.train.data import batch_generator
    from zeroformer.train.losses import IGNORE_INDEX, cross_entropy

    _, model, tok = tiny
    rows = [(tok.encode("what is it"), tok.encode(" a test.")),
            (tok.encode("who"), tok.encode(" me."))]
    task = SFTTask(model, rows, rows, lm_weight=0.5, pad_id=0, batch_size=2, block_size=32,
                   seed=0)
    b = task.make_batch(batch_generator(0, 0), "train")
    for r in range(2):
        x, y = b["input_ids"][r], b["labels"][r]
        p, resp = next((p, q) for p, q in rows if x[: len(p)].tolist() == p)
        n = len(p) + len(resp) - 1
        assert b["attention_mask"][r].sum() == n
        assert y[: len(p) - 1].eq(IGNORE_INDEX).all() and y[len(p) - 1:n].tolist() == resp
        assert b["lm_labels"][r][: len(p) - 1].tolist() == p[1:]
        assert b["lm_labels"][r][len(p) - 1:].eq(IGNORE_INDEX).all()
    with torch.no_grad():
        loss, n = task.loss(model, b)
        logits = model(b["input_ids"], attention_mask=b["attention_mask"])
        expect = cross_entropy(logits, b["labels"])[0] + 0.5 * cross_entropy(logits, b["lm_labels"])[0]
    torch.testing.assert_close(loss, expect)
    assert n == int((b["labels"] != IGNORE_INDEX).sum())


def test_finetune_recipe_sft_through_cli(tiny, tmp_path, capsys):
    import json

    folder, _, _ = tiny
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"what is {w}", "response": " it is."}) + "\n"
                            for w in ("a", "b", "c", "d", "e", "f")))
    extra = json.dumps({"lm_weight": 0.2})
    args = ["train", "finetune", "--out", str(tmp_path / "run"), "--max-steps", "12",
            "--model", str(folder), "--data", str(data),
            "--progress=false", "--lr=3e-3", "--log_every=6", "--eval_every=12", f"--extra={extra}"]
    assert main(args) == 0
    cap = capsys.readouterr()
    losses = [float(line.split("loss")[1].split("|")[0]) for line in (cap.out + cap.err)
              .splitlines() if "| loss" in line]
    assert len(losses) == 2 and losses[1] < losses[0]
    from zeroformer.io.checkpoint import CONFIG_FILE, latest_checkpoint, load_trainer_state

    folder = latest_checkpoint(tmp_path / "run")
    state, _ = load_trainer_state(folder)
    assert state["train_config"]["extra"] == {"lm_weight": 0.2}
    assert state["train_config"]["data"] == str(data)
    saved = json.loads((folder / CONFIG_FILE).read_text())  # training inputs stay out of the model
    assert "extra" not in saved and str(data) not in json.dumps(saved)
    assert zeroformer.load(tmp_path / "run").config == zeroformer.load(folder).config


def test_finetune_needs_init_and_data(tmp_path, capsys):
    assert main(["train", "finetune", "--out", str(tmp_path / "r"), "--extra={}"]) == 2
    assert "finetune needs --model PATH" in capsys.readouterr().err
