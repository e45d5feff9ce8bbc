"""Logstash-to-Logstash communication on Twisted."""

__version__ = "0.1.0"
