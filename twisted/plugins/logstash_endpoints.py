"""``logstash-tls`` endpoint-string parsers, found by Twisted's plugin system.

With this dropin, ``serverFromString(reactor, "logstash-tls:...")`` and
``clientFromString(reactor, "logstash-tls:...")`` work in any Twisted program. The parsers
import the TLS machinery only when a string is parsed, so that scanning plugins stays cheap.
"""

from twisted_logstash.security.endpoints import LogstashTLSClientParser, LogstashTLSServerParser

logstashTLSServer = LogstashTLSServerParser()
logstashTLSClient = LogstashTLSClientParser()
