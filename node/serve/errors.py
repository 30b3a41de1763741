"""Errors in OpenAI's shape, so the official SDK (and every client built for OpenAI) raises the
right exception with the right message: ``{"error": {"message", "type", "param", "code"}}`` with
the status code OpenAI uses for the same failure.

FastAPI answers a body that fails validation with 422 and its own shape; OpenAI answers 400
``invalid_request_error`` naming the parameter. `install` maps one to the other.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """What every failing route returns (documented in the OpenAPI schema)."""

    error: ErrorBody


class ApiError(Exception):
    """A failure to report to the client as it is: status, OpenAI error type, parameter, code."""

    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
        code: str | None = None, headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return ErrorResponse(
            error=ErrorBody(message=self.message, type=self.type, param=self.param, code=self.code)
        ).model_dump()


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def unsupported(param: str, why: str = "") -> ApiError:
    return ApiError(
        400, f"Unsupported parameter: '{param}' is not supported by this server{': ' + why if why else ''}.",
        param=param, code="unsupported_parameter",
    )  # fmt: skip


def model_not_found(model: str) -> ApiError:
    return ApiError(
        404, f"The model '{model}' does not exist or you do not have access to it. GET /v1/models lists the "
        "models this node serves.", param="model", code="model_not_found",
    )  # fmt: skip


def unauthorized(message: str) -> ApiError:
    return ApiError(
        401, message, type="invalid_request_error", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
    )


_STATUS_TYPES = {
    400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error", 404: "invalid_request_error",
    405: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
    429: "rate_limit_exceeded", 503: "server_error",
}  # fmt: skip


_TYPE_TAG = re.compile(r"^([a-z-]+\[.*\]|str|int|float|bool|dict|list|none|null|literal\[.*\])$")


def _param_of(loc: tuple[Any, ...]) -> str | None:
    """``("body", "messages", 0, "content")`` -> ``"messages[0].content"``; pydantic's union
    member tags (``"literal[1]"``, ``"list[...]"``) are not parameters and are left out."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    parts = [p for p in parts if not (isinstance(p, str) and _TYPE_TAG.match(p))]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or None


def install(app: FastAPI) -> None:
    """Registers the handlers that turn every failure into OpenAI's error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError) -> JSONResponse:
        errors = list(e.errors())
        first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
        param = _param_of(tuple(first.get("loc", ())))
        if first.get("type") == "extra_forbidden":
            err = unsupported(param or "?")
        elif first.get("type") == "json_invalid":
            err = bad_request("The request body is not valid JSON. Send a JSON object with Content-Type: "
                              "application/json.", code="invalid_json")  # fmt: skip
        else:
            detail = "; ".join(f"{_param_of(tuple(x.get('loc', ()))) or 'body'}: {x.get('msg')}" for x in errors[:5])
            err = bad_request(f"Invalid request: {detail}", param=param)
        return JSONResponse(err.body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        kind = _STATUS_TYPES.get(e.status_code, "server_error" if e.status_code >= 500 else "invalid_request_error")
        message = e.detail if isinstance(e.detail, str) else str(e.detail)
        if e.status_code == 404 and message == "Not Found":
            message = "Unknown route. The API lives under /v1 (GET /v1/models, POST /v1/chat/completions)."
        body = ApiError(e.status_code, message, type=kind).body()
        return JSONResponse(body, status_code=e.status_code, headers=getattr(e, "headers", None))
