"""Tokenizers read from GGUF metadata: SmolLM2 vs transformers reading the same file (ids and the
chat template rendered), and llama.cpp's own expected-id vectors (ggml-vocab-*.gguf + .inp/.out)."""

import copy

import pytest

from test_tokenizers_texts import TEXTS
from zeroformer.data import locate
from zeroformer.errors import UserError
from zeroformer.tokenizers import load_tokenizer

SYS, USER, BOT = "system", "user", "assistant"
CONVERSATIONS = [
    [(USER, "What is 2+2?")],
    [(SYS, "Be brief."), (USER, "What is 2+2?")],
    [(USER, "Hi"), (BOT, "Hello! How can I help?"), (USER, "Tell me a joke.")],
    [(SYS, "You answer in French."), (USER, "Hello"), (BOT, "Bonjour !"), (USER, "Thanks\n\nbye"),
     (BOT, "De rien."), (USER, "  spaces  ")],
    [(USER, "naïve 日本語 🎉 <|im_end|> {{ not jinja }} {% raw %}"), (BOT, "")],
]
# A template using what SmolLM2's does not: whitespace control (trim_blocks / lstrip_blocks),
# bos/eos variables, filters, loop variables, raise_exception.
LAYOUT_TEMPLATE = """{{ bos_token }}
{% for m in messages %}
    {% if m['role'] == 'system' %}
<<SYS>> {{ m['content'] | trim }} <</SYS>>
    {% elif m['role'] == 'user' %}
[USER {{ loop.index }}] {{ m['content'] }}
    {% elif m['role'] == 'assistant' %}
  [BOT] {{- m['content'] -}} {{ eos_token }}
    {% else %}
{{ raise_exception('unknown role ' + m['role']) }}
    {% endif %}
{% endfor %}
{% if add_generation_prompt %}
[BOT]
{%- endif %}"""
CHAT = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"


@pytest.fixture(scope="session")
def smollm2_path():
    p = locate("smollm2")
    if p is None:
        pytest.skip("smollm2 not fetched (zeroformer data fetch smollm2)")
    return p


@pytest.fixture(scope="session")
def smollm2(smollm2_path):
    return load_tokenizer(smollm2_path)


@pytest.fixture(scope="session")
def smollm2_hf(smollm2_path):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(smollm2_path.parent),
                                                      gguf_file=smollm2_path.name)


def test_smollm2_metadata(smollm2, smollm2_hf):
    assert smollm2.vocab_size == len(smollm2_hf) == 49152
    assert smollm2.bos_token_id == smollm2_hf.bos_token_id
    assert smollm2.eos_token_id == smollm2_hf.eos_token_id
    assert "<|im_start|>" in smollm2.chat_template
    assert smollm2.encode("hi", add_special_tokens=True) == smollm2_hf.encode("hi")


@pytest.mark.parametrize("text", TEXTS + [CHAT])
def test_smollm2_matches_transformers(smollm2, smollm2_hf, text):
    ids = smollm2.encode(text)
    assert ids == smollm2_hf.encode(text, add_special_tokens=False)
    assert smollm2.decode(ids) == smollm2_hf.decode(ids)


@pytest.mark.parametrize("turns", CONVERSATIONS)
def test_chat_template_matches_transformers(smollm2, smollm2_hf, turns):
    """The prompt `zeroformer chat` renders (SmolLM2's ChatML template from the GGUF, with the
    assistant's turn opened) = transformers' apply_chat_template on the same file; also for a
    template with whitespace control and bos/eos variables."""
    from zeroformer.inference.chat import render

    messages = [{"role": r, "content": c} for r, c in turns]
    ref = smollm2_hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert render(smollm2, messages) == ref
    assert smollm2.encode(ref) == smollm2_hf.encode(ref, add_special_tokens=False)
    other = copy.copy(smollm2)
    other.chat_template = LAYOUT_TEMPLATE
    assert render(other, messages) == smollm2_hf.apply_chat_template(
        messages, chat_template=LAYOUT_TEMPLATE, tokenize=False, add_generation_prompt=True)


def test_chat_template_raise_exception(smollm2, smollm2_hf):
    """A template's raise_exception: transformers raises, ours is a user error with the message."""
    from zeroformer.inference.chat import render

    other = copy.copy(smollm2)
    other.chat_template = LAYOUT_TEMPLATE
    messages = [{"role": "tool", "content": "x"}]
    with pytest.raises(Exception, match="unknown role tool"):
        smollm2_hf.apply_chat_template(messages, chat_template=LAYOUT_TEMPLATE, tokenize=False)
    with pytest.raises(UserError, match="unknown role tool"):
        render(other, messages)


def test_smollm2_digits_split_like_its_tokenizer_json(smollm2, smollm2_hf):
    """SmolLM2's own tokenizer.json (and llama.cpp's "smollm" pre-tokenizer) split every digit
    first; transformers' GGUF reader does not add that step, so compare with it added."""
    from tokenizers import pre_tokenizers

    backend = smollm2_hf.backend_tokenizer
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    for text in ["  12 345 a1b22 3.14159 99999", "year 2024: 1,000,000 (x10)"] + TEXTS:
        assert smollm2.encode(text) == backend.encode(text, add_special_tokens=False).ids, text


@pytest.mark.parametrize("name", ["gpt-2", "llama-spm", pytest.param("llama-bpe", marks=pytest.mark.slow),
                                  pytest.param("qwen2", marks=pytest.mark.slow)])
def test_llama_cpp_vectors(name):
    d = locate("llama-cpp-vocab")
    if d is None:
        pytest.skip("llama-cpp-vocab not fetched")
    path = d / f"ggml-vocab-{name}.gguf"
    tok = load_tokenizer(path)
    inputs = (d / f"{path.name}.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    outputs = (d / f"{path.name}.out").read_text(encoding="utf-8").split("\n")
    assert len(inputs) > 20 and len(inputs) == len(outputs)
    for text, expected in zip(inputs, outputs):
        assert tok.encode(text) == [int(x) for x in expected.split()], text


def test_bad_gguf(tmp_path, smollm2_path):
    cut = tmp_path / "cut.gguf"
    with open(smollm2_path, "rb") as f:
        cut.write_bytes(f.read(300_000))
    with pytest.raises(UserError, match="cut.gguf"):
        load_tokenizer(cut)
    foreign = tmp_path / "foreign.gguf"
    foreign.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(UserError, match="foreign.gguf"):
        load_tokenizer(foreign)
    d = locate("llama-cpp-vocab")
    if d is not None:
        with pytest.raises(UserError, match="not supported"):
            load_tokenizer(d / "ggml-vocab-bert-bge.gguf")  # WordPiece: not read from GGUF yet
