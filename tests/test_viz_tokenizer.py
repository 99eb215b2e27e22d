"""`zeroformer viz tokenizer`: the steps shown are the textbook algorithms, written out here from
the vocabulary files themselves (GPT-2's vocab.bpe merge list, BERT's vocab.txt, the LLaMA
SentencePiece model's scores read by the `sentencepiece` library), and the tokens they end in are
the reference tokenizers' (`tokenizers`, `sentencepiece`)."""

import math

from requires import require_data, require_package
from zeroformer import load_tokenizer
from zeroformer.cli import main
from zeroformer.inference.split_steps import split_steps
from zeroformer.tokenizers.char import CharTokenizer

TEXT = "The lowest unaffable tokenizer's 2026 naïve café"


def textbook_bpe(symbols, rank):
    """Merge the lowest-ranked adjacent pair (leftmost on a tie) until none has a rank ->
    [(rank, parts after the merge)]."""
    parts, steps = list(symbols), []
    while len(parts) > 1:
        r, i = min((rank(a, b), i) for i, (a, b) in enumerate(zip(parts, parts[1:])))
        if r == math.inf:
            break
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]
        steps.append((r, parts))
    return steps


def test_gpt2_bpe_steps_are_the_merge_list_in_order():
    folder = require_data("gpt2-tokenizer")
    lines = (folder / "vocab.bpe").read_text(encoding="utf-8").splitlines()
    ranks = {tuple(line.split()): r for r, line in enumerate(l for l in lines[1:] if l.strip())}
    s = split_steps(load_tokenizer(folder), TEXT)
    assert s["algorithm"] == "byte-level BPE"
    assert len(s["words"]) == 8 and s["words"][1]["word"] == " lowest"
    for w in s["words"]:
        want = textbook_bpe(w["symbols"], lambda a, b: ranks.get((a, b), math.inf))
        assert [(st["rank"], st["parts"]) for st in w["steps"]] == want
        assert w["tokens"] == (want[-1][1] if want else w["symbols"])
    assert sum(len(w["steps"]) for w in s["words"]) > 20
    # the tokens are transformers' tokenizers' (encoder.json + vocab.bpe)
    tokenizers = require_package("tokenizers")
    ref = tokenizers.ByteLevelBPETokenizer(str(folder / "encoder.json"), str(folder / "vocab.bpe"))
    assert [t for w in s["words"] for t in w["tokens"]] == ref.encode(TEXT).tokens == s["tokens"]
    # tiktoken's rule (a pair's rank = the rank of the token it makes) takes the same steps
    t = split_steps(load_tokenizer(folder / "gpt2.tiktoken"), TEXT)
    assert t["algorithm"] == "byte-level BPE (tiktoken ranks)"
    assert [[st["parts"] for st in w["steps"]] for w in t["words"]] == \
        [[st["parts"] for st in w["steps"]] for w in s["words"]]


def test_wordpiece_steps_take_the_longest_prefix():
    folder = require_data("minilm")
    vocab = set((folder / "vocab.txt").read_text(encoding="utf-8").splitlines())
    text = TEXT + " x😀y"
    s = split_steps(load_tokenizer(folder), text)
    assert s["algorithm"].startswith("WordPiece")
    for w in s["words"]:
        word, at = w["word"], 0
        for st in w["steps"]:
            assert st["at"] == at
            spelled = (lambda a, b: word[a:b] if a == 0 else "##" + word[a:b])  # noqa: E731
            if st["piece"] is None:  # no prefix at all: the whole word is [UNK]
                assert all(spelled(at, end) not in vocab for end in range(at + 1, len(word) + 1))
                assert st["tried"] == len(word) - at and w["tokens"] == ["[UNK]"]
                break
            end = at + len(st["piece"]) - (2 if at else 0)
            assert st["piece"] == spelled(at, end) and st["piece"] in vocab
            assert all(spelled(at, e) not in vocab for e in range(end + 1, len(word) + 1))
            assert st["tried"] == len(word) - end + 1
            at = end
        else:
            assert at == len(word) and w["tokens"] == [st["piece"] for st in w["steps"]]
    assert s["words"][-1]["tokens"] == ["[UNK]"] and s["words"][-1]["steps"][-1]["piece"] is None
    tokenizers = require_package("tokenizers")
    ref = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    ref.no_padding()
    want = ref.encode(text, add_special_tokens=False).tokens
    assert [t for w in s["words"] for t in w["tokens"]] == want == s["tokens"]


def test_sentencepiece_bpe_steps_merge_the_best_scored_pair():
    folder = require_data("llama-spm")
    spm = require_package("sentencepiece")
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    unk = sp.unk_id()

    def rank(a, b):  # the higher the score the earlier the merge
        i = sp.piece_to_id(a + b)
        return math.inf if i == unk else -sp.get_score(i)

    s = split_steps(load_tokenizer(folder), TEXT)
    assert s["algorithm"].startswith("SentencePiece BPE")
    for w in s["words"]:
        want = textbook_bpe(w["symbols"], rank)
        assert [(-st["score"], st["parts"]) for st in w["steps"]] == want
    assert s["tokens"] == sp.encode(TEXT, out_type=str)


def test_cli_prints_the_steps(tmp_path, capsys):
    folder = require_data("minilm")
    assert main(["viz", "tokenizer", "--tokenizer", str(folder), "--text", "unaffable"]) == 0
    out = capsys.readouterr().out
    assert "at 0" in out and "at 3" in out
    assert out.splitlines()[-2] == "tokens: una ##ffa ##ble"
    CharTokenizer("abc").save(tmp_path / "char.json")
    assert main(["viz", "tokenizer", "--tokenizer", str(tmp_path / "char.json"), "--text",
                 "abc"]) == 0
    assert "no merge steps" in capsys.readouterr().out
    assert main(["viz", "tokenizer", "--tokenizer", str(tmp_path / "nope"), "--text", "a"]) == 2
