"""twistd dropins: ``twistd logstash-input`` and ``twistd logstash-output``.

ServiceMaker imports the tap modules only when the program runs, so that
scanning plugins stays cheap.
"""

from twisted.application.service import ServiceMaker

logstashInput = ServiceMaker(
    "logstash input",
    "twisted_logstash.tap.input",
    "Receive events from Logstash or Beats (native HTTP wire or Lumberjack).",
    "logstash-input",
)

logstashOutput = ServiceMaker(
    "logstash output",
    "twisted_logstash.tap.output",
    "Send events to Logstash inputs (native HTTP wire or Lumberjack), load-balanced.",
    "logstash-output",
)
