"""Errors the project raises, one family per kind of trouble."""


class ConfigurationError(ValueError):
    """A setting, or a combination of settings, that cannot work.

    Raised before anything binds; the message is shown to the user as is.
    """


class CodecError(ValueError):
    """Bytes that a codec cannot decode."""


class DecompressionError(CodecError):
    """A body or frame that does not decompress."""


class TooLargeError(CodecError):
    """Input (or its inflated form) over a configured limit."""


class SinkUnavailable(Exception):
    """A sink that cannot take events now but may later (a relay whose output is stopping).

    The receiver asks the sender to retry without counting it as a fault: ``503`` on the native
    wire (any other sink failure is a ``500``), no ACK and a close on the framed wire.
    """


class DeliveryError(Exception):
    """One attempt to deliver a batch to one host failed."""

    def __init__(self, reason: str, host=None, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.host = host
        self.status = status


class RetriableError(DeliveryError):
    """The batch may succeed later or elsewhere (429, 5xx, network)."""


class TerminalError(DeliveryError):
    """The receiver refused the batch for good (400, 401, 413, ...)."""


class DeadLettered(Exception):
    """Events were not delivered: they were written to the dead-letter file."""
