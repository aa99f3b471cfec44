"""The spyne side: one service class and one Application per endpoint, built from
``soap.operations.OPERATIONS``, and the glue that runs it inside a Pyramid request.

Each endpoint gets its own ``ServiceBase`` subclass and its own fault classes: spyne moves a
service's (and a declared fault's) types into the namespace of the Application that
registers it, so sharing them between the two Applications breaks the second WSDL.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Callable
from typing import Any, ClassVar
from xml.sax.saxutils import quoteattr

from lxml import etree
from pyramid.response import Response
from spyne import Application, Fault, ServiceBase, Unicode, const, rpc
from spyne.protocol.soap import Soap11
from spyne.protocol.xml import SchemaValidationError
from spyne.server.wsgi import WsgiApplication

from engine.errors import QrmError
from soap.credentials import authenticate
from soap.errors import FAULT_CODES, SERVER_ERROR, describe, fault_parameter, retryable
from soap.i18n import int_range_message
from soap.operations import (
    OPERATIONS_BY_NAME,
    READ_ONLY_OPERATIONS,
    Operation,
    operations_for,
)
from soap.types import ARRAY_DOCS, TYPES_NS, spyne_type, to_wire
from soap.xmlsafety import refuse_dtd

NAMESPACES = {"cloudadmin": "urn:qrmcloud:cloudadmin", "clouduser": "urn:qrmcloud:clouduser"}
APPLICATION_NAMES = {"cloudadmin": "CloudAdmin", "clouduser": "CloudUser"}

#: where the Pyramid request travels through spyne (``ctx.transport.req_env``)
REQUEST_KEY = "qrm.pyramid_request"
#: a retryable error (deadlock, serialization failure) seen inside spyne
RETRYABLE_KEY = "qrm.retryable_error"
_PLACEHOLDER_ADDRESS = "http://soap-address.invalid/"
_ADDRESS_ATTRIBUTE = f'location="{_PLACEHOLDER_ADDRESS}"'.encode()

# spyne runs a full gc.collect() at the end of a call if the last was a second ago (for file
# uploads, which the API has none of): 0.1-0.4 s of a call on a large heap
const.MIN_GC_INTERVAL = float("inf")

_LXML_PREFIX_RE = re.compile(r"^<string>:\d+:\d+:\w+:\w+:\w+: ")
_ELEMENT_RE = re.compile(r"(?:Element )?'(?:\{[^}]*\})?([^']+)':? ")
_MISSING_RE = re.compile(r"Missing child element\(s\)\. Expected is \( (?:\{[^}]*\})?(\w+) \)")


SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"


class VersionMismatch(Fault):
    """SOAP 1.1's answer to an envelope in another namespace (a SOAP 1.2 envelope, say):
    the ``VersionMismatch`` fault (SOAP 1.1 §4.4.1)."""

    def __init__(self, root: str) -> None:
        namespace = root[1:].split("}", 1)[0]
        version = "a SOAP 1.2 envelope" if namespace == SOAP12_ENV else (
            f"an envelope in the namespace {namespace}")
        super().__init__(faultcode="VersionMismatch", faultstring=(
            f"this endpoint speaks SOAP 1.1 only and received {version}: send the Envelope "
            f"in the namespace {SOAP11_ENV} (the WSDL's SOAP 1.1 binding)"))


#: operations whose list of ids is written in one piece: spyne builds an element at a time
#: (~90 µs each, 9 s for 100,000 ids); the document is byte for byte the same
BULK_INT_RESULTS = frozenset({"CloudRequestGetList"})
BULK_KEY = "qrm.bulk_ints"
_FIRST_INT_RE = re.compile(rb"<((?:[\w.-]+:)?int)>(-?\d+)</\1>")


class SafeSoap11(Soap11):
    """SOAP 1.1 with schema validation whose parser never loads a DTD, resolves an entity
    or touches the network, and which refuses documents that carry a DTD at all."""

    def __init__(self) -> None:
        super().__init__(validator="lxml", resolve_entities=False, no_network=True,
                         load_dtd=False, dtd_validation=False, huge_tree=False)

    def create_in_document(self, ctx: Any, charset: str | None = None) -> None:
        chunks = list(ctx.in_string)
        document = b"".join(chunk if isinstance(chunk, bytes) else chunk.encode("utf-8")
                            for chunk in chunks)
        try:
            root = refuse_dtd(document)
        except QrmError as error:
            raise Fault(error.code, error.message) from None
        if root.endswith("}Envelope") and root != f"{{{SOAP11_ENV}}}Envelope":
            raise VersionMismatch(root) from None
        ctx.in_string = [document]
        super().create_in_document(ctx, charset)


XSD_NS = "http://www.w3.org/2001/XMLSchema"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"

#: the members of every fault's detail element (documented in the WSDL; the detail itself is
#: built by ``ApiFault``, ``exc``: spyne does not write them into the Fault element)
FAULT_DETAIL = [
    ("code", Unicode(min_occurs=1, nillable=False, exc=True,
                     doc="The faultcode, e.g. Client.NotFound.")),
    ("parameter", Unicode(min_occurs=0, nillable=False, exc=True,
                          doc="The parameter concerned, where there is one.")),
]


class ApiFault(Fault):
    """A contract fault whose ``<detail>`` carries the element its ``wsdl:fault`` declares
    (``<tns:NotFound><tns:code>Client.NotFound</tns:code><tns:parameter>request_id
    </tns:parameter></tns:NotFound>``), so that clients generated from the WSDL raise the
    declared fault type."""

    CODE_VALUE: ClassVar[str]

    def __init__(self, faultstring: str = "", parameter: str | None = None) -> None:
        super().__init__(faultcode=self.CODE_VALUE, faultstring=faultstring)
        self.parameter = parameter
        namespace = self.get_namespace()
        element = etree.Element(f"{{{namespace}}}{self.get_type_name()}",
                                nsmap={"tns": namespace})
        etree.SubElement(element, f"{{{namespace}}}code").text = self.CODE_VALUE
        if parameter:
            etree.SubElement(element, f"{{{namespace}}}parameter").text = parameter
        self.detail = element



class BulkSoap11(Soap11):
    """The responses: SOAP 1.1, the id lists of ``BULK_INT_RESULTS`` written in one piece."""

    def serialize(self, ctx: Any, message: Any) -> None:
        values = _bulk_ints(ctx) if message is self.RESPONSE else None
        if values is None:
            super().serialize(ctx, message)
            return
        # spyne writes the envelope around the first id; the others join it as text
        ctx.out_object = [values[:1]]
        try:
            super().serialize(ctx, message)
        finally:
            ctx.out_object = [values]
        ctx.transport.req_env[BULK_KEY] = values

    def create_out_string(self, ctx: Any, charset: str | None = None) -> None:
        super().create_out_string(ctx, charset)
        values = ctx.transport.req_env.pop(BULK_KEY, None)
        if not values:
            return
        document = b"".join(ctx.out_string)
        first = _FIRST_INT_RE.search(document)
        if first is None or int(first.group(2)) != values[0]:
            raise RuntimeError("the id list's first element cannot be found")
        opening, closing = b"<" + first.group(1) + b">", b"</" + first.group(1) + b">"
        ids = (closing + opening).decode().join(map(str, values)).encode()
        ctx.out_string = [document[:first.start()], opening, ids, closing,
                          document[first.end():]]


def _bulk_ints(ctx: Any) -> list[int] | None:
    """The result of a ``BULK_INT_RESULTS`` operation, if it has more than one id."""
    if ctx.out_error is not None or ctx.descriptor is None or \
            ctx.descriptor.name not in BULK_INT_RESULTS or not ctx.out_object:
        return None
    values = ctx.out_object[0]
    if not isinstance(values, list) or len(values) < 2 or type(values[0]) is not int:
        return None  # ids from the database: if the first is an int, all are
    return values


def _make_faults() -> dict[str, type[ApiFault]]:
    """One fault class per contract faultcode (fresh classes for each Application)."""
    faults = {}
    for code in FAULT_CODES:
        name = "ServerError" if code == SERVER_ERROR else code.split(".", 1)[1]
        faults[code] = type(name, (ApiFault,), {
            "__type_name__": name, "CODE_VALUE": code, "_type_info": FAULT_DETAIL,
            "__doc__": f"The detail of a {code} fault."})
    return faults


class ApiService(ServiceBase):
    """Base of the endpoint services: authenticates every call and turns errors into the
    contract's faults."""

    role: ClassVar[str]
    faults: ClassVar[dict[str, type[Fault]]]

    @classmethod
    def call_wrapper(cls, ctx: Any, args: Any = None) -> Any:
        request = ctx.transport.req_env[REQUEST_KEY]
        try:
            request.api_actor = authenticate(
                request, cls.role, ctx.in_header_doc,
                read_only=ctx.descriptor.name in READ_ONLY_OPERATIONS)
            result = super().call_wrapper(ctx, args)
            request.dbsession.flush()  # constraint errors surface here, as faults
            return result
        except Exception as error:
            if retryable(request, error):
                # spyne answers every exception with a fault; the view raises this one
                # again instead, so that pyramid_retry runs the call once more
                ctx.transport.req_env[RETRYABLE_KEY] = error
                raise cls.faults[SERVER_ERROR]("retrying") from None
            code, text = describe(error, face="SOAP")
            raise cls.faults[code](text, fault_parameter(error)) from None


