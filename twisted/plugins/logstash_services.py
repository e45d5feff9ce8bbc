"""twistd dropins: ``twistd logstash-input``, ``logstash-output`` and ``logstash-pipeline``.

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

logstashPipeline = ServiceMaker(
    "logstash pipeline",
    "twisted_logstash.tap.pipeline",
    "Run a Logstash pipeline file (-f FILE or -e STRING): inputs, outputs and their settings.",
    "logstash-pipeline",
)
