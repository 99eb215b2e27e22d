"""Word vectors for a job: nearest neighbours, analogies, export.

A table of word vectors comes from a `zeroformer train word2vec` run (or checkpoint): its
tokenizer's words and the rows of `embed.weight` (models/word2vec.py), special tokens left out;
or from a word2vec text file (io/word2vec_text.py), e.g. one exported by gensim.

    neighbours(w)       the words whose vectors have the highest cosine with v_w
    analogy(a, b, c)    "a is to b as c is to ?": the words nearest to
                        unit(v_b) - unit(v_a) + unit(v_c)  (a, b, c left out; gensim's most_similar)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserError
from ..models.word2vec import nearest


@dataclass
class WordVectors:
    words: list[str]
    vectors: torch.Tensor                     # (N, d), row i = words[i]
    lowercase: bool = False

    def __post_init__(self):
        self.index = {w: i for i, w in enumerate(self.words)}

    def row(self, word: str) -> int:
        key = word.lower() if self.lowercase else word
        if key not in self.index:
            raise UserError(f"{word!r} is not in the vocabulary ({len(self.words):,} words)")
        return self.index[key]

    def neighbours(self, word: str, top: int = 10) -> list[tuple[str, float]]:
        i = self.row(word)
        return [(self.words[j], c) for j, c in nearest(self.vectors, self.vectors[i], top, [i])]

    def analogy(self, a: str, b: str, c: str, top: int = 10) -> list[tuple[str, float]]:
        rows = [self.row(w) for w in (a, b, c)]
        unit = self.vectors[rows].float()
        unit = unit / unit.norm(dim=1, keepdim=True).clamp(min=1e-12)
        query = unit[1] - unit[0] + unit[2]
        return [(self.words[j], s) for j, s in nearest(self.vectors, query, top, rows)]


def load_word_vectors(path) -> WordVectors:
    """From a word2vec run or checkpoint folder, or a word2vec text file."""
    p = Path(path)
    if p.is_file():
        from ..io.word2vec_text import read

        words, vectors = read(p)
        return WordVectors(words, vectors)
    from ..io.loading import load_model

    model = load_model(p)
    if getattr(model.config, "arch", None) != "word2vec" or model.tokenizer is None:
        raise UserError(f"{path}: not word vectors (a `zeroformer train word2vec` run or a "
                        f"word2vec text file); this model is arch={model.config.arch!r}")
    tok = model.tokenizer
    words = list(tok.words)
    ids = torch.tensor([tok.stoi[w] for w in words], dtype=torch.long)
    return WordVectors(words, model.embed.weight.detach()[ids].float(),
                       lowercase=bool(getattr(tok, "lowercase", False)))


def export(wv: WordVectors, path) -> Path:
    from ..io.word2vec_text import write

    return write(path, wv.words, wv.vectors)
