# Everything a fresh Debian machine needs: `make test` runs the test suite, `make bench` the
# benchmarks against PyTorch/open_clip. Each target installs the Debian packages it needs.
DEBS   := libopenblas-dev libjpeg-dev libpng-dev libwebp-dev libicu-dev zlib1g-dev pkg-config libopenmpi-dev openmpi-bin libfaiss-dev chromium
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
	@if [ -x $(VENV)/bin/python ]; then $(MAKE) --no-print-directory fixtures-vitb32 fixtures-zeroshot fixtures-webdataset; fi
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
$(VENV)/.done: tools/requirements.txt tools/requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r tools/requirements.txt
	$(VENV)/bin/pip install -q --no-deps -r tools/requirements-nodeps.txt
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

# LiT with cached image features against without (docs/training.md, Locked image tower): mm-tiny
# with a locked image tower, 3 epochs each, samples/s per epoch and the ratio.
.PHONY: bench-lit
bench-lit: build
	$(PYTHON) tools/bench/bench_lit_cache.py

# Style: swift-format with the repository's .swift-format. `make lint` fails on any finding (CI runs it).
SWIFT_SOURCES := Package.swift Sources Tests $(wildcard Examples)
format:
	$(SWIFT) format format --in-place --recursive --parallel $(SWIFT_SOURCES)

lint:
	$(SWIFT) format lint --strict --recursive --parallel $(SWIFT_SOURCES)

# Every committed generated file (the HTML entity table, the golden fixtures) is rewritten by its
# script from the pinned reference; CI fails if any differs from what is committed.
GENERATORS := make_tokenizer_tables make_tensor_fixtures make_model_fixtures make_image_fixtures \
	make_tokenizer_fixtures make_contrastive_fixtures make_patch_dropout_fixture make_webp_fixtures \
	make_resnet_fixture
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

# The example package under Examples/ that uses mm's library products from another package
# (trains a few steps and classifies an image); `make example` builds and runs it.
.PHONY: example
example: deps
	cd Examples/TrainFromSwift && $(SWIFT) build -c release && .build/release/TrainFromSwift ../..

# WebDataset shards (tools/make_webdataset_fixtures.py): img2dataset (in its own venv,
# .venv-img2dataset) downloads 96 shapes pairs from a local http.server into jpg and webp shards,
# plus damaged shards; open_clip's WebDataset pipeline and Pillow record what they hold (≈1 min,
# ≈0.5 MB, not committed). ShardFixtureTests skips with a reason while they are absent. WebP
# image goldens (committed, Tests/MMImageTests/Fixtures/webp) come from tools/make_webp_fixtures.py.
WEBDATASET := .build/fixtures/webdataset
.PHONY: fixtures-webdataset fixtures-webp bench-shards
fixtures-webdataset: $(WEBDATASET)/done
$(WEBDATASET)/done: tools/make_webdataset_fixtures.py tools/requirements-img2dataset.txt $(VENV)/.done
	$(VENV)/bin/python tools/make_webdataset_fixtures.py $(WEBDATASET)

fixtures-webp: venv
	$(VENV)/bin/python tools/make_webp_fixtures.py

# Shard reading + decoding + preprocessing: mm against open_clip's get_wds_dataset (2 workers).
bench-shards: build venv fixtures-webdataset
	$(VENV)/bin/python tools/bench/bench_shards.py

# Robustness (docs/robustness.md). Fuzzing with libFuzzer: every harness in tools/fuzz/harnesses
# for FUZZ_SECONDS (default 60) each; fuzz-ci runs each for 30 s and replays every committed
# crash input. test-hostile runs the release mm over a folder of hostile inputs.
.PHONY: fuzz fuzz-ci fuzz-replay test-hostile
fuzz: deps
	tools/fuzz/run.sh

fuzz-ci: deps
	FUZZ_SECONDS=30 tools/fuzz/run.sh
	tools/fuzz/run.sh --replay
	$(MAKE) --no-print-directory fuzz-torch-checkpoint FUZZ_SECONDS=30

fuzz-replay: deps
	tools/fuzz/run.sh --replay

test-hostile: build
	$(PYTHON) tools/hostile/make_inputs.py --mm .build/release/mm .build/hostile
	$(PYTHON) tools/hostile/check.py --mm .build/release/mm .build/hostile

# mm serve (docs/serve.md): load test (50 clients, 60 s, /search on a 100,000-row index), the
# approximate-index benchmark (recall@10, queries/s against exact search, build time, memory),
# one client's /search latency on a 1,000,000-row index with ViT-B-32 loaded, and `mm index build`
# of a folder of photos against open_clip with a 2-worker DataLoader.
.PHONY: bench-serve bench-ann bench-latency bench-index-build
bench-serve: build
	tools/serve/bench_serve.sh

bench-ann: build
	tools/serve/bench_ann.sh

bench-latency: build fixtures-vitb32
	tools/serve/bench_latency.sh

bench-index-build: build venv fixtures-vitb32
	$(VENV)/bin/python tools/bench/bench_index_build.py

# PyTorch checkpoints, hub folders and f16 weights (docs/weights.md): the committed golden files
# under Tests/MMCLIPTests/Fixtures/torch and the fuzz seeds (tools/make_torch_fixtures.py), the
# load benchmark against open_clip, and the libFuzzer harness of the reader (FUZZ_SECONDS each run).
FUZZ_SECONDS ?= 60
SWIFTC ?= swiftc
.PHONY: fixtures-torch bench-load fuzz-torch-checkpoint
fixtures-torch: venv
	$(VENV)/bin/python tools/make_torch_fixtures.py
	$(VENV)/bin/python tools/make_torch_fixtures.py fuzz-seeds

bench-load: build venv
	$(VENV)/bin/python tools/bench/bench_load.py

.build/fuzz/torch_checkpoint: Sources/MMFoundation/Files.swift Sources/MMCLIP/StoredZip.swift Sources/MMCLIP/TorchPickle.swift Sources/MMCLIP/TorchArchive.swift tools/fuzz/standalone/torch_checkpoint.swift
	mkdir -p .build/fuzz
	$(SWIFTC) -O -g -sanitize=fuzzer,address -parse-as-library -D MM_FUZZ_STANDALONE $^ -o $@

fuzz-torch-checkpoint: .build/fuzz/torch_checkpoint
	mkdir -p .build/fuzz/torch_checkpoint.corpus
	.build/fuzz/torch_checkpoint .build/fuzz/torch_checkpoint.corpus tools/fuzz/corpus/torch_checkpoint \
		-max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048 -timeout=10
