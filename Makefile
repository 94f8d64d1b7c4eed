# Everything a fresh Debian machine needs: `make test` runs the test suite, `make bench` the
# benchmarks against PyTorch/open_clip. Each target installs the Debian packages it needs.
DEBS   := libopenblas-dev libjpeg-dev libpng-dev libicu-dev zlib1g-dev pkg-config libopenmpi-dev openmpi-bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SWIFT  ?= swift
PYTHON ?= python3
VENV   := .venv-ref

.PHONY: deps build test train bench fixtures venv clean format lint check-generated

deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build -c release

# Numeric code is far too slow in debug builds, so the tests run optimised. With the reference
# venv present, the ViT-B-32 and zero-shot parity fixtures are generated first (else those tests
# are skipped).
test: deps
	@if [ -x $(VENV)/bin/python ]; then $(MAKE) --no-print-directory fixtures-vitb32 fixtures-zeroshot; fi
	$(SWIFT) test -c release

# The main job: train on the bundled shapes data with the defaults the data chooses (no training
# options; docs/training.md, Defaults), with validation recall and zero-shot accuracy on the
# held-out test split after each epoch.
train: build
	.build/release/mm train datasets/shapes/train.tsv --val datasets/shapes/val.tsv \
		--zeroshot-labels datasets/shapes/labels.txt --zeroshot-data datasets/shapes/test_labels.tsv \
		-o runs/shapes --overwrite

# The PyTorch/open_clip reference environment (several GB), created when missing.
venv: $(VENV)/.done
$(VENV)/.done: tools/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r tools/requirements.txt
	touch $@

# mm against PyTorch/open_clip on the same machine, in one run each (see README, Performance).
bench: build venv
	$(VENV)/bin/python tools/bench/bench_block.py
	$(VENV)/bin/python tools/bench/bench_encode.py
	$(VENV)/bin/python tools/bench/bench_train.py

fixtures: venv
	$(VENV)/bin/python tools/make_tensor_fixtures.py

clean:
	rm -rf .build

# CLIP model fixtures (tools/make_model_fixtures.py). The small config is committed under
# Tests/MMCLIPTests/Fixtures; the perturbed real ViT-B-32 (≈600 MB) is generated here on demand,
# and its parity test skips with a reason while it is absent.
VITB32 := .build/fixtures/vitb32
.PHONY: fixtures-clip fixtures-vitb32
fixtures-clip: venv
	$(VENV)/bin/python tools/make_model_fixtures.py

fixtures-vitb32: $(VITB32)/vitb32_io.safetensors
$(VITB32)/vitb32_io.safetensors: tools/make_model_fixtures.py $(VENV)/.done
	$(VENV)/bin/python tools/make_model_fixtures.py --vitb32 $(VITB32)

# Image preprocessing (MMImage): golden fixtures from PIL + open_clip, throughput against PIL +
# open_clip in one run, and the 10,000-image resident-memory soak.
.PHONY: fixtures-image bench-image soak-image
fixtures-image: venv
	$(VENV)/bin/python tools/make_image_fixtures.py

bench-image: build venv
	$(VENV)/bin/python tools/bench/bench_image.py

soak-image: build venv
	$(VENV)/bin/python tools/bench/soak_image.py

# Tokenizer (MMTokenizer): golden fixtures from open_clip's SimpleTokenizer (plus the HTML entity
# table), and throughput against open_clip and Hugging Face's fast tokenizer in one run.
.PHONY: fixtures-tokenizer bench-tokenizer
fixtures-tokenizer: venv
	$(VENV)/bin/python tools/make_tokenizer_fixtures.py
	$(VENV)/bin/python tools/make_tokenizer_tables.py

bench-tokenizer: build venv
	$(VENV)/bin/python tools/bench/bench_tokenizer.py

# Data-parallel training over Open MPI (needs root for the network namespaces; skips otherwise):
# two "hosts" joined by a veth pair, one rank each; and 1 rank × 2 threads vs 2 ranks × 1 thread.
.PHONY: test-two-hosts bench-mpi
test-two-hosts: build
	tools/mpi/two_hosts.sh .build/release/mm

bench-mpi: build
	$(PYTHON) tools/bench/bench_mpi.py

# Zero-shot parity (tools/make_zeroshot_fixture.py): a small open_clip model trained briefly on
# datasets/shapes and open_clip's own zero-shot predictions on the 1,024 test images (≈15 MB, not
# committed; about 2 minutes). OpenCLIPZeroShotTests skips with a reason while it is absent.
ZEROSHOT := .build/fixtures/zeroshot
.PHONY: fixtures-zeroshot bench-search
fixtures-zeroshot: $(ZEROSHOT)/zeroshot.safetensors
$(ZEROSHOT)/zeroshot.safetensors: tools/make_zeroshot_fixture.py $(VENV)/.done
	$(VENV)/bin/python tools/make_zeroshot_fixture.py $(ZEROSHOT)

# Exact search against faiss.IndexFlatIP, in memory and memory-mapped (see README, Zero-shot and retrieval).
bench-search: build venv
	$(VENV)/bin/python tools/bench/bench_search.py

# The contrastive family of `mm train` (README, Contrastive family): golden fixtures from
# open_clip/PyTorch, the per-option cost benchmark and the ablation on the bundled data (~1 h).
.PHONY: fixtures-contrastive bench-contrastive ablation-contrastive
fixtures-contrastive: venv
	$(VENV)/bin/python tools/make_contrastive_fixtures.py

bench-contrastive: build
	tools/bench/bench_contrastive.sh

ablation-contrastive: build
	tools/ablation_contrastive.sh runs/ablation

# Style: swift-format with the repository's .swift-format. `make lint` fails on any finding (CI runs it).
SWIFT_SOURCES := Package.swift Sources Tests $(wildcard Examples)
format:
	$(SWIFT) format format --in-place --recursive --parallel $(SWIFT_SOURCES)

lint:
	$(SWIFT) format lint --strict --recursive --parallel $(SWIFT_SOURCES)

# Every committed generated file (the HTML entity table, the golden fixtures) is rewritten by its
# script from the pinned reference; CI fails if any differs from what is committed.
GENERATORS := make_tokenizer_tables make_tensor_fixtures make_model_fixtures make_image_fixtures \
	make_tokenizer_fixtures make_contrastive_fixtures make_patch_dropout_fixture
check-generated: venv
	@for g in $(GENERATORS); do echo "tools/$$g.py"; $(VENV)/bin/python tools/$$g.py > /dev/null || exit 1; done
	@changed=$$(git status --porcelain -- Sources Tests); \
	if [ -n "$$changed" ]; then echo "generated files differ from the committed ones (rerun the scripts above and commit):"; echo "$$changed"; exit 1; fi
	@echo "generated files are up to date"

# Two more small evaluation sets of other kinds than shapes (handwritten digits from
# scikit-learn, generated textures), for judging training defaults on more than one task.
EVALSETS := .build/datasets
.PHONY: eval-sets
eval-sets: $(EVALSETS)/patterns/labels.txt
$(EVALSETS)/patterns/labels.txt: tools/make_eval_sets.py $(VENV)/.done
	$(VENV)/bin/python tools/make_eval_sets.py --out $(EVALSETS)
