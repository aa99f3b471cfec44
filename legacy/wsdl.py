"""openQRM's published WSDLs (``cloudadmin.wdsl``, ``clouduser.wdsl``): rpc/encoded, one
``xsd:string`` part per message, namespace ``urn:localhost-cloud``, soapAction
``urn:localhost-cloud#<Operation>``; only the address is this server's."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from legacy.operations import operations_for
from legacy.wire import NAMESPACE, SOAP11_ENC

_HEAD = f"""<?xml version='1.0' encoding='UTF-8'?>
<definitions name='Cloud' targetNamespace='{NAMESPACE}' xmlns:tns='{NAMESPACE}'
  xmlns:soap='http://schemas.xmlsoap.org/wsdl/soap/'
  xmlns:xsd='http://www.w3.org/2001/XMLSchema'
  xmlns:soapenc='{SOAP11_ENC}'
  xmlns:wsdl='http://schemas.xmlsoap.org/wsdl/'
  xmlns='http://schemas.xmlsoap.org/wsdl/'>
"""


def build_wsdl(endpoint: str, location: str) -> bytes:
    """The WSDL of ``endpoint`` (``cloudadmin``: 31 operations, ``clouduser``: 23) with
    ``location`` as its service address."""
    operations = operations_for(endpoint)
    lines = [_HEAD]
    for op in operations:
        lines.append(f"<message name='{op.name}Request'>"
                     f"<part name='{op.part}' type='xsd:string'/></message>\n"
                     f"<message name='{op.name}Response'>"
                     "<part name='Result' type='xsd:string'/></message>\n")
    lines.append("<portType name='CloudPortType'>\n")
    for op in operations:
        lines.append(f"  <operation name='{op.name}'><input message='tns:{op.name}Request'/>"
                     f"<output message='tns:{op.name}Response'/></operation>\n")
    lines.append("</portType>\n<binding name='CloudBinding' type='tns:CloudPortType'>\n"
                 "  <soap:binding style='rpc' transport='http://schemas.xmlsoap.org/soap/http'/>\n")
    body = (f"<soap:body use='encoded' namespace='{NAMESPACE}' "
            f"encodingStyle='{SOAP11_ENC}'/>")
    for op in operations:
        lines.append(f"  <operation name='{op.name}'>"
                     f"<soap:operation soapAction='{NAMESPACE}#{op.name}'/>"
                     f"<input>{body}</input><output>{body}</output></operation>\n")
    lines.append("</binding>\n<service name='CloudService'>\n"
                 "  <port name='CloudPort' binding='tns:CloudBinding'>"
                 f"<soap:address location={quoteattr(location)}/></port>\n"
                 "</service>\n</definitions>\n")
    return "".join(lines).encode("utf-8")
