# kaudit: the two commands of a fresh machine are `make demo` and `make test`.
# Each creates the virtualenv and installs what it needs; nothing is installed by hand.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck unit bench system-deps deploy-tools clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the package metadata changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

# Java 17+ and Maven assemble and run Apache Kafka (from Maven Central) for the tests
# and the demo; rsyslog (with its TLS driver) is the syslog daemon the syslog destination
# is tested against; Chromium is the browser the console's tests drive (Playwright).
# They come from Debian's packages when the machine lacks them;
# RUNLEVEL=1 keeps the package from starting a system-wide syslog daemon.
system-deps:
	@command -v java >/dev/null && command -v mvn >/dev/null \
	  && command -v rsyslogd >/dev/null && dpkg -s rsyslog-gnutls >/dev/null 2>&1 \
	  && command -v chromium >/dev/null \
	  || { echo "installing Java, Maven, rsyslog and Chromium from Debian packages"; \
	  apt-get update -qq && RUNLEVEL=1 apt-get install -y -qq --no-install-recommends \
	    openjdk-17-jre-headless maven rsyslog rsyslog-gnutls chromium; }
	@# Go and Node build the gateway's franz-go, Sarama and kafkajs test clients, and a JDK
	@# (javac) runs its Java one from source (tests/clients).
	@command -v go >/dev/null && command -v npm >/dev/null && command -v javac >/dev/null \
	  || { echo "installing Go, Node and a JDK from Debian packages"; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends golang-go npm \
	    openjdk-17-jdk-headless; }

	@# systemd-analyze verifies the systemd units in deploy/systemd (tests/deploy).
	@command -v systemd-analyze >/dev/null \
	  || { echo "installing systemd (systemd-analyze) from Debian packages"; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends systemd; }

# helm and kubeconform check the Helm chart (tests/deploy); built once with `go install`
# from the Go module proxy into kaudit's cache directory (tests/support/deploy_tools.py).
deploy-tools: $(VENV)/.installed-test system-deps
	$(BIN)/python tests/support/deploy_tools.py

demo: $(VENV)/.installed system-deps
	$(BIN)/kaudit demo

# lint-imports checks the layers stated in pyproject.toml ([tool.importlinter]).
lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports --no-cache

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy src

# Two workers, each test file on one of them (--dist loadfile), so a file's broker,
# Keycloak and other session fixtures start once per worker that runs it.
unit: $(VENV)/.installed-test system-deps deploy-tools
	$(BIN)/pytest -n 2 --dist loadfile

test: lint typecheck unit

bench: $(VENV)/.installed-test
	$(BIN)/python bench/recorder.py

clean:
	rm -rf $(VENV) kaudit-data kaudit-demo .pytest_cache .mypy_cache .ruff_cache
