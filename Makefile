# The two commands: `make demo` and `make test`. Both install what they need first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PKGS := nftables iproute2 curl dnsutils mmdebstrap debootstrap socat netcat-openbsd procps util-linux tini gcc libc6-dev libssl-dev nginx-light sudo

.PHONY: test demo lint typecheck pytest sysdeps venv bench bench-quick clean cleanup fuzz

sysdeps:
	@scripts/ensure-apt.sh $(APT_PKGS)

$(STAMP): pyproject.toml
	@echo "[awf] creating $(VENV) and installing the package with its test extras"
	@test -x $(PY) || python3 -m venv $(VENV)
	@( $(PY) -m pip install --disable-pip-version-check --upgrade pip && \
	   $(PY) -m pip install --disable-pip-version-check -e '.[test]' ) > $(VENV)/install.log 2>&1 \
	   || { tail -30 $(VENV)/install.log; echo "awf: pip install failed; see $(VENV)/install.log"; exit 1; }
	@touch $@

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy

pytest: sysdeps venv
	$(VENV)/bin/pytest

test: sysdeps venv lint typecheck pytest

# the adversarial suite at length: each of tests/fuzz's targets for AWF_FUZZ_SECONDS (about 10 min
# in all); `make test` runs the same targets for 3 s each
FUZZ_SECONDS ?= 120
fuzz: sysdeps venv
	AWF_FUZZ_SECONDS=$(FUZZ_SECONDS) $(VENV)/bin/pytest tests/fuzz

demo: sysdeps venv
	@$(PY) -m awf.demo

bench: sysdeps venv
	bash bench/run.sh

bench-quick: sysdeps venv
	bash bench/run.sh --quick

cleanup: venv
	$(VENV)/bin/awf cleanup --all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
