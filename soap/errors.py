"""How service errors become API faults (the table in SOAP-API.md), for both faces."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from pyramid_retry import is_error_retryable, mark_error_retryable

from engine.db import is_deferred_write_conflict
from engine.errors import QrmError

log = logging.getLogger("qrm.api")

#: faultcode -> XML-RPC fault code, in the contract's order
FAULT_CODES: dict[str, int] = {
    "Client.AuthenticationFailed": 1,
    "Client.PermissionDenied": 2,
    "Client.NotFound": 3,
    "Client.ValidationError": 4,
    "Client.LimitExceeded": 5,
    "Client.InsufficientCredit": 6,
    "Client.InvalidState": 7,
    "Server.Error": 100,
}

SERVER_ERROR = "Server.Error"


def describe(error: BaseException, *, face: str) -> tuple[str, str]:
    """``(faultcode, faultstring)`` for ``error``. A service error speaks for itself; anything
    else is logged with a reference the reply quotes, and the reply carries no details."""
    if isinstance(error, QrmError) and error.code in FAULT_CODES and error.code != SERVER_ERROR:
        message = error.message
        if error.field and error.field not in message:
            message = f"{error.field}: {message}"  # the parameter concerned, for the caller
        return error.code, message
    reference = secrets.token_hex(6)
    log.error("%s call failed, reference %s", face, reference,
              exc_info=(type(error), error, error.__traceback__))
    return SERVER_ERROR, (f"internal error, reference {reference}: the operators find the "
                          "details in the server log under this reference")


def fault_parameter(error: BaseException) -> str | None:
    """The parameter a fault concerns (its detail names it), if the error names one."""
    if isinstance(error, QrmError) and error.code in FAULT_CODES and error.code != SERVER_ERROR:
        return error.field or None
    return None


def retryable(request: Any, error: BaseException) -> bool:
    """Whether pyramid_retry should run the whole call again (a deadlock or serialization
    failure the database reported, or SQLite refusing a write in a transaction begun for
    reading), instead of answering with a fault."""
    if request.tm.get().isRetryableError(error) or is_deferred_write_conflict(request, error):
        mark_error_retryable(error)
    return is_error_retryable(request, error)