def _method(operation: Operation, faults: dict[str, type[Fault]]) -> Callable[..., Any]:
    def method(ctx: Any, *args: Any) -> Any:
        request = ctx.transport.req_env[REQUEST_KEY]
        values = [_utc(value) for value in args]
        return to_wire(operation.returns, operation.call(request, request.api_actor, values))

    method.__name__ = operation.name
    method.__doc__ = operation.doc
    return rpc(*(spyne_type(param.kind, param.doc, nillable=param.nillable)
                 for param in operation.params),
               _args=tuple(param.name for param in operation.params),
               _returns=spyne_type(operation.returns, operation.returns_doc),
               _throws=list(faults.values()),
               _operation_name=operation.name)(method)


def _utc(value: Any) -> Any:
    # xs:dateTime without a zone is read as UTC: the contract's times are all UTC
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def build_application(role: str) -> Application:
    """The spyne Application of one endpoint (``cloudadmin`` or ``clouduser``)."""
    faults = _make_faults()
    members: dict[str, Any] = {"role": role, "faults": faults,
                               "__doc__": f"The {role} operations of QRM Cloud."}
    for operation in operations_for(role):
        members[operation.name] = _method(operation, faults)
    service = type(f"{APPLICATION_NAMES[role]}Service", (ApiService,), members)
    return Application([service], tns=NAMESPACES[role], name=APPLICATION_NAMES[role],
                       in_protocol=SafeSoap11(), out_protocol=BulkSoap11())


