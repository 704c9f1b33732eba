"""HTTP plumbing shared by the routes: JSON errors, and reading a JSON body safely."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway import constants as c
from gateway.errors import InputError, StorageError

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(
    status: int, code: str, message: str, field: str | None = None, **extra: Any
) -> web.Response:
    """The one error shape: `{"error": {"code", "message", "field"?}}`."""
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return web.json_response({"error": error, **extra}, status=status)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as JSON: input errors, aiohttp's own HTTP errors, and bugs (500)."""
    try:
        return await handler(request)
    except InputError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.field)
        response.headers.update(exc.headers)
        return response
    except StorageError as exc:  # logged once when the trouble starts, not per request
        logger.debug("%s %s: %s", request.method, request.path, exc)
        return storage_unavailable(exc.reason)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _STATUS_CODES.get(exc.status, "http_error")
        response = error_response(exc.status, code, exc.reason)
        for name in ("Allow", "Retry-After", "WWW-Authenticate"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error; see the gateway's log")


def storage_unavailable(reason: str) -> web.Response:
    """503: the disk failed us; the client may retry, safely with an idempotency key."""
    message = (
        f"the gateway's storage is unavailable ({reason}): the command may not be stored; "
        "retry later (with an idempotency key the retry cannot queue it twice)"
    )
    response = error_response(503, "storage_unavailable", message)
    response.headers["Retry-After"] = str(c.STORAGE_RETRY_AFTER_SECONDS)
    return response


async def read_json_object(request: web.Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object, or an InputError saying exactly what is wrong."""
    # The header as clients send it, checked first: parsing it costs more than the check.
    raw_type = request.headers.get("Content-Type")
    if raw_type != "application/json" and request.content_type != "application/json":
        raise InputError(
            "the body must be JSON (Content-Type: application/json)",
            code="unsupported_media_type",
            status=415,
        )
    if request.content_length is not None and request.content_length > limit:
        raise InputError(f"the body is over {limit} bytes", code="body_too_large", status=413)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise InputError(
            f"the body is over {limit} bytes", code="body_too_large", status=413
        ) from None
    try:
        data = _parse_json(raw)
    except UnicodeDecodeError:
        raise InputError("the body is not valid UTF-8", code="invalid_json") from None
    except RecursionError:
        raise InputError("the JSON is nested too deeply", code="invalid_json") from None
    except ValueError as exc:
        raise InputError(f"the body is not valid JSON ({exc})", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InputError("the body must be a JSON object", code="invalid_json")
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


#: One decoder for every body (`json.loads` with an option builds a new one per call).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _parse_json(raw: bytes) -> Any:
    """JSON text → value; NaN and Infinity refused. A body that starts like an object is
    UTF-8 (a BOM or UTF-16/32 would not start with `{`); the rest go the general way."""
    if raw[:1] == b"{":
        return _DECODER.decode(raw.decode("utf-8", "surrogatepass"))  # as json.loads does
    return json.loads(raw, parse_constant=_reject_constant)
