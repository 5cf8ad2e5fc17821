"""The HTTP service: one GGUF model behind Ollama's API (/api/*) and OpenAI's (/v1/*).

Requests pass the guard first (Host, Origin, API key, content type; `guard.py`), then the routes.
Errors are answered in each API's own error shape (Ollama: {"error": "..."}; OpenAI: {"error":
{"message", "type", "param", "code"}}), so clients raise their usual exceptions with our message.
Streams stop generating as soon as the client goes away; shutting down ends every job at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.middleware.cors import CORSMiddleware

from sophia.serve import ollama_api, openai_api
from sophia.serve.errors import ServeError
from sophia.serve.guard import Guard
from sophia.serve.shared import Served, error_response


def create_app(served: Served, *, loopback: bool = True, origins: Sequence[str] = (),
               api_key: str | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        served.engine.cancel_all()  # a SIGTERM must not wait for answers nobody will read

    app = FastAPI(title="sophia serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.served = served

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return error_response(request.url.path, exc)

    @app.get("/")
    @app.head("/")
    async def root() -> Response:  # what Ollama answers; some editors probe it
        return Response("Ollama is running", media_type="text/plain")

    ollama_api.add_routes(app, served)
    openai_api.add_routes(app, served)
    exact = [o for o in origins if "*" not in o]
    # the guard has refused every other origin already; CORS answers the allowed ones' preflights
    app.add_middleware(CORSMiddleware, allow_origins=exact, allow_origin_regex=_wildcards(origins),
                       allow_methods=["GET", "HEAD", "POST", "OPTIONS"], allow_headers=["*"], max_age=600)
    app.add_middleware(Guard, loopback=loopback, origins=origins, api_key=api_key)
    return app


def _wildcards(origins: Sequence[str]) -> str | None:
    import fnmatch

    patterns = [fnmatch.translate(o) for o in origins if "*" in o]
    return "|".join(f"(?:{p})" for p in patterns) or None
