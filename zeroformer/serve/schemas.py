"""The OpenAI request bodies (pydantic), errors in OpenAI's JSON shape, and the text of a
stream of tokens.

An error is ``{"error": {"message", "type", "param", "code"}}`` with its HTTP status; a body that
does not fit the schema is a 400 naming the field (`param`).
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ApiError


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")   # fields we do not implement are ignored


class Sampling(_Body):
    """OpenAI's sampling fields, plus top_k, repetition_penalty and ignore_eos."""
    model: str
    max_tokens: Optional[int] = Field(None, ge=0)
    max_completion_tokens: Optional[int] = Field(None, ge=0)
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: Optional[int] = Field(None, ge=1)
    repetition_penalty: float = Field(1.0, gt=0.0)
    ignore_eos: bool = False
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = None
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: Optional[dict] = None
    logprobs: Union[bool, int, None] = None      # not implemented: refused when asked for
    echo: bool = False
    tools: Optional[list] = None
    response_format: Optional[dict] = None

    def unsupported(self) -> str | None:
        """The first field asked for that this server does not implement (a 400), or None."""
        if self.logprobs:
            return "logprobs"
        if self.echo:
            return "echo"
        if self.tools:
            return "tools"
        if self.response_format and self.response_format.get("type", "text") != "text":
            return "response_format"
        return None


class Completion(Sampling):
    prompt: Union[str, list[str], list[int]]


class Message(_Body):
    role: str
    content: Union[str, list[dict], None] = None


class Chat(Sampling):
    messages: list[Message] = Field(min_length=1)


class Embeddings(_Body):
    model: str
    input: Union[str, list[str]]
    encoding_format: Literal["float", "base64"] = "float"


def parse(schema, data):
    """data (parsed JSON) -> a `schema` instance, or ApiError 400 naming the first bad field.
    A field sent as null means its default (as OpenAI's API takes it)."""
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    try:
        return schema.model_validate({k: v for k, v in data.items() if v is not None})
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(x) for x in err["loc"]) or None
        raise ApiError(400, f"{param}: {err['msg']}", param=param) from None


def message_text(m: Message) -> str:
    """A message's content as text (a list of parts: their "text" joined)."""
    if m.content is None or isinstance(m.content, str):
        return m.content or ""
    parts = []
    for p in m.content:
        if p.get("type") != "text" or not isinstance(p.get("text"), str):
            raise ApiError(400, "only text content parts are supported", param="messages")
        parts.append(p["text"])
    return "".join(parts)
