"""`zeroformer serve` driven by the official `openai` client, over loopback: one server (a
subprocess on a free port of 127.0.0.1) per module, serving a tiny random decoder (char tokenizer
with ChatML tokens) and a tiny random BERT.

Greedy replies equal model.generate of the same ids (the chat ones: of the ChatML rendering);
streamed text equals the non-streamed text; concurrent requests equal each request alone;
embeddings equal `zeroformer embed`; every client mistake has its status in OpenAI's shape.
"""

import io
import json
import os
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import zeroformer
from requires import require_package
from zeroformer.config import ModelConfig
from zeroformer.io.checkpoint import save_checkpoint
from zeroformer.models.bert import Bert
from zeroformer.models.decoder import Decoder
from zeroformer.tokenizers import CharTokenizer

ROOT = Path(__file__).resolve().parents[1]
KEY = "sekrit"
CONTEXT = 2048
MAX_TOKENS = 1500
SLOTS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, log: Path):
    """Start `zeroformer serve ARGS` on a free port; -> (process, base url) once /health answers."""
    httpx = require_package("httpx")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "zeroformer", "serve", "--port", str(port),
                                 *args], stdout=f, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail(f"the server did not start:\n{log.read_text()}")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    for name in ("fastapi", "uvicorn", "openai", "httpx"):
        require_package(name)
    d = tmp_path_factory.mktemp("serve")
    tok = CharTokenizer(sorted(set(string.ascii_lowercase + " ,.?\n")),
                        special_tokens=["<|im_start|>", "<|im_end|>"])
    torch.manual_seed(0)
    cfg = zeroformer.preset("tiny", vocab_size=tok.vocab_size, max_seq_len=CONTEXT, dropout=0.0)
    save_checkpoint(Decoder(cfg).eval(), d / "lm", tokenizer=tok)
    btok = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz ",
                               special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    bcfg = ModelConfig(arch="encoder", vocab_size=btok.vocab_size, n_layer=2, d_model=32,
                       n_head=4, d_ff=64, max_seq_len=64, prenorm=False, final_norm=False,
                       embed_norm=True, type_vocab_size=2, norm_eps=1e-12, pad_token_id=0)
    save_checkpoint(Bert(bcfg).eval(), d / "bert", tokenizer=btok)
    return d


@pytest.fixture(scope="module")
def server(models):
    proc, url = start_server(["--model", str(models / "lm"), "--model", str(models / "bert"),
                              "--model", str(models / "lm"), "--name", "tiny", "--name", "bert",
                              "--name", "tiny2", "--max-batch", str(SLOTS),
                              "--max-queue", "0", "--max-tokens", str(MAX_TOKENS),
                              "--api-key", KEY], models / "server.log")
    yield url
    proc.terminate()
    proc.wait(30)


@pytest.fixture(scope="module")
def client(server):
    import openai

    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def lm(models):
    model = zeroformer.load(models / "lm").eval()
    return model, model.tokenizer


def reference(model, tok, ids, max_new, eos, **sampling):
    """model.generate of `ids` alone -> (text without EOS tokens, number of new tokens)."""
    out = model.generate(torch.tensor([ids]), max_new, eos_token_id=eos or None, **sampling)
    new = out[0, len(ids):].tolist()
    for k, t in enumerate(new):
        if t in eos:
            new = new[:k + 1]
            break
    return tok.decode([t for t in new if t not in eos]), len(new)


def test_models_list(client):
    assert [m.id for m in client.models.list().data] == ["tiny", "bert", "tiny2"]


@pytest.mark.parametrize("prompt,n", [("to be or not", 40), ("the question is", 7)])
def test_completion_greedy_equals_generate(client, lm, prompt, n):
    from zeroformer.inference.text import encode_prompt, eos_ids

    model, tok = lm
    r = client.completions.create(model="tiny", prompt=prompt, max_tokens=n, temperature=0)
    ids = encode_prompt(tok, prompt)
    text, count = reference(model, tok, ids, n, eos_ids(model, tok))
    assert r.choices[0].text == text
    assert r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == count
    assert r.choices[0].finish_reason == ("length" if count == n else "stop")


def test_chat_greedy_equals_generate_of_the_template(client, lm):
    from zeroformer.inference.chat import END_OF_TURN, render
    from zeroformer.inference.text import eos_ids

    model, tok = lm
    messages = [{"role": "system", "content": "be brief."},
                {"role": "user", "content": "what is the question?"}]
    r = client.chat.completions.create(model="tiny", messages=messages, max_tokens=30,
                                       temperature=0)
    ids = tok.encode(render(tok, messages))
    assert ids[0] == tok.token_to_id("<|im_start|>")
    text, count = reference(model, tok, ids, 30, eos_ids(model, tok, END_OF_TURN))
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == text and r.usage.completion_tokens == count