class _Server(WsgiApplication):
    """spyne's WSGI server, with every fault it produces itself (schema validation, unknown
    operation, syntax) mapped onto the contract's faults."""

    def __init__(self, app: Application, faults: dict[str, type[ApiFault]]) -> None:
        super().__init__(app)
        self.faults = faults

    def handle_error(self, p_ctx: Any, others: Any, error: Any, start_response: Any) -> Any:
        error = self.normalize(error)
        p_ctx.out_error = error
        return super().handle_error(p_ctx, others, error, start_response)

    def normalize(self, error: Any) -> Fault:
        code = getattr(error, "faultcode", "") or ""
        if isinstance(error, (*self.faults.values(), VersionMismatch)):
            return error
        text = error.faultstring if isinstance(error, Fault) else ""
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text or "")
        if isinstance(error, SchemaValidationError):
            return self.faults["Client.ValidationError"](*_schema_message(text))
        if code == "Client.ResourceNotFound":
            return self.faults["Client.NotFound"](f"no such operation at this endpoint: {text}")
        if code in FAULT_CODES:
            return self.faults[code](text)
        if code.startswith("Client"):
            return self.faults["Client.ValidationError"](text or "the request is not valid")
        _, text = describe(error if isinstance(error, BaseException) else RuntimeError(text),
                           face="SOAP")
        return self.faults[SERVER_ERROR](text)


