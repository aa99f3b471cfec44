"""Refuse XML that carries a document type declaration, before any parser expands it.

Neither SOAP nor XML-RPC messages may contain a DTD, and a DTD is what entity expansion
attacks (billion laughs, external entities) need. expat reports the DOCTYPE when it starts,
before its internal subset is read, so nothing is expanded or fetched.
"""

from __future__ import annotations

from xml.parsers import expat

from engine.errors import ValidationError


class _DoctypeFound(Exception):
    pass


def _stop(*_args: object) -> None:
    raise _DoctypeFound


def refuse_dtd(document: bytes) -> str:
    """Raise ValidationError if ``document`` is not well-formed or has a DTD; return the
    root element's name as ``{namespace}local`` (``local`` without a namespace)."""
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _stop
    parser.EntityDeclHandler = _stop
    root: list[str] = []

    def start(name: str, _attributes: object) -> None:
        namespace, _, local = name.rpartition(" ")
        root.append(f"{{{namespace}}}{local}" if namespace else local)
        parser.StartElementHandler = None  # only the root is wanted

    parser.StartElementHandler = start
    try:
        parser.Parse(document, True)
    except _DoctypeFound:
        raise ValidationError("XML with a document type declaration (DTD) or entity "
                              "declarations is not accepted") from None
    except expat.ExpatError as error:
        raise ValidationError(f"the request is not well-formed XML: {error}") from None
    return root[0]
