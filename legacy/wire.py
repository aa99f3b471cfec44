"""openQRM's rpc/encoded SOAP on the wire, written with lxml.

spyne, which the modern SOAP face uses, has no rpc/encoded binding and no SOAP 1.2 server:
it writes document/literal envelopes, so its replies carry neither the ``xsi:type`` of
every value nor SOAP-ENC arrays nor Apache maps, and PHP's SoapClient decodes the legacy
answers (declared ``xsd:string`` in openQRM's WSDL, but arrays and maps in fact) only
from those ``xsi:type`` attributes. This module therefore reads and writes the envelopes
itself: SOAP 1.1 (``text/xml``) and SOAP 1.2 (``application/soap+xml``), answered in the
version they came in.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any
from xml.parsers import expat

from lxml import etree

from engine.i18n import _

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
SOAP11_ENC = "http://schemas.xmlsoap.org/soap/encoding/"
SOAP12_ENC = "http://www.w3.org/2003/05/soap-encoding"
SOAP12_RPC = "http://www.w3.org/2003/05/soap-rpc"
XSD = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
APACHE = "http://xml.apache.org/xml-soap"
#: the namespace of openQRM's cloud WSDLs and operations
NAMESPACE = "urn:localhost-cloud"

#: the most a call's envelope may weigh (a 31-field string is a few hundred bytes)
MAX_BODY = 64 * 1024

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          dtd_validation=False, huge_tree=False, remove_comments=True)


class EnvelopeError(Exception):
    """An envelope that cannot be read: answered with a SOAP fault (``code``: ``Client``,
    ``Server`` or ``VersionMismatch``), the message in English, translatable."""

    def __init__(self, message: Any, *, code: str = "Client") -> None:
        self.translation = message
        self.message = str(message.interpolate() if hasattr(message, "interpolate")
                           else message)
        super().__init__(self.message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class Call:
    """One decoded call: the SOAP version (``"1.1"``/``"1.2"``), the operation's name and
    namespace, and the one string it carries."""

    version: str
    operation: str
    namespace: str | None
    symbol: str


def _refuse_dtd(document: bytes) -> None:
    # A DTD is what entity expansion attacks need, and no SOAP message may carry one: expat
    # reports the DOCTYPE before reading its internal subset, so nothing is expanded.
    def stop(*_args: object) -> None:
        raise EnvelopeError(_("XML with a document type declaration (DTD) or entity "
                              "declarations is not accepted"))

    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = stop
    parser.EntityDeclHandler = stop
    try:
        parser.Parse(document, True)
    except expat.ExpatError as error:
        raise EnvelopeError(_("the request is not well-formed XML: ${error}",
                              mapping={"error": str(error)})) from None


def parse_call(document: bytes) -> Call:
    """The call in a SOAP 1.1 or 1.2 envelope, or EnvelopeError."""
    if len(document) > MAX_BODY:
        raise EnvelopeError(_("the request is larger than ${size} bytes",
                              mapping={"size": MAX_BODY}))
    _refuse_dtd(document)
    try:
        envelope = etree.fromstring(document, _PARSER)
    except etree.XMLSyntaxError as error:
        raise EnvelopeError(_("the request is not well-formed XML: ${error}",
                              mapping={"error": str(error)})) from None
    namespace = etree.QName(envelope).namespace
    if etree.QName(envelope).localname != "Envelope" or namespace not in (SOAP11_ENV,
                                                                           SOAP12_ENV):
        raise EnvelopeError(_("the request is not a SOAP 1.1 or SOAP 1.2 envelope"),
                            code="VersionMismatch")
    version = "1.1" if namespace == SOAP11_ENV else "1.2"
    bodies = [child for child in envelope if child.tag == f"{{{namespace}}}Body"]
    elements = [child for child in bodies[0] if isinstance(child.tag, str)] if bodies else []
    if len(bodies) != 1 or len(elements) != 1:
        raise EnvelopeError(_("the SOAP body must hold exactly one operation element"))
    operation = elements[0]
    parts = [child for child in operation if isinstance(child.tag, str)]
    if len(parts) != 1:
        raise EnvelopeError(_("${operation} takes exactly one string part (the "
                              "comma-separated fields)",
                              mapping={"operation": etree.QName(operation).localname}))
    part = parts[0]
    if len(part) or part.get(f"{{{XSI}}}nil") in ("true", "1"):
        raise EnvelopeError(_("the part of ${operation} must be a string",
                              mapping={"operation": etree.QName(operation).localname}))
    declared = part.get(f"{{{XSI}}}type")
    if declared is not None:
        prefix, _colon, local = declared.rpartition(":")
        if local != "string" or part.nsmap.get(prefix or None) != XSD:
            raise EnvelopeError(_("the part of ${operation} must be an xsd:string, not "
                                  "${type}", mapping={"operation":
                                                      etree.QName(operation).localname,
                                                      "type": declared}))
    name = etree.QName(operation)
    return Call(version=version, operation=name.localname, namespace=name.namespace,
                symbol=part.text or "")


# -- answers ----------------------------------------------------------------------------------
def _envelope(version: str) -> tuple[Any, Any, str]:
    env = SOAP11_ENV if version == "1.1" else SOAP12_ENV
    enc = SOAP11_ENC if version == "1.1" else SOAP12_ENC
    nsmap = {"env": env, "ns1": NAMESPACE, "xsd": XSD, "xsi": XSI, "enc": enc,
             "ns2": APACHE}
    if version == "1.2":
        nsmap["rpc"] = SOAP12_RPC
    envelope = etree.Element(f"{{{env}}}Envelope", nsmap=nsmap)
    body = etree.SubElement(envelope, f"{{{env}}}Body")
    return envelope, body, enc


def _scalar_type(value: Any) -> tuple[str, str]:
    if isinstance(value, bool):
        return "xsd:boolean", "true" if value else "false"
    if isinstance(value, int):
        return ("xsd:int" if -2**31 <= value < 2**31 else "xsd:long"), str(value)
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return _scalar_type(int(value))
        return "xsd:decimal", format(value.normalize(), "f")
    return "xsd:string", str(value)


def _encode(element: Any, value: Any, enc: str, version: str) -> None:
    """Write ``value`` into ``element`` as PHP's SoapServer does: scalars with their
    xsi:type, lists as SOAP-ENC arrays of ``item``, dicts as Apache maps."""
    if value is None:
        element.set(f"{{{XSI}}}nil", "true")
    elif isinstance(value, dict):
        element.set(f"{{{XSI}}}type", "ns2:Map")
        for key, item in value.items():
            entry = etree.SubElement(element, "item")
            key_element = etree.SubElement(entry, "key")
            _encode(key_element, key, enc, version)
            _encode(etree.SubElement(entry, "value"), item, enc, version)
    elif isinstance(value, list | tuple):
        types = {_scalar_type(item)[0] for item in value if not isinstance(item, dict)}
        maps = any(isinstance(item, dict) for item in value)
        item_type = "ns2:Map" if maps and not types else (
            types.pop() if len(types) == 1 and not maps else "xsd:anyType")
        element.set(f"{{{XSI}}}type", "enc:Array")
        if version == "1.1":
            element.set(f"{{{enc}}}arrayType", f"{item_type}[{len(value)}]")
        else:
            element.set(f"{{{enc}}}itemType", item_type)
            element.set(f"{{{enc}}}arraySize", str(len(value)))
        for item in value:
            _encode(etree.SubElement(element, "item"), item, enc, version)
    else:
        xsi_type, text = _scalar_type(value)
        element.set(f"{{{XSI}}}type", xsi_type)
        element.text = text


def result_document(version: str, operation: str, value: Any) -> bytes:
    """The answer of ``operation``: its ``Result`` part holding ``value``."""
    envelope, body, enc = _envelope(version)
    response = etree.SubElement(body, f"{{{NAMESPACE}}}{operation}Response")
    env = etree.QName(envelope).namespace
    response.set(f"{{{env}}}encodingStyle", enc)
    if version == "1.2":
        etree.SubElement(response, f"{{{SOAP12_RPC}}}result").text = "Result"
    _encode(etree.SubElement(response, "Result"), value, enc, version)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


#: SOAP 1.1 fault codes -> SOAP 1.2 ones
_CODES_12 = {"Client": "Sender", "Server": "Receiver", "VersionMismatch": "VersionMismatch"}


def fault_document(version: str, code: str, message: str) -> bytes:
    """A fault: ``code`` is ``Client``, ``Server`` or ``VersionMismatch`` (SOAP 1.1 names;
    SOAP 1.2 gets ``Sender``/``Receiver``)."""
    envelope, body, _enc = _envelope(version)
    env = etree.QName(envelope).namespace
    fault = etree.SubElement(body, f"{{{env}}}Fault")
    if version == "1.1":
        etree.SubElement(fault, "faultcode").text = f"env:{code}"
        etree.SubElement(fault, "faultstring").text = message
    else:
        value = etree.SubElement(etree.SubElement(fault, f"{{{env}}}Code"), f"{{{env}}}Value")
        value.text = f"env:{_CODES_12[code]}"
        text = etree.SubElement(etree.SubElement(fault, f"{{{env}}}Reason"), f"{{{env}}}Text")
        text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        text.text = message
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def content_type(version: str) -> str:
    return "text/xml" if version == "1.1" else "application/soap+xml"
