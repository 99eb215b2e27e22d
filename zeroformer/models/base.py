"""What every model carries, declared once.

    Model            `config` (the ModelConfig it was built from) and `tokenizer` (None until a
                     loader attaches the one its weights came with). BERT, the decoder-only class
                     and the encoder–decoder are all Models.
    GenerativeModel  a Model that writes tokens (the decoder-only class, the encoder–decoder):
                     `new_cache(batch, max_len)` and the one `generate`.

generate picks y_t from p(y_t | y_<t, x) with the engine of zeroformer/generate.py (greedy,
sampling, beam search) over a session that the model opens (`generation_start`):

    decoder-only      x = input_ids (B, T) is the prompt itself        -> (B, T + n)
    encoder–decoder   x = input_ids (B, S) is the source, encoded once;
                      the target starts from decoder_start_token_id    -> (B, 1 + n)

with n <= max_new_tokens. Each model says which sequences it will feed (`sequence_lengths`), so
one argument check and one context check serve both.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import UserError
from ..generate import beam_search, check_sampling_args, sample
from ..nn.kv_cache import KVCache, SlotKVCache, Slots, StaticKV
from ..nn.blocks import LayerCache


class ModelCache(list):
    """One LayerCache per decoder block. `length` = positions already cached."""

    @property
    def length(self) -> int:
        return self[0].self_kv.length if self else 0

    def reorder(self, index: torch.Tensor) -> None:
        for layer in self:
            layer.reorder(index)


class Model(nn.Module):
    """config: the ModelConfig; tokenizer: the tokenizer that came with the weights, or None."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.tokenizer = None


class GenerativeModel(Model):
    """A Model that writes tokens. Subclasses provide `decoder_layers`, `decoder_embeddings`,
    `sequence_lengths` and `generation_start`; `new_cache` and `generate` are shared."""

    #: pads the rows that finished early when the caller gives no pad_token_id (None: EOS)
    default_pad_token_id: int | None = None

    # ------------------------------------------------------------------ what a subclass provides
    @property
    def decoder_layers(self) -> nn.ModuleList:
        """The blocks that decode one token at a time (and so keep a cache)."""
        raise NotImplementedError

    @property
    def decoder_embeddings(self) -> nn.Module:
        """The Embeddings of the decoder's input tokens (their weight gives dtype and device)."""
        raise NotImplementedError

    def sequence_lengths(self, input_len: int, max_new_tokens: int) -> list[tuple[str, int]]:
        """[(what, tokens)] for every sequence that generating from input_ids (B, input_len)
        feeds to the model; each must fit config.max_seq_len."""
        raise NotImplementedError

    def generation_start(self, input_ids, attention_mask, use_cache: bool):
        """-> (prompt (B, T), its attention mask or None, new_session(rows, max_len))."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------- shared
    def new_cache(self, batch: int, max_len: int, dtype=None) -> ModelCache:
        """Per decoder block: a KVCache (batch, h_kv, max_len, d_head) for self-attention and,
        for blocks with cross-attention, an empty StaticKV. dtype/device: those of the decoder's
        embedding (the output layer may be an Int8Linear without .weight)."""
        c, w = self.config, self.decoder_embeddings.tok.weight
        return ModelCache(
            LayerCache(KVCache(batch, c.n_kv_head, max_len, c.head_dim, dtype or w.dtype, w.device),
                       StaticKV() if block.cross_attn is not None else None)
            for block in self.decoder_layers)

    def new_slot_cache(self, max_batch: int, max_len: int, dtype=None) -> ModelCache:
        """For batched decoding (zeroformer/batching.py): per decoder block a SlotKVCache
        (max_batch, h_kv, max_len, d_head); `cache.slots` (a Slots) tells every layer where this
        forward pass writes. Memory: 2 x n_layer x max_batch x max_len x h_kv x d_head values."""
        c, w = self.config, self.decoder_embeddings.tok.weight
        slots = Slots(max_batch, max_len)
        cache = ModelCache(LayerCache(SlotKVCache(slots, c.n_kv_head, c.head_dim,
                                                  dtype or w.dtype, w.device))
                           for _ in self.decoder_layers)
        cache.slots = slots
        return cache

    def slot_session(self, max_batch: int, max_len: int):
        """A session over a slot cache for batching.py's BatchEngine (decoder-only models)."""
        raise UserError(f"batched decoding needs a decoder-only model ({type(self).__name__} "
                        f"is not one)")

    def generate(self, input_ids, max_new_tokens, temperature=0.0, top_k=None, top_p=None,
                 num_beams=1, eos_token_id=None, attention_mask=None, seed=None,
                 length_penalty=1.0, use_cache=True, *, repetition_penalty=1.0,
                 pad_token_id=None, stream=None, stop=None, length_norm="length") -> torch.Tensor:
        """input_ids (B, T) and attention_mask (B, T) (1 = real token, 0 = padding) -> token ids
        (see the module docstring for the output's shape). Rows that emit `eos_token_id`
        (default config.eos_token_id) or for which `stop(seqs)` holds are finished and padded
        with `pad_token_id`. temperature 0 = greedy, else sampling (top_k, top_p, `seed` for
        reproducibility); repetition_penalty > 1 discourages tokens already present;
        `stream(tokens (B,))` is called once per step. num_beams > 1 = beam search, which scores
        a hypothesis sum(log p) / length^length_penalty (length_norm="gnmt": GNMT's
        ((5 + length) / 6)^length_penalty; generate.py:length_divisor) and refuses the sampling
        arguments.
        use_cache=False re-runs the whole prefix every step (the reference path, for tests)."""
        check_sampling_args(temperature, top_k, top_p, num_beams, repetition_penalty,
                            max_new_tokens=max_new_tokens, stream=stream, stop=stop)
        context = self.config.max_seq_len
        for what, n in self.sequence_lengths(input_ids.size(1), max_new_tokens):
            if n > context:
                raise UserError(f"{what} exceed the model's context of {context} tokens")
        eos = self.config.eos_token_id if eos_token_id is None else eos_token_id
        pad = self.default_pad_token_id if pad_token_id is None else pad_token_id
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                prompt, mask, new_session = self.generation_start(input_ids, attention_mask,
                                                                  use_cache)
            max_len = prompt.size(1) + max_new_tokens
            if num_beams > 1:
                return beam_search(lambda rows: new_session(rows, max_len), prompt, max_new_tokens,
                                   num_beams, attention_mask=mask, eos_token_id=eos,
                                   pad_token_id=pad, length_penalty=length_penalty,
                                   length_norm=length_norm)
            return sample(new_session(prompt.size(0), max_len), prompt, max_new_tokens,
                          attention_mask=mask, temperature=temperature, top_k=top_k, top_p=top_p,
                          eos_token_id=eos, pad_token_id=pad, seed=seed,
                          repetition_penalty=repetition_penalty, stream=stream, stop=stop)
        finally:
            self.train(was_training)
