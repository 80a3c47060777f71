# medserve: one small Makefile. Objects go to $(BUILD) with -MMD -MP.
#   make            libmedserve (static + shared), medserve, lora-merge, tools
#   make CUDA=1     would add a CUDA/cuBLAS backend from runtime/cuda/*.cu: none is
#                   written yet, so it stops with a message (the CPU backend ships)
#   make test       make deps, format-check, every test in a normal and an ASan+UBSan build;
#                   ends "N passed, N failed"
#   make stress-test  make deps, then the C suites (plain build) and the end-to-end suite
#                   STRESS_RUNS times (default 10) beside 2 CPU burners (STRESS_BURNERS);
#                   STRESS_ASAN=1 adds the ASan build's C suites; ends "N passed, N failed"
#   make deps       installs missing Debian / PyPI packages (the only target that installs)
#   make format     applies .clang-format (make format-check only checks)
#   make asan       the ASan+UBSan build only
#   make demo       synthetic model + synthetic LoRA, merged, served on localhost
#   make bench      benchmarks (bench/README.md)
#   make bench-load load and soak: 64 clients for 10 minutes against medserve (bench/load/README.md)
CC      ?= gcc
NVCC    ?= nvcc
BUILD   ?= build
OPT     ?= -O2
SAN     ?=
# Every object sees include/ and runtime/ (headers named by stage: "io/st.h").
# Only merge/ objects see merge/, only server/ and cli/ objects see server/:
# the include paths state the layering runtime <- merge, runtime <- server <- cli,
# and an include the wrong way fails to build. Tests see what they test.
CFLAGS  := -std=c11 -Wall -Wextra -Werror $(OPT) -g -fPIC -fopenmp -fvisibility=hidden -D_GNU_SOURCE \
           -Iinclude -Iruntime -MMD -MP $(SAN) $(EXTRA_CFLAGS)
LDFLAGS := -fopenmp $(SAN)
LDLIBS  := -lcjson -lpcre2-8 -lutf8proc -lm -lpthread
SRV_LIBS := -lmicrohttpd

# Kernel files named *_avx512.c / *_avx2.c get their ISA flags; the choice
# between them is made at run time, so one binary runs on any x86-64.
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mavx512vnni -mfma -mf16c
AVX2_FLAGS   := -mavx2 -mfma -mf16c

