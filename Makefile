# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv if missing, installs torch and the dependencies, builds the
# extension, then runs. Override the torch build with e.g. TORCH_SPEC=torch==2.13.0.

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.14.1
# The image path (VOC2007 / MS-COCO / digits-mosaic, ResNet heads); must match TORCH_SPEC
# (torch 2.13 pairs with torchvision 0.28). Empty skips it: the image tests then skip.
TORCHVISION_SPEC ?= torchvision==0.29.1
PY          = $(VENV)/bin/python
PIP         = $(PY) -m pip
DEPS_STAMP  = $(VENV)/.deps-$(subst =,_,$(subst <,_,$(subst >,_,$(TORCH_SPEC))))
BUILD_STAMP = $(VENV)/.built
NATIVE_SRC  = $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cpu/*.h csrc/cuda/*.cu csrc/cuda/*.cuh)
DEMO_ARGS  ?=
TEST_ARGS  ?=
# The paper's comparison on real data (needs D2ACE_DATA_DIR); resumes from d2ace-results/.
COMPARE_ARGS ?= --datasets yeast scene emotions enron cal500 --models mlp clif \
                --selectors random ml_unc hard_imb d2ace --jobs 2 --threads 1 --trace first

# Benchmarks (pytest-benchmark): BENCH_ARGS adds pytest options (e.g. -k mediamill);
# bench-compare fails when the last run regressed past BENCH_FAIL against the one before.
BENCH_ARGS ?=
BENCH_FAIL ?= median:25%
OVERHEAD_ARGS ?=
# Replicated vs row-sharded selector state with 1, 2 and 4 gloo ranks (docs/scaling.md);
# e.g. BENCH_SCALE_ARGS="scale --n 2000000 --worlds 4 --modes sharded", or "collectives".
BENCH_SCALE_ARGS ?= scale --n 100000 1000000 --worlds 1 2 4
# The same-run comparison with the authors' published code, which is not part of this
# project: PUBLISHED_SRC = a checkout of https://github.com/iunanyou/D2ACE (or set
# D2ACE_PUBLISHED_SRC); without one the target says how to get it and skips.
# e.g. BENCH_PUBLISHED_ARGS="--batches 120" times 120 of the 247 published batches and extrapolates.
PUBLISHED_SRC ?=
BENCH_PUBLISHED_ARGS ?= --shape mediamill
BENCH_RUN   = $(PY) -m pytest -q --benchmark-autosave --benchmark-columns=median,iqr,rounds,iterations \
              --benchmark-sort=name

.PHONY: demo demo-images test lint build bench bench-selectors bench-compare bench-overhead bench-scale bench-published compare clean

demo: $(BUILD_STAMP)
	$(PY) -m d2ace_ext.demo $(DEMO_ARGS)

# Random vs D2ACE on the embedded digits-mosaic images (ML-GCN, ResNet-18, CPU, minutes).
demo-images: $(BUILD_STAMP)
	$(PY) -m d2ace_ext.image_demo $(DEMO_ARGS)

test: lint $(BUILD_STAMP)
	$(PY) -m pytest -q $(TEST_ARGS) tests

# pyflakes, pycodestyle, import order and the formatter's layout ([tool.ruff] in pyproject.toml); make test runs it first.
lint: $(DEPS_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

compare: $(BUILD_STAMP)
	$(PY) -m d2ace_ext.cli compare $(COMPARE_ARGS)

bench: $(BUILD_STAMP)
	$(BENCH_RUN) benchmarks $(BENCH_ARGS)

bench-selectors: $(BUILD_STAMP)
	$(BENCH_RUN) benchmarks/test_selectors.py $(BENCH_ARGS)

bench-compare: $(BUILD_STAMP)
	$(PY) benchmarks/compare_runs.py --fail "$(BENCH_FAIL)"

bench-overhead: $(BUILD_STAMP)
	$(PY) benchmarks/bench_overhead.py $(OVERHEAD_ARGS)

bench-scale: $(BUILD_STAMP)
	$(PY) benchmarks/bench_scale.py $(BENCH_SCALE_ARGS)

bench-published: $(BUILD_STAMP)
	$(PY) benchmarks/bench_published.py $(if $(PUBLISHED_SRC),--published-src "$(PUBLISHED_SRC)") $(BENCH_PUBLISHED_ARGS)

build: $(BUILD_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# lightning and accelerate are the optional integrations, and faiss-cpu the optional
# approximate K-NN (a 19 MB wheel), installed so make test runs their tests; the torch
# spec is repeated in that command so pip can never replace torch.
$(DEPS_STAMP): $(PY) pyproject.toml
	$(PIP) install -q --upgrade pip setuptools wheel ninja
	$(PIP) install -q "$(TORCH_SPEC)" $(if $(TORCHVISION_SPEC),"$(TORCHVISION_SPEC)")
	$(PIP) install -q numpy scipy scikit-learn tqdm pytest hypothesis pytest-benchmark 'ruff>=0.17,<0.18' iterative-stratification matplotlib \
	    lightning accelerate faiss-cpu "$(TORCH_SPEC)"
	rm -f $(VENV)/.deps-* $(BUILD_STAMP)
	touch $@

$(BUILD_STAMP): $(DEPS_STAMP) setup.py $(NATIVE_SRC)
	$(PIP) install -q --no-build-isolation --no-deps -e .
	$(PY) -c "import d2ace_ext; print(d2ace_ext.build_info())"
	touch $@

clean:
	rm -rf build *.egg-info d2ace_ext/_C*.so $(VENV)