def _schema_message(text: str) -> tuple[str, str | None]:
    # lxml says "<string>:1:0:ERROR:SCHEMASV:...: Element '{urn:...}memory_mb': 'abc' is not
    # a valid value of ..."; the sentence is led by the parameter's name instead.
    # Returns the sentence and the parameter it names.
    text = _LXML_PREFIX_RE.sub("", text.strip())
    match = _ELEMENT_RE.match(text)
    if match is None:
        return f"the request is not valid: {text}", None
    element, rest = match.group(1), text[match.end():]
    if "No matching global declaration" in text:
        return f"{element}: no such operation at this endpoint", None
    if "is not a valid value of the atomic type 'xs:int'" in rest:
        return str(int_range_message(element).interpolate()), element
    missing = _MISSING_RE.match(rest)
    if missing is not None:
        return (f"{missing.group(1)} is required (missing in {element})",
                missing.group(1))
    return f"{element}: {rest}", None if element in OPERATIONS_BY_NAME else element


def finish_wsdl(document: bytes) -> bytes:
    """spyne's WSDL made strict-tool friendly: the types' schema comes before the operations'
    schema that imports it (wsimport and xmllint resolve names in document order), and the
    array types carry their own documentation (spyne gives them the first use's)."""
    root = etree.fromstring(document)
    types = root.find(f"{{{WSDL_NS}}}types")
    schemas = types.findall(f"{{{XSD_NS}}}schema")
    shared = [schema for schema in schemas if schema.get("targetNamespace") == TYPES_NS]
    for schema in shared:
        types.remove(schema)
    for position, schema in enumerate(shared):
        types.insert(position, schema)
    for schema in shared:
        for name, text in ARRAY_DOCS.items():
            complex_type = schema.find(f"{{{XSD_NS}}}complexType[@name='{name}']")
            if complex_type is None:
                continue
            annotation = complex_type.find(f"{{{XSD_NS}}}annotation")
            if annotation is None:
                annotation = etree.Element(f"{{{XSD_NS}}}annotation")
                complex_type.insert(0, annotation)
            for child in list(annotation):
                annotation.remove(child)
            etree.SubElement(annotation, f"{{{XSD_NS}}}documentation").text = text
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


class SoapEndpoint:
    """One SOAP endpoint mounted in Pyramid: serves its WSDL and runs calls in the request's
    transaction (a fault dooms it, so a refused call changes nothing)."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.application = build_application(role)
        faults = self.application.services[0].faults
        self.server = _Server(self.application, faults)
        # spyne builds a WSDL once per Wsdl11 object (a second build loses the service
        # element), so it is built once with a placeholder address filled in per request
        wsdl11 = self.server.doc.wsdl11
        wsdl11.build_interface_document(_PLACEHOLDER_ADDRESS)
        self._wsdl: bytes = finish_wsdl(wsdl11.get_interface_document())
        if self._wsdl.count(_ADDRESS_ATTRIBUTE) != 1:
            raise RuntimeError("the WSDL's soap:address cannot be found")

    def wsdl(self, location: str) -> bytes:
        """The WSDL whose soap:address is ``location``."""
        return self._wsdl.replace(_ADDRESS_ATTRIBUTE,
                                  f"location={quoteattr(location)}".encode())

    def call(self, request: Any) -> Response:
        """Run one SOAP call through spyne and answer with its response."""
        body = request.body
        environ = dict(request.environ)
        environ.update({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
                        REQUEST_KEY: request})
        started: dict[str, Any] = {}

        def start_response(status: str, headers: list, exc_info: Any = None) -> None:
            started.update(status=status, headers=headers)

        chunks = self.server(environ, start_response)
        try:
            payload = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        if not started["status"].startswith("2"):
            request.tm.doom()
            if environ.get(RETRYABLE_KEY) is not None:
                raise environ[RETRYABLE_KEY]  # pyramid_retry runs the call again
        headers = [(name, value) for name, value in started["headers"]
                   if name.lower() != "content-length"]
        return Response(body=payload, status=started["status"], headerlist=headers)
