"""The two wires, native (HTTP/1.1 batches) and lumberjack (Lumberjack v2, Beats): each
its codecs plus the exchanges the transport plugs in.
"""
