# trolleyfs: `make demo` mounts a sample PACS, `make test` runs the test suite.
# Both install what a fresh Debian 12 machine lacks (apt packages need root)
# and work with Debian's own Python: make demo PYTHON=/usr/bin/python3

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# python3-venv, python3-dev: a virtualenv of Debian's Python, and pyfuse3 compiled against it; attr: getfattr
APT_PACKAGES := gcc fuse3 libfuse3-dev pkg-config python3-venv python3-dev attr orthanc orthanc-dicomweb dcmtk dicom3tools dcm2niix rsync procps unzip redis-server redis-tools bsdutils rclone davfs2 curl logrotate
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# `make install`: a virtualenv in $(PREFIX)/lib/trolleyfs, the commands linked into $(PREFIX)/bin
PREFIX ?= $(shell [ "$$(id -u)" = 0 ] && echo /usr/local || echo $$HOME/.local)

.PHONY: all install system-deps venv test test-unit demo bench clean lint format docs

all: venv

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.stamp: pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.stamp

install: system-deps
	$(PYTHON) -m venv $(PREFIX)/lib/trolleyfs
	$(PREFIX)/lib/trolleyfs/bin/python -m pip install -q --upgrade pip
	$(PREFIX)/lib/trolleyfs/bin/python -m pip install -q .
	mkdir -p $(PREFIX)/bin
	ln -sf $(PREFIX)/lib/trolleyfs/bin/trolleyfs $(PREFIX)/bin/trolleyfs
	ln -sf $(PREFIX)/lib/trolleyfs/bin/mount.fuse.trolleyfs $(PREFIX)/bin/mount.fuse.trolleyfs
	@echo "installed: $(PREFIX)/bin/trolleyfs ($$($(PREFIX)/bin/trolleyfs --version))"

test: system-deps venv
	$(PY) -m pytest -q --durations=15

test-unit: venv
	$(PY) -m pytest -q tests/unit

demo: system-deps venv
	$(VENV)/bin/trolleyfs demo

docs: venv
	$(PY) -m pip install -q -e '.[test,docs]'
	$(VENV)/bin/mkdocs build --strict -q -d site

bench: system-deps venv
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) -m tests.bench

lint: venv
	$(PY) -m pip install -q -e '.[test,lint]'
	$(VENV)/bin/ruff check trolleyfs tests
	$(VENV)/bin/ruff format --check trolleyfs tests
	$(VENV)/bin/mypy

format: venv
	$(PY) -m pip install -q -e '.[test,lint]'
	$(VENV)/bin/ruff format trolleyfs tests
	$(VENV)/bin/ruff check --fix trolleyfs tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache site
