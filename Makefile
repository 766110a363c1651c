# Real-time purchase analytics: Faker producer -> Kafka -> Spark Structured Streaming.
# `make` or `make help` lists the targets. Settings: the command line and the environment win over .env, which
# wins over the package's defaults (purchase_analytics/defaults.py, the one place they are written; printed
# by `python -m purchase_analytics.defaults`, which needs no installed package). Each line of both is read as
# `NAME ?= value`. Written to files of this make's own, then renamed over .cache/defaults.env (docker
# compose's --env-file too) and env.mk in one step: make commands started together each read whole files,
# never ones another make is still writing.
ENV_MK := .cache/env.mk
$(shell mkdir -p .cache && $${PYTHON:-python3} -m purchase_analytics.defaults > .cache/defaults.env.$$$$ \
  && sed -E 's/^([A-Za-z_][A-Za-z0-9_]*)=(.*)$$/\1 ?= \2/' .env .cache/defaults.env.$$$$ > $(ENV_MK).$$$$ \
  && mv -f .cache/defaults.env.$$$$ .cache/defaults.env && mv -f $(ENV_MK).$$$$ $(ENV_MK))
include $(ENV_MK)
export

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SPARK_VERSION := $(shell sed -n 's/^pyspark==//p' requirements.txt)
export SPARK_VERSION
JARS := .cache/jars
KAFKA_JARS_STAMP := $(JARS)/kafka/.kafka-$(KAFKA_VERSION)
SPARK_JARS_STAMP := $(JARS)/spark-kafka/.spark-$(SPARK_VERSION)
WIRE_JAR := $(JARS)/spark-kafka/purchase-analytics-wire.jar
FLINK_JARS_STAMP := $(FLINK_CONNECTOR_JARS_DIR)/.flink-kafka-$(FLINK_KAFKA_CONNECTOR_VERSION)
PEER_VENVS := .venv-quix/.installed .venv-flink/.installed
LOCAL := $(PY) -m purchase_analytics.runtime.local

# docker when an engine answers, otherwise local processes. `make run` and `make test` are always local.
RUNTIME ?= $(shell docker info >/dev/null 2>&1 && echo docker || echo local)
EVENTS ?=
DURATION ?=
ARGS ?=

.PHONY: help setup venv jars package run kafka spark spark-example spark-produce spark-consume-purchase \
        clean wipe status test test-durations test-bench test-unit lint chromium bench bench-peers class-archive \
        kafka-ui dashboard kafka-local spark-local spark-produce-local spark-consume-purchase-local clean-local wipe-local

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-30s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  runtime: $(RUNTIME) (set RUNTIME=local or RUNTIME=docker)"

# ---------------------------------------------------------------- setup
setup: venv jars package class-archive ## install everything missing: .venv, Kafka and connector jars, package zip, the Spark and Kafka JVMs' class archives

venv: $(VENV)/.installed ## create .venv: the pinned requirements (installed once per machine into the user's cache), and this project in editable mode
$(VENV)/.installed: requirements-dev.txt requirements.txt requirements-ui.txt pyproject.toml
	@command -v java >/dev/null || { echo "error: Java 17+ is required (java not found); install a JDK 17" >&2; exit 1; }
	@PYTHON=$(PYTHON) build/cached-venv.sh --editable $(VENV) $(filter %.txt,$^)

jars: $(KAFKA_JARS_STAMP) $(SPARK_JARS_STAMP) $(WIRE_JAR) ## fetch Apache Kafka and Spark's Kafka connector from Maven Central into .cache/jars, build the job's wire parser

# Fetched once per version into the user's cache (build/cached-jars.sh); .cache/jars gets a copy
# (Kafka's: a link, the one path its JVM class archive can name).
$(KAFKA_JARS_STAMP): build/kafka-pom.xml build/cached-jars.sh
	@build/cached-jars.sh --link $(JARS)/kafka build/kafka-pom.xml \
	  -Dkafka.version=$(KAFKA_VERSION) -Dscala.binary.version=$(SCALA_BINARY_VERSION) -Dlog4j.version=$(LOG4J_VERSION)
	@touch $@

