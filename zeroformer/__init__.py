"""zeroformer: the Transformer family from first principles, in one readable PyTorch codebase."""

__version__ = "0.1.0"

from .config import ModelConfig, preset  # noqa: E402
from .errors import UserError  # noqa: E402


def load(path, dtype=None):
    """Load a model: a zeroformer checkpoint folder, a Hugging Face folder, or a `.gguf` file."""
    from .io.loading import load_model

    return load_model(path, dtype=dtype)


def load_tokenizer(path):
    """Load a tokenizer from a file or folder (tokenizer.json, vocab.txt, *.tiktoken, .gguf, ...)."""
    from .tokenizers import load_tokenizer as _load

    return _load(path)


__all__ = ["ModelConfig", "preset", "UserError", "load", "load_tokenizer", "__version__"]
