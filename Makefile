# `make demo` and `make test` do all the set-up on a fresh machine (Python 3.11, pip, gcc).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install browser promtool demo test bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: this machine's CPU build, not the registry's CUDA one
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,ray]'  # ray: the labelling job's cluster backend, tested on a local cluster
	touch $@

COMETBFT_VERSION := v1.0.1
COMETBFT_STAMP := $(BIN)/.cometbft-$(COMETBFT_VERSION)
ABCI_GEN := edgepoc/chain/abci/gen/VERSION

# The chain's consensus engine: CometBFT built from its Go module (pinned) into the venv, once.
$(COMETBFT_STAMP): | $(BIN)/.installed
	GOBIN=$(abspath $(BIN)) GOFLAGS=-buildvcs=false go install github.com/cometbft/cometbft/cmd/cometbft@$(COMETBFT_VERSION)
	$(BIN)/cometbft version
	touch $@

# The ABCI wire code, generated from that CometBFT's own .proto files (gitignored).
$(ABCI_GEN): edgepoc/chain/abci/genproto.py $(COMETBFT_STAMP)
	$(BIN)/python -m edgepoc.chain.abci.genproto

# Last, the package's bytecode: where PYTHONDONTWRITEBYTECODE is set (as on this project's development machines)
# every process compiled edgepoc's modules from source again: 0.1-0.2 s of CPU for each CLI call, node and worker
# (a node's start 2.07 -> 1.87 s, `solve --method greedy` 1.51 -> 1.41 s, 8 runs each). Python still reads .pyc
# files with that setting; a module edited since is compiled from source, as before, until the next install.
# Then the Numba code into its cache (edgepoc/precompile.py): on a fresh install about 30 s on two cores, once; without
# it the first `solve --method student` took 25 s and the first `network up` compiled it in every node at once.
# Up to date, it takes about a second. If it fails, the install goes on (Numba then compiles on first use).
install: $(BIN)/.installed $(COMETBFT_STAMP) $(ABCI_GEN)
	$(BIN)/python -m compileall -q edgepoc
	-$(BIN)/python -m edgepoc.precompile

demo: install browser
	$(BIN)/edgepoc demo

# Debian's headless Chromium, for the explorer's browser test (never a browser download).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
	  || echo "note: install Debian's chromium (apt-get install chromium) to run the explorer's browser test"

# Debian's promtool (package prometheus), for the monitoring tests: only the tool is wanted, so the
# service the package starts (where systemd runs) is stopped and disabled again.
promtool:
	@command -v promtool >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q \
	    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus \
	    && { systemctl disable --now prometheus >/dev/null 2>&1 || true; }; } \
	  || echo "note: install Debian's prometheus package (apt-get install prometheus) for promtool, to run the monitoring tests"

# Test files on TEST_WORKERS processes (pytest-xdist), one file per worker at a time, so a file's module-scoped
# network is its own. Run serially, the chain tests leave the cores idle about a quarter of the time (waiting on
# blocks and on processes starting): two workers on two cores took the suite from 1303 s to 860-911 s.
# TEST_WORKERS=0 runs it in this process, one test after another.
TEST_WORKERS ?= 2

test: install browser promtool
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

bench: install
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info edgepoc/chain/abci/gen
