# ModelDeploy: the verbs people type. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Test workers (pytest-xdist): one test's waiting on servers overlaps another's work (13 to 18%
# faster on 2 cores; docs/testing.md#two-workers).
# TEST_WORKERS=0 runs every test in the one pytest process.
TEST_WORKERS ?= 2
WORKERS := -n $(TEST_WORKERS) --dist loadgroup

.PHONY: compat lock help install bytecode test test-fast test-unit test-cluster test-images lint format crds chart envtest envtest-up envtest-down demo bench bench-gpu images push clean

help: ## List the verbs
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# uv installs the pinned set: from its cache (~/.cache/uv) in about 30 s, where pip unpacked
# the same 6.5 GB in about 2 min 45 s on every fresh clone. --compile-bytecode, as pip does:
# without .pyc files every process compiles what it imports, and `modeldeploy serve` took 4.4 s
# of CPU to start instead of 1.7 s. pip stays in the venv for people's own installs.
UV_VERSION := 0.13.9
$(STAMP): pyproject.toml hack/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode \
		$${PIP_FIND_LINKS:+--find-links $$PIP_FIND_LINKS} -c hack/constraints.txt -e '.[dev]'
	touch $@

install: $(STAMP) ## Create .venv and install modeldeploy with every extra and the test tools

envtest: ## Provide kube-apiserver, etcd, kubectl, helm, versitygw (S3), prometheus and the KServe/Gateway API CRDs (built once, cached)
	@bash hack/envtest/setup.sh >/dev/null

test: install envtest bytecode ## Run every test (unit tests and tests against a real kube-apiserver + etcd)
	$(BIN)/pytest $(WORKERS) $(PYTEST_ARGS)

# Our own modules' .pyc files, written once: where PYTHONDONTWRITEBYTECODE is set (as on this
# project's machine) every operator, staging and runtime process the tests start would compile
# them again (0.15 s of CPU each, a few hundred times a run). Python ignores a stale .pyc.
bytecode: install
	@$(BIN)/python -m compileall -q -j 0 operator tests >/dev/null

test-fast: install envtest bytecode ## Everything that needs neither the control plane nor PyTorch, in under a minute
	$(BIN)/pytest -m "not cluster and not staging and not slow and not gpu and not images" $(PYTEST_ARGS)

test-unit: install ## Run only the tests that need no control plane
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-cluster: install envtest bytecode ## Run only the tests against the real control plane
	$(BIN)/pytest tests/cluster $(WORKERS) $(PYTEST_ARGS)

images: ## Build the operator, staging and runtime (CPU, CUDA) images with podman (installs podman, runc, debootstrap, skopeo if missing)
	@bash hack/images/build.sh

push: ## Copy the built images to REGISTRY with skopeo (make push REGISTRY=ghcr.io/my-org)
	@bash hack/images/push.sh

test-images: install ## Run only the image smoke tests (after make images)
	$(BIN)/pytest tests/images tests/chart/test_versions.py $(PYTEST_ARGS)

lint: install ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check operator tests
	$(BIN)/ruff format --check operator tests
	@# mypy's cache is per user, like Go's: it checks each module's hash, so a fresh clone reuses
	@# what another checkout of the same code already checked (2 s instead of 25 s here).
	$(BIN)/mypy --cache-dir "$${MYPY_CACHE_DIR:-$${XDG_CACHE_HOME:-$$HOME/.cache}/modeldeploy/mypy}"

format: install ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix operator tests
	$(BIN)/ruff format operator tests

crds: install ## Regenerate crds/, docs/api.md and docs/metrics.md from the pydantic models and the metric catalogue, and the chart's copies
	$(BIN)/modeldeploy crd > crds/modeldeployment.yaml
	$(BIN)/modeldeploy crd --reference > docs/api.md
	$(BIN)/modeldeploy metrics > docs/metrics.md
	$(MAKE) chart

chart: install ## Copy crds/ and runtimes/modeldeploy-onnx.yaml into charts/modeldeploy (never edit the copies); regenerate its values table
	mkdir -p charts/modeldeploy/crds charts/modeldeploy/files
	cp crds/*.yaml charts/modeldeploy/crds/
	cp runtimes/modeldeploy-onnx.yaml charts/modeldeploy/files/
	$(BIN)/python hack/chart/values_table.py

lock: install ## Pin the Python packages to what .venv has now (hack/constraints.txt), after testing an upgrade
	@{ sed -n '1,3p' hack/constraints.txt; $(BIN)/pip freeze --exclude-editable; } > hack/constraints.txt.new
	mv hack/constraints.txt.new hack/constraints.txt

compat: install envtest ## Regenerate docs/install.md's table of the versions the tests run with
	$(BIN)/python hack/compat.py

envtest-up: install envtest ## Start a control plane for use by hand; prints KUBECONFIG
	$(BIN)/python -m tests.support up

envtest-down: install ## Stop the control plane that envtest-up started
	$(BIN)/python -m tests.support down

demo: install envtest bytecode ## Control plane + operator + local executor: stage, serve and query examples/digits-cpu.yaml (DEMO_EXIT=1 exits)
	$(BIN)/python -m tests.support.demo

bench: install envtest bytecode ## Benchmarks: control plane, validation; ORT vs torch; runtime vs kserve and Triton; drift's and a shadow's cost; operator; canary
	$(BIN)/python -m tests.bench.bench_foundation
	$(BIN)/python -m tests.bench.bench_operator
	$(BIN)/python -m tests.bench.bench_canary
	$(BIN)/python -m tests.bench.bench_kserve_canary
	$(BIN)/python -m tests.bench.bench_staging
	$(BIN)/python -m tests.bench.bench_runtime
	$(BIN)/python -m tests.bench.bench_drift
	$(BIN)/python -m tests.bench.bench_shadow

bench-gpu: install ## GPU benchmark: stage the bundle into .gpu/, dry-run it on this CPU, print the device calls (docs/benchmarks.md#gpu)
	$(BIN)/python -m tests.bench.gpu_bundle .gpu
	$(BIN)/python -m tests.bench.gpu_transfer join .gpu/parts.json .gpu --no-install
	$(BIN)/python -m tests.bench.bench_gpu --bundle .gpu/bundle --out .gpu/cpu-dry-run \
		--provider cpu --batches 1,8 --concurrency 1,8 --seconds 0.5
	@echo "Now make the device calls printed above, in order; docs/benchmarks.md#gpu"

clean: ## Remove the virtual environment, caches and the built control plane
	-$(BIN)/python -m tests.support down 2>/dev/null
	rm -rf $(VENV) .cache .gpu .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
