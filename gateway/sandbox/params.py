"""Bot API request parameters, read the way Telegram's server reads them.

Parameters come from the query string and from the body, of a GET as of a POST:
`application/x-www-form-urlencoded`, `application/json` (an object) or `multipart/form-data`.
Form values are strings; clients such as aiogram JSON-encode everything that is not a string
(`true`, `42`, arrays, objects), so the typed getters decode such values where the method
expects them. A multipart part with a file name is an uploaded file, and a value
`attach://<name>` refers to the part called `<name>`.

Numbers are read like Telegram's `to_integer`: optional sign and leading digits, anything else
reads as 0 (so a garbage `message_id` is "not found" rather than a parse error).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from gateway.sandbox.replies import ApiError, bad_request

ATTACH_PREFIX = "attach://"
_LEADING_INT = re.compile(r"\s*([+-]?\d+)")


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart request."""

    filename: str
    content_type: str
    data: bytes


class Params:
    """The parameters of one Bot API call, by name."""

    def __init__(self, values: dict[str, Any], files: dict[str, UploadedFile] | None = None):
        self._values = values
        self._files = files or {}

    @classmethod
    async def from_request(cls, request: web.Request) -> Params:
        """Read the query string and the body; a malformed body is a 400 like Telegram's."""
        values: dict[str, Any] = dict(request.query)
        files: dict[str, UploadedFile] = {}
        # Telegram's HTTP reader reads the body of a GET like that of a POST (pyTelegramBotAPI
        # sends setWebhook's certificate as a GET with a multipart body).
        if request.body_exists:
            content_type = request.content_type
            if content_type == "application/json":
                values.update(await _json_body(request))
            elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await _form_body(request)
                for name, value in form.items():
                    if isinstance(value, str):
                        values[name] = value
                    else:
                        with value.file:
                            data = value.file.read()
                        files[name] = UploadedFile(value.filename, value.content_type, data)
        return cls(values, files)

    def names(self) -> list[str]:
        """Names of the plain (non-file) parameters."""
        return list(self._values)

    def present(self, name: str) -> bool:
        """Whether the parameter was sent, even empty."""
        return name in self._values or name in self._files

    def string(self, name: str) -> str:
        """The parameter as text; "" when absent. JSON scalars are rendered as text."""
        value = self._values.get(name)
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        return json.dumps(value, ensure_ascii=False)

    def integer(self, name: str, default: int = 0) -> int:
        """The parameter as an integer; `default` when absent or empty."""
        value = self._values.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value)
        match = _LEADING_INT.match(str(value))
        return int(match.group(1)) if match else 0

    def boolean(self, name: str) -> bool:
        """True for `true` (any case), `1` or a JSON true."""
        value = self._values.get(name)
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value != 0
        return isinstance(value, str) and value.strip().lower() in ("true", "1")

    def json(self, name: str, what: str) -> Any:
        """A JSON-valued parameter, decoded; None when absent or empty.

        `what` names it in the error, e.g. "reply keyboard markup" gives
        `Bad Request: can't parse reply keyboard markup JSON object`.
        """
        value = self._values.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            raise bad_request(f"can't parse {what} JSON object") from None

    def attached(self, value: str) -> UploadedFile | None:
        """The uploaded part an `attach://<part>` value names (None for anything else)."""
        if value.startswith(ATTACH_PREFIX):
            return self._files.get(value[len(ATTACH_PREFIX) :])
        return None

    def file(self, name: str) -> UploadedFile | None:
        """An uploaded file sent as part `name` or referenced by `name=attach://<part>`."""
        if name in self._files:
            return self._files[name]
        value = self._values.get(name)
        if isinstance(value, str) and value.startswith(ATTACH_PREFIX):
            return self._files.get(value[len(ATTACH_PREFIX) :])
        return None


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "Request Entity Too Large") from None
    except ValueError:
        raise bad_request("can't parse JSON encoded request") from None
    if not isinstance(body, dict):
        raise bad_request("can't parse JSON encoded request")
    return {str(key): value for key, value in body.items() if value is not None}


async def _form_body(request: web.Request) -> MultiDictProxy[Any]:
    # aiohttp's post() reads no form out of a GET; a POST view of the same request does.
    form_request = request if request.method == "POST" else request.clone(method="POST")
    try:
        return await form_request.post()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "Request Entity Too Large") from None
    except ValueError:
        raise bad_request("can't parse request body") from None
