# invoice-worker: `make run` and `make test` on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: run test test-slow test-mounts system-packages lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/invoice-worker run

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not mounts"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# The real-mount tests: a real OpenSSH sshd on 127.0.0.1 and sshfs (FUSE). Without
# them the tests fail, with what is missing, rather than skip.
test-mounts: system-packages $(STAMP)
	$(BIN)/python -m pytest -q -m mounts

# What the mount tests need from the system: installed with apt-get when run as root
# and missing (apt-get update only if the install fails: the lists may be stale).
MOUNT_PACKAGES := /usr/sbin/sshd:openssh-server sftp:openssh-client sshfs:sshfs fusermount3:fuse3
system-packages:
	@missing=""; \
	for pair in $(MOUNT_PACKAGES); do \
		tool=$${pair%%:*}; package=$${pair#*:}; \
		command -v $$tool >/dev/null 2>&1 || missing="$$missing $$package"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
		echo "system-packages: missing$$missing; install them as root (the mount tests fail without them)"; \
		exit 0; \
	fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	echo "system-packages: apt-get install$$missing"; \
	apt-get install -y -q --no-install-recommends $$missing \
		|| { apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; } \
		|| echo "system-packages: could not install$$missing (the mount tests will say what is missing)"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# Generates its inputs under bench/data/ (about 2.5 GB), writes docs/benchmark.md.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
