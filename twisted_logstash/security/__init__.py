"""TLS by job: settings (frozen, parsed once), contexts, the handshake deadline, failure
text, and the endpoints built from the settings (with the logstash-tls endpoint strings).
"""