$(SPARK_JARS_STAMP): build/spark-kafka-pom.xml requirements.txt build/cached-jars.sh
	@build/cached-jars.sh $(JARS)/spark-kafka build/spark-kafka-pom.xml \
	  -Dspark.version=$(SPARK_VERSION) -Dscala.binary.version=$(SCALA_BINARY_VERSION) \
	  -DincludeArtifactIds=spark-sql-kafka-0-10_$(SCALA_BINARY_VERSION),spark-token-provider-kafka-0-10_$(SCALA_BINARY_VERSION),kafka-clients,commons-pool2
	@touch $@

# The job's JVM classes (jvm/): the wire parser (transform.parse_events' fast path) and the local
# file system of its checkpoints (checkpoint.py), compiled against pyspark's own jars and put
# beside the connector, so they travel with it (spark.jars, the Docker image).
$(WIRE_JAR): $(wildcard jvm/src/purchase_analytics/*.java) $(SPARK_JARS_STAMP) $(VENV)/.installed build/wire-jar.sh
	@build/wire-jar.sh $@ $(PY) $(filter %.java,$^)

class-archive: venv jars ## the Spark and Kafka JVMs' class archives: built once per installed version and JDK into the user's cache
	@$(PY) -m purchase_analytics.runtime.class_archive

package: $(PACKAGE_ZIP) ## zip the purchase_analytics package for Spark executors (--py-files)
$(PACKAGE_ZIP): $(VENV)/.installed $(shell find purchase_analytics -name '*.py')
	@mkdir -p $(dir $@)
	@$(PY) -c "import zipfile, pathlib; z = zipfile.ZipFile('$@', 'w'); [z.write(p) for p in sorted(pathlib.Path('purchase_analytics').rglob('*.py'))]; z.close()"

# ---------------------------------------------------------------- the main job
run: setup ## broker + Kafka UI + dashboard + producer + Spark job locally, no Docker; EVENTS=N or DURATION=S stop by themselves; Ctrl-C stops all
	@echo "runtime: local (make run always runs local processes)"
	@$(LOCAL) run $(if $(EVENTS),--events $(EVENTS)) $(if $(DURATION),--duration $(DURATION)) $(ARGS)

# ---------------------------------------------------------------- users' targets, per runtime
kafka: kafka-$(RUNTIME) ## start Kafka (local JVM or compose), create the topics, start the Kafka UI; returns when ready (KAFKA_SECURITY=sasl_ssl, KAFKA_BROKERS=3)
spark: spark-$(RUNTIME) ## start a Spark standalone master and worker
spark-produce: spark-produce-$(RUNTIME) ## run the producer (EVENTS=N to stop after N; ARGS="--rate 100 ...")
spark-consume-purchase: spark-consume-purchase-$(RUNTIME) ## run the Spark aggregator (ARGS="--available-now --output-dir DIR ...")
# `make run` is always local: clean and wipe stop (and delete) its processes in either runtime.
clean: clean-local $(if $(filter docker,$(RUNTIME)),clean-docker) ## stop everything the targets and make run started (data is kept)
wipe: wipe-local $(if $(filter docker,$(RUNTIME)),wipe-docker) ## clean, then delete broker data, checkpoints and results (OUTPUT_DIR's batch files, RESULTS_DB)

kafka-local: setup
	@echo "runtime: local"
	@$(LOCAL) kafka-start

spark-local: setup
	@echo "runtime: local"
	@$(LOCAL) spark-start

# KAFKA_SECURITY=sasl_ssl: the producer and the job log in as their own users of the secured local broker
client-env = $(if $(filter sasl_ssl,$(KAFKA_SECURITY)),f="$$($(LOCAL) client-env $(1))" && set -a && . "$$f" && set +a &&)

spark-produce-local: setup
	@$(call client-env,producer) $(PY) scripts/event_producer.py $(if $(EVENTS),--count $(EVENTS)) $(ARGS)

spark-consume-purchase-local: setup
	@$(call client-env,job) $(PY) spark-scripts/purchase-aggregator.py --master "$$($(LOCAL) spark-master-url)" $(ARGS)

clean-local:
	@test -x $(PY) && $(LOCAL) stop-all || true

wipe-local:
	@test -x $(PY) && $(LOCAL) wipe || rm -rf .data

kafka-ui: setup ## start only the Kafka UI (kaskade in the browser) on 127.0.0.1:KAFKA_UI_PORT (8083), against the running broker
	@$(LOCAL) kafka-ui-start

dashboard: setup ## serve the live dashboard of the windows on 127.0.0.1:DASHBOARD_PORT (8084; reads Kafka only)
	@$(LOCAL) dashboard-start

status: ## show what is running (local runtime)
	@$(LOCAL) status

spark-example: setup ## smoke job: Spark + the window transformation on in-memory rows
	@$(PY) spark-scripts/spark-example.py

# ---------------------------------------------------------------- quality
# Three workers keep two cores busy: the tests wait on brokers and micro-batches a good part of the
# time (measured with build/cpu-time.sh: two workers left a quarter of the cores idle). TEST_WORKERS=N to change.
TEST_WORKERS ?= 3
PYTEST_WORKERS := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

# Each run prints its ten longest tests, its wall time and the machine's CPU time (build/cpu-time.sh),
# and keeps every test's seconds in .cache/test-durations.json: the next run hands out the longest first.
test: setup compose-plugin-or-skip chromium ## unit + integration + browser tests (real Kafka broker, real Spark, headless Chromium), compose files validated; not the benchmark's
	build/cpu-time.sh $(PYTEST_WORKERS) --durations=10 -m "not bench" tests

test-durations: ## keep the last run's test durations (.cache/test-durations.json) as a fresh clone's schedule (tests/durations.json)
	cp .cache/test-durations.json tests/durations.json

test-bench: setup bench-peers ## the benchmark's own tests: its harness end to end on tiny inputs (python -m bench --smoke) and its peers
	$(PYTEST_WORKERS) -m bench tests

# Installs nothing: the browser tests skip themselves without a browser (.ci/run installs it with apt).
chromium: ## say whether Debian's chromium and chromium-driver, which the browser tests drive, are installed
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || echo "note: chromium and chromium-driver \
	are missing, so the browser tests will be skipped; to run them: apt-get install chromium chromium-driver (as root)" >&2

test-unit: setup ## only the tests that start no broker and no command-line job (Spark only for static DataFrames)
	$(PY) -m pytest -q tests -m "not kafka and not slow"

lint: venv ## ruff: the linter and the format check (settings in pyproject.toml)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The benchmark's Spark driver and broker run with its own JVM options (BENCH_*_JAVA_OPTIONS in .env).
bench: setup bench-peers ## benchmark: Kafka's perf tools, producer, Spark job, latency, baseline, peers; table + JSON in results/
	SPARK_DRIVER_JAVA_OPTIONS="$(BENCH_SPARK_DRIVER_JAVA_OPTIONS)" KAFKA_BROKER_JAVA_OPTIONS="$(BENCH_KAFKA_BROKER_JAVA_OPTIONS)" \
	  $(PY) -m bench $(ARGS)

bench-peers: $(PEER_VENVS) $(FLINK_JARS_STAMP) ## the benchmark's peers: Quix Streams (.venv-quix), Flink SQL (.venv-flink) and Flink's Kafka connector

# Each peer in its own venv (their pins clash with pyspark's and the dev tools'), installed once
# per set of requirements into the user's cache and shared by every checkout; the checkout's
# venv puts those packages and the project on its path (build/cached-venv.sh).
.venv-quix/.installed: requirements-bench.txt requirements.txt
.venv-flink/.installed: requirements-flink.txt requirements.txt
$(PEER_VENVS):
	@PYTHON=$(PYTHON) build/cached-venv.sh $(@D) $^

$(FLINK_JARS_STAMP): build/flink-kafka-pom.xml build/cached-jars.sh
	@build/cached-jars.sh $(FLINK_CONNECTOR_JARS_DIR) build/flink-kafka-pom.xml -Dflink.kafka.version=$(FLINK_KAFKA_CONNECTOR_VERSION)
	@touch $@

-include docker/docker.mk
-include docker-without-registry/without-registry.mk
