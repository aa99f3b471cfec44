"""The errors services raise. Every face maps them to its own form (SOAP fault, form error…).

Raising one aborts the transaction, so a refused operation changes nothing.
"""

from __future__ import annotations

from pyramid.i18n import TranslationString


class QrmError(Exception):
    """Base class: ``code`` is the API fault name, ``field`` the parameter concerned (if any).

    ``message`` is always the English text: the APIs promise it and integrations match on
    it. A message given as a ``TranslationString`` is also kept as ``translation``, for the
    faces that show it in the user's language."""

    code = "Server.Error"
    xmlrpc_code = 100

    def __init__(self, message: str | TranslationString, *, field: str | None = None) -> None:
        self.translation = message if isinstance(message, TranslationString) else None
        self.message = str(message if self.translation is None
                           else self.translation.interpolate())
        super().__init__(self.message)
        self.field = field


class AuthenticationFailed(QrmError):
    code = "Client.AuthenticationFailed"
    xmlrpc_code = 1


class AccountNotActive(AuthenticationFailed):
    """The right password for an account that is disabled (or not yet active). The message
    says so, for the event log and the faces that may tell; the APIs answer it as a wrong
    password, so that a caller learns nothing about an account it cannot use."""


class LoginThrottled(AuthenticationFailed):
    """Too many failed log-ins for this name: refused for a while, even with the right
    password."""


class PermissionDenied(QrmError):
    code = "Client.PermissionDenied"
    xmlrpc_code = 2


class NotFound(QrmError):
    code = "Client.NotFound"
    xmlrpc_code = 3


class ValidationError(QrmError):
    code = "Client.ValidationError"
    xmlrpc_code = 4


class LimitExceeded(QrmError):
    code = "Client.LimitExceeded"
    xmlrpc_code = 5


class InsufficientCredit(QrmError):
    code = "Client.InsufficientCredit"
    xmlrpc_code = 6


class InvalidState(QrmError):
    code = "Client.InvalidState"
    xmlrpc_code = 7


class CapacityError(QrmError):
    """A host or storage has no room left (raised by drivers; provisioning tries elsewhere)."""

    code = "Server.Error"


class DriverError(QrmError):
    """A storage or virtualization driver failed; the step is retried later."""

    code = "Server.Error"
