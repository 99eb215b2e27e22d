"""How a tokenizer splits a text, step by step (`zeroformer viz tokenizer`).

    byte-level BPE     pre-tokenize (regex), spell each piece's bytes, then merge the leftmost
                       lowest-ranked adjacent pair until no pair has a rank (tokenizers/bpe.py)
    SentencePiece BPE  normalize ("▁" for spaces), then merge the highest-scoring adjacent pair
                       (tokenizers/spm_algos.py:bpe_segment)
    WordPiece          normalize and pre-tokenize (BERT), then at each position take the longest
                       prefix in the vocabulary ("##" after the first) (tokenizers/wordpiece.py)

The steps come from the tokenizers' own loops (their `trace` argument), so they are the steps
that encode takes. Unigram SentencePiece picks the best segmentation at once (Viterbi) and a
character tokenizer has nothing to merge: for those only the result is given.
"""

from __future__ import annotations


def split_steps(tok, text: str) -> dict:
    """-> {"algorithm", "words": [{"word", "symbols", "steps", "tokens"}], "tokens", "ids",
    "note"}. A BPE step is {"rank" (or "score"), "merge": [left, right], "parts"}; a WordPiece
    step is {"at", "piece" (None: no match -> [UNK]), "tried"}. "tokens"/"ids" are what
    encode_ordinary gives for the whole text."""
    from ..tokenizers import spm_proto
    from ..tokenizers.bpe import BPETokenizer, spell
    from ..tokenizers.sentencepiece import SentencePieceTokenizer
    from ..tokenizers.wordpiece import WordPieceTokenizer

    spm = getattr(tok, "source", None)  # an opus-mt tokenizer cuts with its source model
    spm = spm if isinstance(spm, SentencePieceTokenizer) else tok
    ids = tok.encode_ordinary(text)
    out = {"algorithm": type(tok).__name__, "words": [], "ids": ids,
           "tokens": [tok.id_to_token(i) for i in ids], "note": None}
    if isinstance(tok, BPETokenizer):
        out["algorithm"] = "byte-level BPE" + (" (tiktoken ranks)" if tok.merges is None else "")
        for piece in tok.pretokenize(text):
            trace, word = [], spell(piece)
            got = tok._bpe(word, trace)
            out["words"].append({"word": piece, "symbols": list(word), "tokens": [
                tok.id_to_token(i) for i in got], "steps": [
                {"rank": r, "merge": [a, b], "parts": parts} for r, a, b, parts in trace]})
        if tok.ignore_merges:
            out["note"] = "a piece that is a whole token is taken as is (ignore_merges)"
    elif isinstance(tok, WordPieceTokenizer):
        out["algorithm"] = "WordPiece (greedy longest match first)"
        for word in tok.pre_tokenize(tok.normalize(text)):
            trace = []
            got = tok._word_ids(word, trace)
            out["words"].append({"word": word, "symbols": list(word), "tokens": [
                tok.id_to_token(i) for i in got], "steps": [
                {"at": at, "piece": piece, "tried": tried} for at, piece, tried in trace]})
        if any(len(w["word"]) > tok.max_chars for w in out["words"]):
            out["note"] = f"a word longer than {tok.max_chars} characters is [UNK] at once"
    elif isinstance(spm, SentencePieceTokenizer) and spm.spec.model_type == spm_proto.BPE:
        from ..tokenizers.spm_algos import bpe_segment

        out["algorithm"] = "SentencePiece BPE (highest score first)"
        norm = spm.normalizer.normalize(text)
        words = [w for w in spm._word_start.split(norm) if w] if spm._words is not None else [norm]
        for word in words:
            trace = []
            got = bpe_segment(word, spm.vocab, spm.scores, spm.unused, spm.user, spm.user_max,
                              trace)
            out["words"].append({"word": word, "symbols": list(word), "tokens": got, "steps": [
                {"score": sc, "merge": [a, b], "parts": parts} for sc, a, b, parts in trace]})
    else:
        kind = ("SentencePiece unigram" if isinstance(spm, SentencePieceTokenizer)
                else type(tok).__name__)
        out["algorithm"] = kind
        out["note"] = (f"{kind} has no merge steps to show (unigram: the most probable "
                       "segmentation is chosen at once; characters: one token each)")
    return out
