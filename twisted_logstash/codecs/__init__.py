"""Sans-IO codecs every wire and writer shares: ndjson, compression, the JSON policy,
Logstash's event rules.
"""
