"""One sans-IO HTTP/1.1 codec for both sides of the native wire, shaped like h11.

Bytes in, events out; nothing here touches a socket or a clock. By job:

- ``lines``: the line rule (CRLF only, length limits however a CRLF is cut) and field syntax;
- ``framing``: ``Content-Length`` / chunked / neither, and the smuggling refusals;
- ``connection``: keep-alive, close and ``100-continue`` decisions;
- ``heads``: the request and response head readers (:class:`RequestHead`, :class:`ResponseHead`);
- ``readers``: the incremental readers, one body reader for both sides (:class:`RequestParser`
  for the input, :class:`ResponseReader` under the transmitter's :class:`ResponseParser`);
- ``response``: one :class:`Response` gathered for the transmitter;
- ``writers``: the request the transmitter sends (:class:`RequestEncoder`) and the input's
  answers (``200 ok``, ``100 Continue``, :func:`error_response`);
- ``errors``: :class:`RequestError` and :class:`ResponseError`, one :class:`ProtocolError`.

The same rules hold on both sides, so a peer meets the same strictness whichever way it talks.
"""

from twisted_logstash.wires.native.http.connection import (
    connection_header,
    expects_continue,
    keep_alive,
    wants_continue,
)
from twisted_logstash.wires.native.http.errors import (
    IncompleteResponse,
    ProtocolError,
    RequestError,
    ResponseError,
)
from twisted_logstash.wires.native.http.heads import RequestHead, ResponseHead
from twisted_logstash.wires.native.http.readers import (
    END,
    MAX_CHUNK_LINE,
    MAX_HEAD,
    NEED_DATA,
    MessageReader,
    RequestParser,
    ResponseReader,
)
from twisted_logstash.wires.native.http.response import KEEP_BODY, Response, ResponseParser
from twisted_logstash.wires.native.http.writers import (
    CONTENT_TYPE,
    CONTINUE,
    OK,
    OK_CLOSE,
    OK_KEEP_ALIVE,
    RequestEncoder,
    basic_authorization,
    error_response,
    ok_response,
)

__all__ = [
    "CONTENT_TYPE",
    "CONTINUE",
    "END",
    "KEEP_BODY",
    "MAX_CHUNK_LINE",
    "MAX_HEAD",
    "NEED_DATA",
    "OK",
    "OK_CLOSE",
    "OK_KEEP_ALIVE",
    "IncompleteResponse",
    "MessageReader",
    "ProtocolError",
    "RequestEncoder",
    "RequestError",
    "RequestHead",
    "RequestParser",
    "Response",
    "ResponseError",
    "ResponseHead",
    "ResponseParser",
    "ResponseReader",
    "basic_authorization",
    "connection_header",
    "error_response",
    "expects_continue",
    "keep_alive",
    "ok_response",
    "wants_continue",
]
