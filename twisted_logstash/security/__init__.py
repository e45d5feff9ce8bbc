"""TLS settings, contexts, handshake deadline, failure text, and the logstash-tls endpoint
strings.
"""
