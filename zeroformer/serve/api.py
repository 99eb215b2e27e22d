"""The HTTP routes (FastAPI): /health, /v1/models, /v1/completions, /v1/chat/completions,
/v1/embeddings, in OpenAI's request and response shapes.

A generation request is checked here (model, sampling values, prompt length, max_tokens, the
queue bound) before it reaches the decoding loop (loop.py), so a client's mistake is a 4xx in
OpenAI's error shape, never a 500. A streamed reply is server-sent events, one
``data: {chunk}`` per piece of text, then ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from ..errors import UserError
from ..inference.chat import END_OF_TURN, render
from ..inference.text import Detokenizer, encode_prompt, eos_ids, stop_on_strings
from .errors import ApiError
from .loop import Job
from .schemas import Chat, Completion, Embeddings, message_text, parse


def error(status, message, param=None, code=None, type="invalid_request_error"):
    return JSONResponse(ApiError(status, message, param, code, type).body(), status_code=status)


def make_app(state) -> FastAPI:
    """state: serve/__init__.py:State (the models, the decoding loop, the limits)."""
    app = FastAPI(title="zeroformer", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(request, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(UserError)
    async def _user_error(request, e: UserError):
        return error(400, str(e))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e):
        return error(400, str(e.errors()[0].get("msg", e)) if e.errors() else str(e))

    @app.exception_handler(HTTPException)
    async def _http(request, e: HTTPException):
        return error(e.status_code, str(e.detail), code="not_found" if e.status_code == 404
                     else None)

    @app.exception_handler(Exception)
    async def _internal(request, e):
        return error(500, "internal server error", type="server_error")

    @app.get("/health")
    async def health():
        """Liveness, and per language model its requests running (in slots) and queued."""
        return {"status": "ok", "models": {
            n: {"running": len(s.engine.running), "queued": len(s.engine.queue),
                "slots": s.engine.max_batch, "cancelled": state.loop.cancelled[n]}
            for n, s in state.models.items() if s.kind == "lm"}}

    @app.get("/v1/models")
    async def models(request: Request):
        state.authorize(request)
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": state.created, "owned_by": "zeroformer"}
            for name in state.models]}

    @app.post("/v1/completions")
    async def completions(request: Request):
        req = await accept(state, request, Completion)
        served = state.lm(req.model)
        prompt = req.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            if len(prompt) != 1:
                raise ApiError(400, "one prompt per request is supported", param="prompt")
            prompt = prompt[0]
        ids = encode_prompt(served.tok, prompt) if isinstance(prompt, str) else list(prompt)
        if any(not 0 <= i < served.model.config.vocab_size for i in ids):
            raise ApiError(400, "a prompt token id is outside the vocabulary", param="prompt")
        return await answer(state, served, req, ids, chat=False, request=request)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        req = await accept(state, request, Chat)
        served = state.lm(req.model)
        messages = [{"role": m.role, "content": message_text(m)} for m in req.messages]
        ids = served.tok.encode(render(served.tok, messages))
        return await answer(state, served, req, ids, chat=True, request=request)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        req = await accept(state, request, Embeddings)
        served = state.encoder(req.model)
        texts = [req.input] if isinstance(req.input, str) else req.input
        if not texts:
            raise ApiError(400, "input is empty", param="input")
        emb = await asyncio.to_thread(served.embed, texts)
        data = []
        for i, e in enumerate(emb):
            vec = (base64.b64encode(e.numpy().astype("<f4").tobytes()).decode()
                   if req.encoding_format == "base64" else e.tolist())
            data.append({"object": "embedding", "index": i, "embedding": vec})
        n = sum(len(served.tok.encode(t)) + 2 for t in texts)
        return {"object": "list", "data": data, "model": req.model,
                "usage": {"prompt_tokens": n, "total_tokens": n}}

    return app


async def accept(state, request: Request, schema):
    """An API call's body: authorized (401), within the size limit (413), JSON (400), valid for
    `schema` (400), in that order."""
    state.authorize(request)
    return parse(schema, await read_json(request, state.max_body))


async def read_json(request: Request, limit: int):
    """The body as JSON: 413 over `limit` bytes, 400 when it is not JSON."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"request body over {limit} bytes", code="request_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"request body over {limit} bytes", code="request_too_large")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the body is not valid JSON ({e})", code="invalid_json") from None


