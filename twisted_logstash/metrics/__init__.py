"""Metrics and health of the programs: Prometheus' text format at ``/metrics``, ``/health``.

The counters live where the work happens (``transport/inputstats.py`` for the input,
``pipeline/output.py`` and ``pipeline/balancer.py`` for the output) as plain numbers; the
collectors here read them at scrape time, so counting costs an increment and nothing is
counted twice. ``server.MetricsService`` serves a per-program ``CollectorRegistry`` with
prometheus_client's own exposition.
"""
