"""The SOAP face of the service: a thin Spyne adapter over ``Conversation``.

Wire names, types and ``minOccurs`` follow Intuit's QBWebConnectorSvc WSDL
exactly (QBWC-PROTOCOL.md §1): the Web Connector is a compiled .NET client
that only cares about element names and the namespace. Each operation here
does nothing but hand its parameters to the conversation core.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from lxml import etree
import spyne.const
from spyne import Application, Fault, Integer32, ServiceBase, Unicode, rpc
from spyne.model.complex import Array
from spyne.protocol.soap import Soap11

if TYPE_CHECKING:
    from .conversation import Conversation

# Spyne runs a full gc.collect() after a call whenever a second has passed,
# to release file descriptors of uploads we never create. On a heap holding
# SQLAlchemy and lxml that costs more CPU than answering the calls; Python's
# own collector is enough.
spyne.const.MIN_GC_INTERVAL = float("inf")

from .envelopes import INTERNAL_ERROR, NAMESPACE, Call, perform

log = logging.getLogger(__name__)

SERVICE_NAME = "QBWebConnectorSvc"
PORT_NAME = "QBWebConnectorSvcSoap"

#: xs:string, minOccurs 0 — the type of almost every QBWC parameter. Nillable
#: so that an empty element (``<strHCPResponse />``) reads as None, not as a
#: validation error; build_wsdl drops the attribute to match Intuit's WSDL.
String = Unicode(min_occurs=0, nillable=True)
#: xs:int, minOccurs 1 — qbXMLMajorVers/qbXMLMinorVers and receiveResponseXML's result.
Int = Integer32(min_occurs=1, nillable=False)
ArrayOfString = Array(Unicode(min_occurs=0, nillable=True), type_name="ArrayOfString")


def _perform(ctx: Any, **params: Any) -> Any:
    """Hand the call to the conversation through the table the direct path uses too."""
    environ = getattr(ctx.transport, "req_env", None) or {}
    address = environ.get("qwc.client_address") or environ.get("REMOTE_ADDR", "")
    call = Call(ctx.descriptor.name, params)
    return perform(ctx.app.conversation, call, address)


class QBWebConnectorSvc(ServiceBase):
    """The eleven operations of Intuit's QBWebConnectorSvc (parameters: ``envelopes.OPERATIONS``)."""

    @rpc(_returns=String)
    def serverVersion(ctx):  # noqa: N802,N805
        return _perform(ctx)

    @rpc(String.customize(sub_name="strVersion"), _returns=String)
    def clientVersion(ctx, strVersion):  # noqa: N802,N805,N803
        return _perform(ctx, strVersion=strVersion)

    @rpc(String, String, _returns=ArrayOfString)
    def authenticate(ctx, strUserName, strPassword):  # noqa: N802,N805,N803
        return _perform(ctx, strUserName=strUserName, strPassword=strPassword)

    @rpc(String, String, String, String, Int, Int, _returns=String)
    def sendRequestXML(  # noqa: N802,N805
        ctx, ticket, strHCPResponse, strCompanyFileName, qbXMLCountry, qbXMLMajorVers, qbXMLMinorVers  # noqa: N803
    ):
        return _perform(ctx, ticket=ticket, strHCPResponse=strHCPResponse, strCompanyFileName=strCompanyFileName,
                        qbXMLCountry=qbXMLCountry, qbXMLMajorVers=qbXMLMajorVers, qbXMLMinorVers=qbXMLMinorVers)

    @rpc(String, String, String, String, _returns=Int)
    def receiveResponseXML(ctx, ticket, response, hresult, message):  # noqa: N802,N805
        return _perform(ctx, ticket=ticket, response=response, hresult=hresult, message=message)

    @rpc(String, String, String, _returns=String)
    def connectionError(ctx, ticket, hresult, message):  # noqa: N802,N805
        return _perform(ctx, ticket=ticket, hresult=hresult, message=message)

    @rpc(String, _returns=String)
    def getLastError(ctx, ticket):  # noqa: N802,N805
        return _perform(ctx, ticket=ticket)

    @rpc(String, _returns=String)
    def closeConnection(ctx, ticket):  # noqa: N802,N805
        return _perform(ctx, ticket=ticket)

    @rpc(String, String, _returns=String)
    def getInteractiveURL(ctx, wcTicket, sessionID):  # noqa: N802,N805,N803
        return _perform(ctx, wcTicket=wcTicket, sessionID=sessionID)

    @rpc(String, _returns=String)
    def interactiveDone(ctx, wcTicket):  # noqa: N802,N805,N803
        return _perform(ctx, wcTicket=wcTicket)

    @rpc(String, String, _returns=String)
    def interactiveRejected(ctx, wcTicket, reason):  # noqa: N802,N805
        return _perform(ctx, wcTicket=wcTicket, reason=reason)


