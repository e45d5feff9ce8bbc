"""``twistd logstash-pipeline``: run a Logstash pipeline file (``-f FILE``) or string
(``-e STRING``): inputs, outputs, and the events of every input in every output.

The file is Logstash's syntax (``twisted_logstash/pipelines/``). Everything is parsed, checked
and built in ``makeService``, before twistd starts the reactor: a mistake is one line on stderr
naming ``FILE:LINE:COLUMN``, and exit status 2 with nothing bound. ``-t`` checks and exits, as
Logstash's ``--config.test_and_exit``.
"""

from __future__ import annotations

import sys

from twisted.python import usage

from twisted_logstash.errors import ConfigurationError
from twisted_logstash.tap.common import ProgramOptions, configuration_errors
from twisted_logstash.tap.input import log_beside_events

PROGRAM = "logstash-pipeline"


class Options(ProgramOptions):
    synopsis = "(-f FILE | -e STRING) [-t]"
    longdesc = (
        "Run a Logstash pipeline: inputs logstash, beats, stdin, generator; outputs logstash, "
        "lumberjack, stdout, file; with Logstash's settings. See docs/pipelines.md."
    )
    optParameters = [
        ["path.config", "f", None, "the pipeline file"],
        ["config.string", "e", None, "the pipeline, given inline"],
    ]
    optFlags = [["config.test_and_exit", "t", "check the pipeline (and its files) and exit"]]

    def postOptions(self):
        if bool(self["path.config"]) == bool(self["config.string"]):
            raise usage.UsageError("give the pipeline with one of -f FILE or -e STRING")


def read_config(options: Options):
    """The parsed pipeline the options name; ConfigurationError if the file cannot be read."""
    from twisted_logstash.pipelines.syntax import parse

    path = options["path.config"]
    if path is None:
        return parse(options["config.string"], "config string")
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as error:
        raise ConfigurationError(f"{path}: cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path}: is not UTF-8 text") from None
    return parse(text, path)


def makeService(options: Options):
    from twisted.internet import reactor

    from twisted_logstash.pipelines.build import build

    with configuration_errors(PROGRAM):
        config = read_config(options)
        pipeline = build(config, reactor)
    if options["config.test_and_exit"]:
        sys.stdout.write("Configuration OK\n")
        sys.stdout.flush()
        raise SystemExit(0)
    if config.plugins("output") and any(p.name == "stdout" for p in config.plugins("output")):
        log_beside_events(options)
    return pipeline
