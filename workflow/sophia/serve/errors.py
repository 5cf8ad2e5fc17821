"""What a request can fail with: each error carries its HTTP status (and OpenAI's error `code`), so
both APIs render it in their own error shape with the same message."""

from __future__ import annotations

from sophia.errors import SophiaError


class ServeError(SophiaError):
    """An HTTP error answer: `status`, OpenAI's `code`, extra response headers."""

    status = 500
    code: str | None = None

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


class RequestError(ServeError):
    """HTTP 400: a request the server cannot honour as asked; the message names the field."""

    status = 400


class ContextLengthExceeded(RequestError):
    """HTTP 400: the prompt does not fit the context (OpenAI's code for it, which clients look for)."""

    code = "context_length_exceeded"


class ModelNotFound(ServeError):
    """HTTP 404: the request names a model this server does not run."""

    status = 404
    code = "model_not_found"


class Forbidden(ServeError):
    """HTTP 403: a Host or Origin this server does not answer (DNS rebinding, cross-site pages)."""

    status = 403


class Unauthorized(ServeError):
    """HTTP 401: --api-key is set and the request lacks it."""

    status = 401
    code = "invalid_api_key"


class PayloadTooLarge(ServeError):
    """HTTP 413: the body is over --max-body; refused before it is read."""

    status = 413


class UnsupportedMediaType(ServeError):
    """HTTP 415: a POST whose body is not declared JSON (what a cross-site form or text/plain post sends)."""

    status = 415


class Superseded(ServeError):
    """HTTP 409: a newer fill-in-the-middle request of the same client replaced this queued one."""

    status = 409


class Busy(ServeError):
    """HTTP 503 with Retry-After: the queue is full, or the request waited past its deadline."""

    status = 503

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, {"Retry-After": str(retry_after_s)})


class GenerationFailed(ServeError):
    """HTTP 500 (or an error event mid-stream): llama.cpp failed while generating."""

    status = 500