class HardenedSoap11(Soap11):
    """Soap11 with our own parser: DTDs refused, huge text allowed, bodies never logged.

    Spyne's stock parse logs the whole request body on a syntax error and lets
    a DTD through; a QuickBooks answer can be 100 MB, so ``huge_tree`` is on.
    """

    _parsers = threading.local()  # lxml parsers may not be shared between threads

    def create_in_document(self, ctx: Any, charset: str | None = None) -> None:
        body = b"".join(ctx.in_string)
        parser = getattr(self._parsers, "parser", None)
        if parser is None:
            parser = self._parsers.parser = etree.XMLParser(
                resolve_entities=False,
                no_network=True,
                load_dtd=False,
                huge_tree=True,
                remove_comments=True,
                remove_pis=True,
                strip_cdata=True,
            )
        try:
            root = etree.fromstring(body, parser) if body else None
        except etree.XMLSyntaxError as exc:
            line, column = exc.position if exc.position else (0, 0)
            raise Fault("Client.XMLSyntaxError", f"The request is not well-formed XML (line {line}, column {column}).")
        if root is None:
            raise Fault("Client.EmptyRequest", "The request body is empty.")
        docinfo = root.getroottree().docinfo
        if docinfo.internalDTD is not None or docinfo.doctype:
            raise Fault("Client.DTDForbidden", "DTDs and entity declarations are not allowed.")
        ctx.in_document = (root, {})  # spyne expects (root, xml ids)
        ctx.in_string = [body]


class _Application(Application):  # type: ignore[misc]
    """Spyne's Application, with our own handling of unexpected errors.

    Spyne would log them through its own loggers (which we silence, because
    they also log request documents); we log the traceback here and give the
    client a fault that reveals nothing.
    """

    def call_wrapper(self, ctx: Any) -> Any:
        try:
            return super().call_wrapper(ctx)
        except Fault:
            raise
        except Exception:
            log.exception("error answering %s", getattr(ctx, "method_request_string", "?"))
            raise Fault("Server", INTERNAL_ERROR) from None


def make_application(conversation: "Conversation") -> Application:
    application = _Application(
        [QBWebConnectorSvc],
        tns=NAMESPACE,
        name=SERVICE_NAME,
        in_protocol=HardenedSoap11(validator="soft"),
        out_protocol=Soap11(),
    )
    application.conversation = conversation  # type: ignore[attr-defined]
    return application



def build_wsdl(application: Application, url: str) -> bytes:
    """Spyne's WSDL, renamed to match Intuit's (port type, binding, soapActions).

    QBWC never reads it, but SOAP tooling (zeep, SoapUI) and people comparing
    us with Intuit's sample service do.
    """
    from spyne.interface.wsdl import Wsdl11

    wsdl = Wsdl11(application.interface)
    wsdl.build_interface_document(url)
    root = etree.fromstring(wsdl.get_interface_document())
    ns = {
        "wsdl": "http://schemas.xmlsoap.org/wsdl/",
        "soap": "http://schemas.xmlsoap.org/wsdl/soap/",
    }
    for port_type in root.iterfind("wsdl:portType", ns):
        port_type.set("name", PORT_NAME)
    for binding in root.iterfind("wsdl:binding", ns):
        binding.set("name", PORT_NAME)
        binding.set("type", f"tns:{PORT_NAME}")
        for soap_binding in binding.iterfind("soap:binding", ns):
            soap_binding.set("transport", "http://schemas.xmlsoap.org/soap/http")
        for operation in binding.iterfind("wsdl:operation", ns):
            for soap_operation in operation.iterfind("soap:operation", ns):
                soap_operation.set("soapAction", NAMESPACE + operation.get("name", ""))
    xs = "{http://www.w3.org/2001/XMLSchema}"
    for element in root.iter(f"{xs}element"):
        if element.get("name") != "string":  # Intuit's ArrayOfString alone is nillable
            element.attrib.pop("nillable", None)
    for port in root.iterfind("wsdl:service/wsdl:port", ns):
        port.set("name", PORT_NAME)
        port.set("binding", f"tns:{PORT_NAME}")
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def fault_envelope(code: str, message: str) -> bytes:
    """A SOAP 1.1 fault for errors caught before Spyne runs (size, method, crashes)."""
    env = "http://schemas.xmlsoap.org/soap/envelope/"
    envelope = etree.Element(f"{{{env}}}Envelope", nsmap={"soap": env})
    body = etree.SubElement(envelope, f"{{{env}}}Body")
    fault = etree.SubElement(body, f"{{{env}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"soap:{code}"
    etree.SubElement(fault, "faultstring").text = message
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
