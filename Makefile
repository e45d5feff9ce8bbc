# Every target installs what it needs into .venv first (Python 3.11 is on the machine).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all demo test lint peers bench certs clean

all: test

$(STAMP): setup.cfg setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,bench]' --config-settings editable_mode=compat
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint peers
	$(BIN)/python -m pytest -q

# the Java peers some tests run against (installs libnetty-java as root): tests/peers/README.md
peers:
	bash tests/peers/build.sh

certs: $(STAMP)
	$(BIN)/python certs/make_certs.py certs/out

demo: $(STAMP)
	$(BIN)/python -m twisted_logstash.demo

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info certs/out demo-run bench/out tests/peers/netty/build
