"""Logstash-to-Logstash communication on Twisted.

``logstash_input(...)`` and ``logstash_output(...)`` (see ``twisted_logstash.services``) give the
services the ``twistd logstash-input``/``logstash-output`` programs run, from Logstash's setting
names. They are imported on first use, so that ``import twisted_logstash.codecs.ndjson`` stays
cheap.
"""

__version__ = "0.1.0"
__all__ = ["logstash_input", "logstash_output"]


def __getattr__(name: str):
    if name in __all__:
        from twisted_logstash import services

        return getattr(services, name)
    raise AttributeError(f"module 'twisted_logstash' has no attribute {name!r}")
