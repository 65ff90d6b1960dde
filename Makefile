# trolleyfs: `make demo` mounts a sample PACS, `make test` runs the test suite.
# Both install what a fresh Debian 12 machine lacks (apt packages need root)
# and work with Debian's own Python: make demo PYTHON=/usr/bin/python3

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
LOCK   := constraints.txt
PIP    := $(PY) -m pip install -q -c $(LOCK)
# a second Python for `make test-unit-py313` (CI's second leg): pyenv's on these machines, or one on PATH
PY313  ?= $(firstword $(wildcard /root/.pyenv/versions/3.13*/bin/python3.13) $(shell command -v python3.13))
# python3-venv, python3-dev: a virtualenv of Debian's Python, and pyfuse3 compiled against it; attr: getfattr
APT_PACKAGES := gcc fuse3 libfuse3-dev pkg-config python3-venv python3-dev attr orthanc orthanc-dicomweb dcmtk dicom3tools dcm2niix rsync procps unzip redis-server redis-tools bsdutils rclone davfs2 curl logrotate
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# `make install`: a virtualenv in $(PREFIX)/lib/trolleyfs, the commands linked into $(PREFIX)/bin
PREFIX ?= $(shell [ "$$(id -u)" = 0 ] && echo /usr/local || echo $$HOME/.local)

.PHONY: all install system-deps venv test test-unit test-unit-py313 demo bench clean lint format lock docs

all: venv

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

# the virtualenv is made again when $(PYTHON) is another Python than the one it was made with
PY_TAG := $(shell $(PYTHON) -c 'import hashlib, sys; print(hashlib.sha1(sys.version.encode()).hexdigest()[:10])' 2>/dev/null)
STAMP  := $(VENV)/.stamp-$(PY_TAG)

$(STAMP): pyproject.toml $(LOCK) | system-deps
	@want="$$($(PYTHON) -c 'import sys; print(sys.version)')"; have="$$($(PY) -c 'import sys; print(sys.version)' 2>/dev/null)"; \
	if [ -n "$$have" ] && [ "$$have" != "$$want" ]; then \
	  echo "$(VENV) has Python $$have: making it again with $(PYTHON) ($$want)"; rm -rf $(VENV); fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PIP) -e '.[test]'
	rm -f $(VENV)/.stamp*
	touch $@

venv: $(STAMP)

install: system-deps
	$(PYTHON) -m venv $(PREFIX)/lib/trolleyfs
	$(PREFIX)/lib/trolleyfs/bin/python -m pip install -q --upgrade pip
	$(PREFIX)/lib/trolleyfs/bin/python -m pip install -q -c $(LOCK) .
	mkdir -p $(PREFIX)/bin
	ln -sf $(PREFIX)/lib/trolleyfs/bin/trolleyfs $(PREFIX)/bin/trolleyfs
	ln -sf $(PREFIX)/lib/trolleyfs/bin/mount.fuse.trolleyfs $(PREFIX)/bin/mount.fuse.trolleyfs
	@echo "installed: $(PREFIX)/bin/trolleyfs ($$($(PREFIX)/bin/trolleyfs --version))"

test: system-deps venv
	$(PY) -m pytest -q --durations=15

test-unit: venv
	$(PY) -m pytest -q tests/unit

test-unit-py313:
	@[ -n "$(PY313)" ] || { echo "make test-unit-py313: SKIPPED, no Python 3.13 here (pyenv's, or python3.13 on PATH)"; exit 0; }
	$(MAKE) test-unit PYTHON=$(PY313) VENV=.venv-py313

demo: system-deps venv
	$(VENV)/bin/trolleyfs demo

docs: venv
	$(PIP) -e '.[test,docs]'
	$(VENV)/bin/mkdocs build --strict -q -d site

bench: system-deps venv
	$(PIP) -e '.[test,bench]'
	$(PY) -m bench

lint: venv
	$(PIP) -e '.[test,lint]'
	$(VENV)/bin/ruff check trolleyfs tests bench
	$(VENV)/bin/ruff format --check trolleyfs tests bench
	$(VENV)/bin/mypy

format: venv
	$(PIP) -e '.[test,lint]'
	$(VENV)/bin/ruff format trolleyfs tests bench
	$(VENV)/bin/ruff check --fix trolleyfs tests bench

# resolve every dependency afresh (all extras) into $(LOCK)
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install -q --upgrade pip
	.venv-lock/bin/pip install -q -e '.[test,lint,bench,docs]'
	{ echo "# The versions CI and \`make\` install (pip constraints): regenerate with \`make lock\` after changing"; \
	  echo "# pyproject.toml's dependencies; pyproject.toml keeps the ranges users' installs may take."; \
	  .venv-lock/bin/pip freeze --exclude-editable | grep -vi '^trolleyfs'; } > $(LOCK)
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .venv-py313 build *.egg-info .pytest_cache site
