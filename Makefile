# Quick start: `make demo` (a simulated cloud on this machine) and `make test` (the whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all setup system-deps demo demo-stop demo-kvm demo-kvm-stop test test-fast check lint format typecheck bench bench-ci completions man clean

all: check

# Everything the project needs, from its own files: system packages (when root), then the venv.
setup: system-deps $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

$(STAMP): pyproject.toml scripts/install.sh
	@bash scripts/install.sh "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

demo: setup
	@bash scripts/demo.sh

demo-stop:
	@ZMN_HOME=$(CURDIR)/.demo/home $(BIN)/zmn stop

# Root: a KVM cloud in network namespaces (two hosts, an image store, two running VMs).
demo-kvm: setup
	@bash scripts/demo-kvm.sh start

demo-kvm-stop:
	@bash scripts/demo-kvm.sh stop

# Three workers on two cores: much of the suite waits on node processes, sockets and timers.
# --dist loadfile keeps a module's tests (and its module-scoped datacenter) on one worker.
PYTEST_WORKERS ?= 3
test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile --durations=15

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -x -p no:cacheprovider tests/unit

check: $(STAMP) lint typecheck test

lint:
	$(BIN)/ruff check zmn zcli tui agent tests bench
	$(BIN)/ruff format --check zmn zcli tui agent tests bench

format: $(STAMP)
	$(BIN)/ruff format zmn zcli tui agent tests bench
	$(BIN)/ruff check --fix zmn zcli tui agent tests bench

typecheck:
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench

bench-ci: $(STAMP)
	$(BIN)/python -m bench --ci

completions: $(STAMP)
	$(BIN)/python -m zcli.gen completions

man: $(STAMP)
	$(BIN)/python -m zcli.gen man

clean:
	rm -rf $(VENV) .demo .demo-kvm build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
