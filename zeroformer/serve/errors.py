"""An error a client caused, in OpenAI's JSON shape (no dependency: the server's state uses
it before fastapi is imported)."""

from __future__ import annotations


class ApiError(Exception):
    """An error a client caused (or a limit it hit): status + OpenAI's error object."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = (
            status, message, param, code, type)

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}
