"""`zeroformer convert SRC OUT [--to hf|zeroformer]`: load any supported model and write it as a
Hugging Face folder (`--to hf`, for transformers) or a zeroformer checkpoint folder.

The Hugging Face layout is chosen from the model's config: decoder with learned positions -> gpt2,
decoder with RoPE -> llama, encoder -> bert, encoder_decoder -> marian; the writer is `export()` in
`zeroformer/io/hf_<type>.py`.

SRC may be a training run folder (its latest checkpoint) or a checkpoint folder, also the sharded
checkpoint of an FSDP run: its shards are assembled in this one process (no torchrun;
zeroformer/io/sharded.py:load_full) and written as one ordinary safetensors folder.
"""

from __future__ import annotations

import importlib

from ..errors import UserError


def hf_model_type(cfg) -> str:
    if cfg.arch == "decoder":
        return "llama" if cfg.position == "rope" else "gpt2"
    if cfg.arch not in ("encoder", "encoder_decoder"):
        raise UserError(f"no Hugging Face layout for arch={cfg.arch!r} (word vectors export with "
                        "`zeroformer neighbors --model RUN --export FILE`)")
    return {"encoder": "bert", "encoder_decoder": "marian"}[cfg.arch]


def register(sub):
    p = sub.add_parser("convert", help="convert a model between formats (HF, GGUF -> zeroformer, HF)")
    p.add_argument("src", help="model folder or .gguf file")
    p.add_argument("out", help="output folder")
    p.add_argument("--to", choices=["hf", "zeroformer"], default="zeroformer")
    p.set_defaults(func=run)


def run(args):
    from .. import load

    model = load(args.src)
    if args.to == "zeroformer":
        from ..io.checkpoint import save_checkpoint

        save_checkpoint(model, args.out, tokenizer=model.tokenizer)
    else:
        mtype = hf_model_type(model.config)
        try:
            exporter = importlib.import_module(f"..io.hf_{mtype}", __package__)
        except ModuleNotFoundError:
            raise UserError(f"export to Hugging Face {mtype} is not available") from None
        exporter.export(model, args.out)
    print(args.out)
