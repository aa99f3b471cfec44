"""The API faces' own messages (domain ``soap``, catalogs in ``soap/locale``).

The APIs answer in English whatever the caller's language (integrations match on the text);
the messages are translatable all the same, so that a face showing one to a person can say
it in German. soap/babel.cfg says how the catalogs are made.
"""

from __future__ import annotations

from pyramid.i18n import TranslationStringFactory

DOMAIN = "soap"
_ = TranslationStringFactory(DOMAIN)

#: the contract's int: 32 bits (XML-RPC's <int>, xs:int)
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def int_range_message(field: str) -> object:
    """``<field> must be a whole number from -2147483648 to 2147483647``, translatable."""
    return _("${field} must be a whole number from ${minimum} to ${maximum} (32 bits)",
             mapping={"field": field, "minimum": INT_MIN, "maximum": INT_MAX})