@pytest.mark.parametrize("chat", [False, True])
def test_streamed_text_equals_non_streamed(client, chat):
    kw = dict(model="tiny", max_tokens=50, temperature=0)
    if chat:
        kw["messages"] = [{"role": "user", "content": "say something."}]
        whole = client.chat.completions.create(**kw)
        chunks = list(client.chat.completions.create(
            **kw, stream=True, stream_options={"include_usage": True}))
        pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
        text = whole.choices[0].message.content
    else:
        kw["prompt"] = "to be or"
        whole = client.completions.create(**kw)
        chunks = list(client.completions.create(**kw, stream=True,
                                                stream_options={"include_usage": True}))
        pieces = [c.choices[0].text for c in chunks if c.choices]
        text = whole.choices[0].text
    assert len([p for p in pieces if p]) > 1          # it did stream, in pieces
    assert "".join(pieces) == text
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert reasons[-1] == whole.choices[0].finish_reason and set(reasons[:-1]) == {None}
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_stop_string_cuts_the_text(client, lm):
    r = client.completions.create(model="tiny", prompt="to be or", max_tokens=60, temperature=0)
    full = r.choices[0].text
    stop = full[10:12]                                     # a string the reply contains
    cut = client.completions.create(model="tiny", prompt="to be or", max_tokens=60,
                                    temperature=0, stop=[stop])
    assert cut.choices[0].text == full[:full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(model="tiny", prompt="to be or", max_tokens=60,
                                         temperature=0, stop=stop, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == cut.choices[0].text
    # a reply that ends in the first character of a stop string: held back, then shown at the end
    almost = full[-1] + "#"                                # '#' is not in the vocabulary
    streamed = client.completions.create(model="tiny", prompt="to be or", max_tokens=60,
                                         temperature=0, stop=almost, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == full


def test_seeded_sampling_equals_generate(client, lm):
    from zeroformer.inference.text import encode_prompt, eos_ids

    model, tok = lm
    kw = dict(temperature=0.9, top_p=0.9, seed=7)
    r = client.completions.create(model="tiny", prompt="to be", max_tokens=25,
                                  extra_body={"top_k": 20}, **kw)
    ids = encode_prompt(tok, "to be")
    text, _ = reference(model, tok, ids, 25, eos_ids(model, tok), top_k=20, **kw)
    assert r.choices[0].text == text


def test_concurrent_requests_each_equal_alone(client):
    """Requests to two language models (one decoding loop steps both engines) at once."""
    asks = [dict(prompt="to be", max_tokens=30, temperature=0),
            dict(prompt="or not to be, that", max_tokens=45, temperature=0),
            dict(prompt="whether", max_tokens=20, temperature=1.0, seed=3),
            dict(prompt="tis nobler in the mind", max_tokens=35, temperature=0.7, seed=5,
                 top_p=0.8, extra_body={"repetition_penalty": 1.3, "ignore_eos": True})]
    asks += [dict(a, model="tiny2") for a in asks[:2]]
    asks = [dict({"model": "tiny"}, **a) for a in asks]
    alone = [client.completions.create(**a).choices[0].text for a in asks]
    together = [None] * len(asks)

    def ask(i):
        together[i] = client.completions.create(**asks[i]).choices[0].text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(asks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert together == alone and alone[4:] == alone[:2]


def test_embeddings_equal_zeroformer_embed(client, models, capsys, monkeypatch):
    import numpy as np

    from zeroformer.cli import main

    texts = ["the cat sat", "a much longer line about dogs", "dogs"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(texts) + "\n"))
    assert main(["embed", "--model", str(models / "bert")]) == 0
    expect = np.array([json.loads(line)["embedding"]
                       for line in capsys.readouterr().out.splitlines()])
    for fmt in ("float", "base64"):   # the client asks for base64 unless told
        kw = {} if fmt == "base64" else {"encoding_format": "float"}
        r = client.embeddings.create(model="bert", input=texts, **kw)
        got = np.array([d.embedding for d in r.data])
        assert got.shape == expect.shape
        np.testing.assert_allclose(got, expect, atol=1e-6)


# ----------------------------------------------------------------------------------- errors
def _post(url, path, body, key=KEY, timeout=60):
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    return httpx.post(url + path, content=body, headers={**headers, "Content-Type":
                                                        "application/json"}, timeout=timeout)


GOOD = {"model": "tiny", "prompt": "to be", "max_tokens": 3, "temperature": 0}
LONG = "to be or not to be, " * 110            # 2200 characters: over the 2048-token context


@pytest.mark.parametrize("path,body,status,param", [
    ("/v1/completions", {**GOOD, "model": "nope"}, 404, "model"),
    ("/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}]},
     404, "model"),
    ("/v1/embeddings", {"model": "nope", "input": "x"}, 404, "model"),
    ("/v1/completions", b'{"model": "tiny", "prompt": ', 400, None),
    ("/v1/completions", b"\xff\xfe", 400, None),
    ("/v1/completions", [1, 2], 400, None),
    ("/v1/completions", {"model": "tiny"}, 400, "prompt"),
    ("/v1/completions", {"prompt": "x"}, 400, "model"),
    ("/v1/completions", {**GOOD, "model": None}, 400, "model"),
    ("/v1/chat/completions", {"model": "tiny", "messages": []}, 400, "messages"),
    ("/v1/chat/completions", {"model": "tiny", "messages": [{"content": "x"}]}, 400,
     "messages.0.role"),
    ("/v1/completions", {**GOOD, "temperature": -1}, 400, "temperature"),
    ("/v1/completions", {**GOOD, "temperature": "hot"}, 400, "temperature"),
    ("/v1/completions", {**GOOD, "top_p": 0}, 400, "top_p"),
    ("/v1/completions", {**GOOD, "top_p": 1.5}, 400, "top_p"),
    ("/v1/completions", {**GOOD, "top_k": 0}, 400, "top_k"),
    ("/v1/completions", {**GOOD, "repetition_penalty": 0}, 400, "repetition_penalty"),
    ("/v1/completions", {**GOOD, "max_tokens": -1}, 400, "max_tokens"),
    ("/v1/completions", {**GOOD, "n": 2}, 400, "n"),
    ("/v1/completions", {**GOOD, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ("/v1/completions", {**GOOD, "logprobs": 2}, 400, "logprobs"),
    ("/v1/completions", {**GOOD, "echo": True}, 400, "echo"),
    ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "x"}],
                              "tools": [{"type": "function", "function": {"name": "f"}}]}, 400,
     "tools"),
    ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "x"}],
                              "response_format": {"type": "json_object"}}, 400,
     "response_format"),
    ("/v1/completions", {**GOOD, "prompt": [1, 10 ** 6]}, 400, "prompt"),
    ("/v1/completions", {**GOOD, "prompt": ""}, 400, "prompt"),
    ("/v1/completions", {**GOOD, "prompt": LONG}, 400, "prompt"),
    ("/v1/completions", {**GOOD, "max_tokens": MAX_TOKENS + 1}, 400, "max_tokens"),
    ("/v1/completions", {**GOOD, "prompt": "to be " * 100, "max_tokens": MAX_TOKENS}, 400,
     "max_tokens"),
    ("/v1/embeddings", {"model": "tiny", "input": "x"}, 400, "model"),
    ("/v1/completions", {**GOOD, "model": "bert"}, 400, "model"),
    ("/v1/embeddings", {"model": "bert", "input": []}, 400, "input"),
    ("/v1/completions", b"{" + b" " * (2 << 20) + b"}", 413, None),
])
def test_client_mistakes_get_their_status_in_openai_shape(server, path, body, status, param):
    r = _post(server, path, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["param"] == param


@pytest.mark.parametrize("key", ["wrong", None])
def test_wrong_or_missing_api_key_is_401(server, key):
    import openai

    r = _post(server, "/v1/completions", GOOD, key=key)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    bad = openai.OpenAI(base_url=server + "/v1", api_key=key or "x", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_null_fields_mean_their_defaults(server):
    body = {**GOOD, "top_p": None, "stop": None, "seed": None, "top_k": None, "n": None,
            "logprobs": False, "echo": False, "tools": [], "response_format": {"type": "text"}}
    r = _post(server, "/v1/completions", body)
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "length"


def test_openai_client_sees_404_and_400(client):
    import openai

    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x")
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="tiny", prompt="x", temperature=-2)
    with pytest.raises(openai.NotFoundError):
        client.get("/nowhere", cast_to=object)


def test_full_queue_is_429_and_a_gone_client_frees_its_slot(server, client):
    """SLOTS streams fill every place (--max-queue 0): one more is 429. Closing the streams
    cancels them in the engine (not left to run to max_tokens): their slots free."""
    import httpx
    import openai

    body = {**GOOD, "max_tokens": MAX_TOKENS, "stream": True, "ignore_eos": True}
    c = httpx.Client(timeout=60, headers={"Authorization": f"Bearer {KEY}"})
    health = lambda: httpx.get(server + "/health").json()["models"]["tiny"]  # noqa: E731
    cancelled = health()["cancelled"]
    streams = []
    for _ in range(SLOTS):
        s = c.stream("POST", server + "/v1/completions", json=body)
        r = s.__enter__()
        assert r.status_code == 200
        lines = r.iter_lines()          # kept: a dropped iterator closes the response
        assert next(lines).startswith("data: ")            # it is decoding
        streams.append((s, lines))
    with pytest.raises(openai.RateLimitError):
        client.completions.create(model="tiny", prompt="x", max_tokens=2)
    assert health()["running"] == SLOTS
    for s, _ in streams:
        s.__exit__(None, None, None)
    c.close()
    deadline = time.monotonic() + 60
    while health()["running"]:
        assert time.monotonic() < deadline, "cancelled requests still hold their slots"
        time.sleep(0.1)
    assert health()["cancelled"] == cancelled + SLOTS
    assert client.completions.create(model="tiny", prompt="x", max_tokens=2).choices


def test_a_gone_non_streaming_client_is_cancelled(server):
    import httpx

    health = lambda: httpx.get(server + "/health").json()["models"]["tiny"]  # noqa: E731
    cancelled = health()["cancelled"]
    with pytest.raises(httpx.TimeoutException):     # the client gives up and closes
        _post(server, "/v1/completions", {**GOOD, "max_tokens": MAX_TOKENS, "ignore_eos": True},
              timeout=0.3)
    deadline = time.monotonic() + 60
    while health()["cancelled"] == cancelled:
        assert time.monotonic() < deadline, "the request of a gone client was not cancelled"
        time.sleep(0.1)
    assert health()["running"] == 0


def test_sigterm_finishes_and_exits_0(models, tmp_path):
    import openai

    proc, url = start_server(["--model", str(models / "lm")], tmp_path / "log")
    c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    got = []

    def read():
        try:
            s = c.completions.create(model="lm", prompt="to be", max_tokens=500, stream=True,
                                     extra_body={"ignore_eos": True})
            got.extend(ch.choices[0].text for ch in s if ch.choices)
        except Exception as e:  # the server may cut it: that is allowed
            got.append(e)

    t = threading.Thread(target=read)
    t.start()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, (tmp_path / "log").read_text()
    t.join(30)
    assert got and not t.is_alive()


def test_bad_serve_flags_exit_2(models, capsys):
    require_package("uvicorn")
    from zeroformer.cli import main

    assert main(["serve", "--model", str(models / "lm"), "--max-batch", "0"]) == 2
    assert main(["serve", "--model", str(models / "lm"), "--name", "a", "--name", "b"]) == 2
    assert main(["serve", "--model", str(models / "nope")]) == 2
    with socket.socket() as s:                       # a port someone else listens on
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = str(s.getsockname()[1])
        assert main(["serve", "--model", str(models / "lm"), "--port", port]) == 2
    assert capsys.readouterr().err.count("zeroformer: error:") == 4


@pytest.mark.slow
@pytest.mark.data
def test_smollm2_chat_equals_zeroformer_chat(models, tmp_path):
    """SmolLM2's own chat template (from its GGUF): the server's greedy reply, streamed or not,
    equals inference/chat.py:reply (what `zeroformer chat` prints) for the same messages."""
    import openai

    from requires import require_data
    from zeroformer.inference.chat import reply
    from zeroformer.inference.load import load_lm

    path = require_data("smollm2")
    proc, url = start_server(["--model", str(path), "--name", "smollm2", "--max-batch", "2",
                              "--max-len", "512"], tmp_path / "log")
    try:
        c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        messages = [{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "What is the capital of France?"}]
        r = c.chat.completions.create(model="smollm2", messages=messages, max_tokens=16,
                                      temperature=0)
        streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
            model="smollm2", messages=messages, max_tokens=16, temperature=0, stream=True))
    finally:
        proc.terminate()
        proc.wait(30)
    model, tok = load_lm(path)
    expect = reply(model, tok, messages, 16, out=io.StringIO())
    assert "Paris" in expect
    assert r.choices[0].message.content.strip() == expect == streamed.strip()