LIB_SRC   := $(wildcard runtime/*/*.c runtime/cpu/*/*.c)
MERGE_SRC := $(filter-out merge/main.c,$(wildcard merge/*.c))
SRV_SRC   := $(wildcard server/*.c)
CLI_SRC   := $(wildcard cli/*.c)
TOOL_SRC  := $(wildcard tools/*.c)
TEST_SRC  := $(wildcard tests/test_*.c)

ifeq ($(CUDA),1)
CFLAGS   += -DMS_CUDA
CUDA_HOME ?= /usr/local/cuda
CU_SRC   := $(wildcard runtime/cuda/*.cu)
ifeq ($(CU_SRC),)
$(error CUDA=1: there is no CUDA backend yet (runtime/cuda/ has no sources); build without CUDA=1 for the CPU backend)
endif
CU_OBJ   := $(CU_SRC:%.cu=$(BUILD)/%.o)
LDLIBS   += -L$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
NVFLAGS  := -O2 -std=c++17 -Iinclude -Iruntime -DMS_CUDA -Xcompiler -fPIC \
            -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=sm_80
endif

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CU_OBJ)
MERGE_OBJ := $(MERGE_SRC:%.c=$(BUILD)/%.o)
SRV_OBJ   := $(SRV_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
TOOLS     := $(TOOL_SRC:tools/%.c=$(BUILD)/tools/%)
TESTS     := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TESTS_MERGE  := $(filter $(BUILD)/tests/test_merge%,$(TESTS))
TESTS_SERVER := $(filter $(BUILD)/tests/test_server_%,$(TESTS))
TESTS_LIB    := $(filter-out $(TESTS_MERGE) $(TESTS_SERVER),$(TESTS))
STATIC    := $(BUILD)/libmedserve.a
SHARED    := $(BUILD)/libmedserve.so
# The project's own programs, tests and tools link the library's objects with
# their internal names; libmedserve.a and .so show only the MS_API functions.
INTERNAL  := $(BUILD)/libmedserve-internal.a
PROGS     := $(BUILD)/medserve $(BUILD)/lora-merge

.SECONDARY:
.PHONY: all tests test stress-test asan demo bench bench-load fuzz fuzz-corpus clean deps format format-check
all: $(STATIC) $(SHARED) $(INTERNAL) $(PROGS) $(TOOLS)

tests: all $(TESTS)

$(INTERNAL): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

# One relocatable object whose hidden (internal) symbols are made local, so a
# program linking libmedserve.a can define its own json_get or sha256.
$(STATIC): $(LIB_OBJ)
	@mkdir -p $(@D)
	ld -r -o $(BUILD)/libmedserve-all.o $^
	objcopy --localize-hidden $(BUILD)/libmedserve-all.o
	rm -f $@ && ar rcs $@ $(BUILD)/libmedserve-all.o

$(SHARED): $(LIB_OBJ)
	$(CC) -shared $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/medserve: $(CLI_OBJ) $(SRV_OBJ) $(INTERNAL)
	$(CC) $(LDFLAGS) -o $@ $^ $(SRV_LIBS) $(LDLIBS)

$(BUILD)/lora-merge: $(BUILD)/merge/main.o $(MERGE_OBJ) $(INTERNAL)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tools/%: $(BUILD)/tools/%.o $(INTERNAL)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(TESTS_LIB): $(BUILD)/tests/%: $(BUILD)/tests/%.o $(INTERNAL)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(TESTS_MERGE): $(BUILD)/tests/%: $(BUILD)/tests/%.o $(MERGE_OBJ) $(INTERNAL)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(TESTS_SERVER): $(BUILD)/tests/%: $(BUILD)/tests/%.o $(SRV_OBJ) $(INTERNAL)
	$(CC) $(LDFLAGS) -o $@ $^ $(SRV_LIBS) $(LDLIBS)

# Include paths beyond include/ and runtime/, per layer (see CFLAGS).
$(BUILD)/merge/%.o: LAYER_INC := -Imerge
$(BUILD)/server/%.o: LAYER_INC := -Iserver
$(BUILD)/cli/%.o: LAYER_INC := -Iserver
$(BUILD)/tests/test_merge%: LAYER_INC := -Imerge
$(BUILD)/tests/test_server_%: LAYER_INC := -Iserver

$(BUILD)/%_avx512.o: %_avx512.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LAYER_INC) $(AVX512_FLAGS) -c $< -o $@

$(BUILD)/%_avx2.o: %_avx2.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LAYER_INC) $(AVX2_FLAGS) -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LAYER_INC) -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -c $< -o $@

# The test command of the README: `make deps` installs what is missing (or
# names it), then the suite runs in a normal and an ASan+UBSan build.
test: deps
	@bash tests/run.sh

# The suites again and again beside CPU burners: a test that depends on timing
# or an idle machine fails here (tests/stress.sh; STRESS_RUNS, STRESS_ASAN).
stress-test: deps
	@bash tests/stress.sh

asan:
	$(MAKE) BUILD=build/asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" tests

demo: deps
	@$(MAKE) --no-print-directory all
	@bash tools/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@bash bench/run.sh

# The full soak (BENCH_LOAD_ARGS adds load.py options); the README table is rewritten
# from bench/load/results.json whether the run passed or not, and the status is load.py's.
bench-load: deps
	@$(MAKE) --no-print-directory all
	@python3 bench/load/load.py $(BENCH_LOAD_ARGS); rc=$$?; python3 bench/load/report.py; exit $$rc

# The one place that installs packages (apt-get, pip); test, demo and bench call it first.
deps:
	@bash tools/install-deps.sh

# libFuzzer targets (clang-14), each run FUZZ_SECONDS (default 60); tests/fuzz/run.sh.
fuzz:
	@bash tests/fuzz/run.sh

# Minimises the campaign's corpora into tests/fuzz/corpus/ (to commit).
fuzz-corpus:
	@bash tests/fuzz/save_corpus.sh

# The layout of .clang-format, checked by make test. The generated Unicode
# table keeps its generator's layout.
FORMAT_SRC = $(filter-out runtime/text/tok_unicode_hf.h,\
             $(shell find include runtime merge server cli tests tools bench -name '*.[ch]' | sort))
format-check:
	@clang-format --dry-run -Werror $(FORMAT_SRC) && echo "format-check: $(words $(FORMAT_SRC)) files match .clang-format"

format:
	clang-format -i $(FORMAT_SRC)

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
