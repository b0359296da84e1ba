"""HTTP errors of the fallback server: every one is a JSON body ``{"code", "message"}``.

``HttpError`` is raised anywhere in request handling and turned into its response by the app's
exception handler; ``error_response`` builds the response directly.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

__all__ = ["HTTP_CODES", "HttpError", "error_response"]

HTTP_CODES: Mapping[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    431: "headers_too_large",
    500: "internal",
    502: "livekit_unavailable",
}
"""The default ``code`` for each status (400 may also carry ``unsupported_version``)."""


class HttpError(Exception):
    """An error answer: ``status``, a machine ``code``, a human ``message``, extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or HTTP_CODES.get(status, "error")
        self.message = message
        self.headers = dict(headers or {})
        self.request_id = request_id

    def response(self) -> JSONResponse:
        return error_response(
            self.status, self.code, self.message, headers=self.headers, request_id=self.request_id
        )


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    request_id: str | None = None,
) -> JSONResponse:
    body: dict[str, str] = {"code": code, "message": message[:1024]}
    if request_id is not None:
        body["id"] = request_id
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))
