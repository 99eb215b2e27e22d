"""`zeroformer serve`: an OpenAI-compatible HTTP server (a front end, like cli/ and recipes/).

    models  --model PATH (each named by its file/folder stem or --name): a language model is
            served by /v1/completions and /v1/chat/completions, a BERT encoder by /v1/embeddings
    loop    one decoding thread (loop.py) owns a BatchEngine per language model (batching.py):
            requests join the running batch at token boundaries; tokens go back per request
    api     FastAPI routes, OpenAI's shapes and errors (api.py, schemas.py); uvicorn serves them

It imports inference/ and the library below, never cli/ (tests/test_layers.py). Needs the
optional extra `pip install 'zeroformer[serve]'` (fastapi, uvicorn).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from .errors import ApiError


@dataclass
class Served:
    name: str
    kind: str                  # "lm" | "encoder"
    model: object
    tok: object
    path: str
    engine: object = None      # a BatchEngine (lm)
    max_length: int = 512      # tokens per text (encoder)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def embed(self, texts):
        from ..inference.embedding import embed_texts

        with self.lock:
            return embed_texts(self.model, self.tok, texts, 32, self.max_length)


class State:
    """What the routes share: the models, the decoding loop, the limits."""

    def __init__(self, models: dict, max_tokens: int, api_key: str | None, max_pending: int,
                 max_body: int):
        from .loop import DecodingLoop

        self.models, self.max_tokens, self.api_key = models, max_tokens, api_key
        self.max_pending, self.max_body = max_pending, max_body
        self.pending = {name: 0 for name in models}
        self.created = int(time.time())
        self.loop = DecodingLoop({n: s.engine for n, s in models.items() if s.kind == "lm"})

    def authorize(self, request) -> None:
        if self.api_key is None:
            return
        given = request.headers.get("authorization", "")
        if given != f"Bearer {self.api_key}":
            raise ApiError(401, "invalid or missing API key (Authorization: Bearer KEY)",
                           code="invalid_api_key")

    def get(self, name: str) -> Served:
        if name not in self.models:
            raise ApiError(404, f"the model {name!r} does not exist (served: "
                           f"{', '.join(self.models)})", param="model", code="model_not_found")
        return self.models[name]

    def lm(self, name: str) -> Served:
        served = self.get(name)
        if served.kind != "lm":
            raise ApiError(400, f"{name!r} is an embedding model (use /v1/embeddings)",
                           param="model")
        return served

    def encoder(self, name: str) -> Served:
        served = self.get(name)
        if served.kind != "encoder":
            raise ApiError(400, f"{name!r} is not an embedding model", param="model")
        return served

    def admit(self, name: str):
        """Take a place for one request (running or queued); 429 when all are taken. -> a
        function that gives it back (once, however often it is called)."""
        if self.pending[name] >= self.max_pending:
            raise ApiError(429, f"too many requests for {name!r} ({self.max_pending} running or "
                           "queued); retry later", type="rate_limit_error",
                           code="rate_limit_exceeded")
        self.pending[name] += 1
        held = [True]

        def release():
            if held:
                held.clear()
                self.pending[name] -= 1

        return release


def load_models(paths, names=None, max_batch: int = 8, max_len: int = 2048, dtype=None,
                int8=False, int4=False, report=None) -> dict:
    """{name: Served} of every model path (names[i] names paths[i]; a path without one is named
    by its stem). A
    language model's engine has `max_batch` slots of min(max_len, its context) positions (the
    KV cache is allocated once: max_batch x max_len positions per layer)."""
    from ..batching import BatchEngine
    from ..inference.load import load_any, max_length_of

    names = list(names or [])
    if len(names) > len(paths):
        raise UserError(f"--name given {len(names)} times for {len(paths)} --model")
    out = {}
    for i, path in enumerate(paths):
        name = names[i] if i < len(names) else Path(path).stem
        if name in out:
            raise UserError(f"two models are named {name!r}; give each a --name")
        kind, model, tok = load_any(path, dtype, int8, int4, report)
        served = Served(name, kind, model, tok, str(path))
        if kind == "lm":
            served.engine = BatchEngine(model, max_batch=max_batch,
                                        max_len=min(max_len, model.config.max_seq_len))
        else:
            served.max_length = max_length_of(model, path)
        out[name] = served
    return out


def _check_address(host: str, port: int) -> None:
    """UserError now (before the models load) when host:port cannot be listened on."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None


def run(paths, names=None, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 8,
        max_tokens: int = 512, max_len: int = 2048, api_key: str | None = None, max_queue: int = 64,
        max_body: int = 1 << 20, dtype=None, int8=False, int4=False, report=None,
        log_level: str = "info", shutdown_timeout: int = 3) -> int:
    """Load the models and serve them until SIGTERM / Ctrl-C -> 0."""
    try:
        import uvicorn

        from .api import make_app
    except ImportError as e:
        raise UserError(f"`zeroformer serve` needs fastapi and uvicorn ({e}); "
                        "pip install 'zeroformer[serve]'") from None
    for flag, value, low in (("--max-batch", max_batch, 1), ("--max-tokens", max_tokens, 1),
                             ("--max-queue", max_queue, 0), ("--port", port, 0),
                             ("--max-len", max_len, 2)):
        if value < low:
            raise UserError(f"{flag} must be >= {low} (got {value})")
    _check_address(host, port)
    models = load_models(paths, names, max_batch, max_len, dtype, int8, int4, report)
    state = State(models, max_tokens, api_key, max_batch + max_queue, max_body)
    app = make_app(state)
    state.loop.start()
    # uvicorn re-raises the signal it caught after its graceful shutdown; with this handler
    # installed first, that re-raise is harmless and the command exits 0.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    logging.getLogger("zeroformer.serve").setLevel(log_level.upper())
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level,
                    timeout_graceful_shutdown=shutdown_timeout)
    finally:
        state.loop.stop()
        signal.signal(signal.SIGTERM, previous)
    return 0