def checked(state, served, req, ids: list[int], chat: bool) -> tuple[dict, Detokenizer]:
    """engine.add's keywords for this request, and the Detokenizer of its reply; ApiError 400
    for what the request cannot have."""
    if req.n != 1:
        raise ApiError(400, "only n=1 is supported", param="n")
    field = req.unsupported()
    if field:
        raise ApiError(400, f"{field} is not supported by this server", param=field)
    if not ids:
        raise ApiError(400, "the prompt is empty (no tokens)", param="prompt")
    context = served.engine.max_len
    if len(ids) >= context:
        raise ApiError(400, f"the prompt has {len(ids)} tokens; this model's context is "
                       f"{context}", param="messages" if chat else "prompt",
                       code="context_length_exceeded")
    max_new = req.max_completion_tokens if req.max_completion_tokens is not None \
        else req.max_tokens
    if max_new is None:
        max_new = min(state.max_tokens, context - len(ids))
    elif max_new > state.max_tokens:
        raise ApiError(400, f"max_tokens {max_new} is over this server's limit "
                       f"{state.max_tokens}", param="max_tokens")
    elif len(ids) + max_new > context:
        raise ApiError(400, f"prompt ({len(ids)} tokens) + max_tokens ({max_new}) exceed this "
                       f"model's context {context}", param="max_tokens",
                       code="context_length_exceeded")
    stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(stops) > 4:
        raise ApiError(400, "at most 4 stop strings", param="stop")
    ends = eos_ids(served.model, served.tok, END_OF_TURN if chat else ())
    add = dict(prompt_ids=ids, max_new_tokens=max_new, temperature=req.temperature,
               top_k=req.top_k, top_p=None if req.top_p == 1.0 else req.top_p,
               eos_token_id=[] if req.ignore_eos else ends, seed=req.seed,
               repetition_penalty=req.repetition_penalty,
               stop=stop_on_strings(served.tok, len(ids), [s for s in stops if s]))
    return add, Detokenizer(served.tok, hidden=ends, stops=stops)


async def answer(state, served, req, ids, chat: bool, request: Request):
    add, detok = checked(state, served, req, ids, chat)
    release = state.admit(served.name)           # 429 when the queue is full
    pieces = run_job(state, served.name, add, detok, request, not req.stream, release)
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
    head = {"id": rid, "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": req.model}

    def finish_reason() -> str:
        stopped = detok.stopped or (detok.ids and detok.ids[-1] in add["eos_token_id"])
        return "stop" if stopped or len(detok.ids) < add["max_new_tokens"] else "length"

    def usage():
        n = len(detok.ids)
        return {"prompt_tokens": len(ids), "completion_tokens": n, "total_tokens": len(ids) + n}

    if not req.stream:
        async for _ in pieces:
            pass
        text = detok.text()
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}} if chat
                  else {"index": 0, "text": text})
        choice.update(logprobs=None, finish_reason=finish_reason())
        return {**head, "choices": [choice], "usage": usage()}

    head["object"] = "chat.completion.chunk" if chat else "text_completion"

    def chunk(text, reason=None, first=False):
        if chat:
            delta = {"role": "assistant", "content": text} if first else \
                ({"content": text} if text or reason is None else {})
            c = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
        else:
            c = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        return f"data: {json.dumps({**head, 'choices': [c]})}\n\n"

    async def sse():
        if chat:
            yield chunk("", first=True)
        try:
            async for piece in pieces:
                if piece:
                    yield chunk(piece)
        except ApiError as e:
            yield f"data: {json.dumps(e.body())}\n\n"
            return
        yield chunk(detok.end(), finish_reason())
        if (req.stream_options or {}).get("include_usage"):
            yield f"data: {json.dumps({**head, 'choices': [], 'usage': usage()})}\n\n"
        yield "data: [DONE]\n\n"

    return _Stream(sse(), release, media_type="text/event-stream")


class _Stream(StreamingResponse):
    """A StreamingResponse that gives back the request's place in the queue bound however it
    ends (also when the client left before the body started, so the generator never ran)."""

    def __init__(self, content, on_close, **kw):
        super().__init__(content, **kw)
        self.on_close = on_close

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


async def run_job(state, name: str, add: dict, detok: Detokenizer, request: Request,
                  poll: bool, release):
    """Submit one job to the decoding loop; yield each new piece of its reply's text (from
    `detok`). When the consumer stops early (a streaming client gone: the generator is
    cancelled) or, with `poll`, the client disconnects, the job is cancelled so its slot frees.
    Always gives back its place in the queue bound (`release`)."""
    events: asyncio.Queue = asyncio.Queue()
    job = Job(name, add, asyncio.get_running_loop(), events)
    done = False
    try:
        state.loop.submit(job)
        checked = time.monotonic()
        while True:
            try:
                kind, value = await asyncio.wait_for(events.get(), 0.5)
            except asyncio.TimeoutError:
                kind = None
            if poll and time.monotonic() - checked >= 0.5:     # is the client still there?
                checked = time.monotonic()
                if await request.is_disconnected():
                    return
            if kind is None:
                continue
            if kind == "token":
                yield detok.add(value)
            elif kind == "end":
                done = True
                return
            else:
                done = True
                raise ApiError(500, value, type="server_error")
    finally:
        if not done:
            state.loop.cancel(job)
        release()
