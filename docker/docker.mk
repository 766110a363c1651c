# The Docker runtime (RUNTIME=docker). Included by the top Makefile, which exports
# every setting (.env's and the package's defaults, .cache/defaults.env), SPARK_VERSION (from requirements.txt), PY, ARGS and EVENTS, and
# defines the `jars` and `package` targets used here. See docs/docker.md.

# KAFKA_UI_LOCAL=1 runs the local runtime's Kafka UI (kaskade, WEB_IMAGE) as the kafka-ui service,
# for machines where KAFKA_UI_IMAGE cannot be pulled (make test-docker sets it then).
KAFKA_UI_LOCAL ?= 0
COMPOSE_FILES := -f docker/docker-compose-kafka.yml -f docker/docker-compose-spark.yml \
	$(if $(filter 1,$(KAFKA_UI_LOCAL)),-f docker/docker-compose-kafka-ui-local.yml)
# Variants (docs/cluster.md): KAFKA_SECURITY=sasl_ssl (SASL_SSL, mutual TLS, ACLs; one or the
# other) or KAFKA_BROKERS=3 (three brokers, replication factor 3, min.insync.replicas=2).
COMPOSE_FILES += $(if $(filter sasl_ssl,$(KAFKA_SECURITY)),-f docker/compose-kafka-sasl-ssl.yml)
COMPOSE_FILES += $(if $(filter 3,$(KAFKA_BROKERS)),-f docker/compose-kafka-cluster.yml)
KAFKA_TLS_DIR ?= $(CURDIR)/.data/kafka-docker/tls
# One compose project over both files: one network, and `down` removes everything. The package's
# defaults first (the Makefile writes them at every start), .env's values over them.
COMPOSE = docker compose --env-file .cache/defaults.env --env-file .env $(COMPOSE_FILES)

# The broker's host listener uses the port of KAFKA_BOOTSTRAP_SERVERS (localhost:9092).
KAFKA_HOST_PORT ?= $(lastword $(subst :, ,$(KAFKA_BOOTSTRAP_SERVERS)))
export KAFKA_HOST_PORT
KAFKA_2_HOST_PORT := $(shell echo $$(($(KAFKA_HOST_PORT) + $(KAFKA_CLUSTER_PORT_STEP))))
KAFKA_3_HOST_PORT := $(shell echo $$(($(KAFKA_HOST_PORT) + 2 * $(KAFKA_CLUSTER_PORT_STEP))))
export KAFKA_2_HOST_PORT KAFKA_3_HOST_PORT KAFKA_TLS_DIR
# KAFKA_UI=0 leaves Kafka UI out (make test-docker does: no registry serves it here).
KAFKA_UI ?= 1
# DASHBOARD=0 leaves the dashboard service out of make kafka.
DASHBOARD ?= 1
# -T for `compose exec`/`run` unless make runs on a terminal (so Ctrl-C reaches the process).
COMPOSE_TTY = $(shell [ -t 0 ] || echo -T)

# The producer's and the job's settings: every name written in .env or the package's defaults reaches the
# process make starts in a container (`compose run/exec -e NAME`), with the value make has for it: .env's
# or the default, or the environment's or make's command line, which win over them, as in the local runtime. Read at every
# run: an edit of .env counts at the next one, without restarting a container. Except the values the
# containers must keep their own, which the compose files set: addresses and paths, the driver UI,
# the JDK and its class archive, and Kafka's client security (the secured variant's logins).
CONTAINER_OWN_SETTINGS := KAFKA_BOOTSTRAP_SERVERS SPARK_MASTER_URL CHECKPOINT_DIR PACKAGE_ZIP SPARK_CONNECTOR_JARS_DIR \
	SPARK_UI_ENABLED SPARK_JAVA_HOME SPARK_CLASS_ARCHIVE KAFKA_SECURITY_PROTOCOL KAFKA_SASL_MECHANISM KAFKA_SASL_USERNAME \
	KAFKA_SASL_PASSWORD_FILE KAFKA_SSL_CA_LOCATION KAFKA_SSL_CERT_LOCATION KAFKA_SSL_KEY_LOCATION
DOT_ENV_SETTINGS := $(shell sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' .env .cache/defaults.env | sort -u)
CONTAINER_SETTINGS := $(filter-out $(CONTAINER_OWN_SETTINGS),$(DOT_ENV_SETTINGS))
# compose takes each value from make's environment (the Makefile exports every setting).
CONTAINER_SETTINGS_FLAGS = $(CONTAINER_SETTINGS:%=-e %)

SPARK_IN_NETWORK_MASTER := spark://spark-master:7077
KAFKA_IN_NETWORK_BOOTSTRAP := kafka:19092

.PHONY: docker-check docker-images spark-image kafka-image web-image \
	kafka-docker spark-docker spark-produce-docker spark-consume-purchase-docker clean-docker wipe-docker

docker-check:
	@docker compose version >/dev/null 2>&1 || { echo "docker compose (v2) is missing: run 'make compose-plugin'"; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "no Docker engine answers: start Docker (without systemd: 'make dockerd-start')"; exit 1; }

# Images named LOCAL_* in .env are built here where no image registry answers (debootstrap
# base, Kafka from Maven jars: docker-without-registry/); the others are pulled by docker.
docker-images: spark-image kafka-image $(if $(filter 1,$(DASHBOARD) $(KAFKA_UI_LOCAL)),web-image) ## build the images this configuration needs (cached by their inputs)

spark-image: docker-check jars
	@if [ "$(SPARK_BASE_IMAGE)" = "$(LOCAL_BASE_IMAGE)" ]; then docker/images.sh base $(LOCAL_BASE_IMAGE); fi
	@docker/images.sh spark $(SPARK_IMAGE) $(SPARK_BASE_IMAGE)

kafka-image: docker-check $(if $(filter $(LOCAL_KAFKA_IMAGE),$(KAFKA_IMAGE)),jars)
	@if [ "$(KAFKA_IMAGE)" = "$(LOCAL_KAFKA_IMAGE)" ]; then \
		docker/images.sh base $(LOCAL_BASE_IMAGE) && \
		docker/images.sh kafka $(LOCAL_KAFKA_IMAGE) $(LOCAL_BASE_IMAGE); fi

web-image: docker-check ## build the Kafka UI (kaskade) + dashboard image WEB_IMAGE from SPARK_BASE_IMAGE
	@if [ "$(SPARK_BASE_IMAGE)" = "$(LOCAL_BASE_IMAGE)" ]; then docker/images.sh base $(LOCAL_BASE_IMAGE); fi
	@docker/images.sh web $(WEB_IMAGE) $(SPARK_BASE_IMAGE)

kafka-docker: kafka-image $(if $(filter 1,$(DASHBOARD) $(KAFKA_UI_LOCAL)),web-image) ## docker: start Kafka (KRaft), create the topics, start Kafka UI and the dashboard (KAFKA_UI=0, DASHBOARD=0: without)
	$(if $(filter sasl_ssl,$(KAFKA_SECURITY)),@$(LOCAL) docker-tls)
	$(if $(filter sasl_ssl,$(KAFKA_SECURITY)),@export KAFKA_UI_SASL_PASSWORD="$$(cat $(KAFKA_TLS_DIR)/users/ui.password)";) \
	$(COMPOSE) up -d --wait kafka $(if $(filter 3,$(KAFKA_BROKERS)),kafka-2 kafka-3) $(if $(filter 1,$(KAFKA_UI)),kafka-ui) $(if $(filter 1,$(DASHBOARD)),dashboard)
	$(COMPOSE) run --rm kafka-init
	@echo "Kafka: $(KAFKA_IN_NETWORK_BOOTSTRAP) on $(DOCKER_NETWORK), localhost:$(KAFKA_HOST_PORT) from the host"
	@$(if $(filter 1,$(KAFKA_UI)),echo "Kafka UI$(if $(filter 1,$(KAFKA_UI_LOCAL)), (kaskade)): http://$(BIND_ADDRESS):$(KAFKA_UI_PORT)",echo "Kafka UI left out (KAFKA_UI=$(KAFKA_UI))")
	@$(if $(filter 1,$(DASHBOARD)),echo "Dashboard: http://$(BIND_ADDRESS):$(DASHBOARD_PORT)",echo "Dashboard left out (DASHBOARD=$(DASHBOARD))")

spark-docker: spark-image ## docker: start the Spark master and SPARK_WORKERS workers
	$(COMPOSE) up -d --wait --no-build --scale spark-worker=$(SPARK_WORKERS) spark-master spark-worker
	@$(COMPOSE) exec -T spark-master python -c "$$SPARK_WAIT_FOR_WORKERS" $(SPARK_WORKERS)
	@echo "Spark master: $(SPARK_IN_NETWORK_MASTER), UI http://$(BIND_ADDRESS):$(SPARK_MASTER_UI_PORT)"

spark-produce-docker: docker-check ## docker: run the event producer in a container (EVENTS=N for a bounded run, ARGS=...)
	$(info spark-producer: $(strip python /opt/app/scripts/event_producer.py --bootstrap-servers $(KAFKA_IN_NETWORK_BOOTSTRAP) \
		$(if $(EVENTS),--count $(EVENTS)) $(ARGS)) (-e for the $(words $(CONTAINER_SETTINGS)) settings of .env but the container's own))
	@$(COMPOSE) run --rm --no-deps $(COMPOSE_TTY) $(CONTAINER_SETTINGS_FLAGS) spark-producer \
		python /opt/app/scripts/event_producer.py --bootstrap-servers $(KAFKA_IN_NETWORK_BOOTSTRAP) \
		$(if $(EVENTS),--count $(EVENTS)) $(ARGS)

# The job runs as in the local runtime (python, whose pyspark starts the driver JVM with the
# settings' memory and options), in the master's container, on the standalone master.
spark-consume-purchase-docker: docker-check package ## docker: run the aggregator in the master's container, on spark://spark-master:7077 (ARGS=...)
	$(info spark-master: $(strip python /opt/app/spark-scripts/purchase-aggregator.py --master $(SPARK_IN_NETWORK_MASTER) \
		--bootstrap-servers $(KAFKA_IN_NETWORK_BOOTSTRAP) $(ARGS)) (-e for the $(words $(CONTAINER_SETTINGS)) settings of .env but the container's own))
	@$(COMPOSE) exec $(COMPOSE_TTY) $(CONTAINER_SETTINGS_FLAGS) spark-master \
		python /opt/app/spark-scripts/purchase-aggregator.py \
		--master $(SPARK_IN_NETWORK_MASTER) --bootstrap-servers $(KAFKA_IN_NETWORK_BOOTSTRAP) $(ARGS)

clean-docker: ## docker: remove the containers (Kafka UI included) and the network; volumes stay
	@if docker info >/dev/null 2>&1; then $(COMPOSE) --profile '*' down --remove-orphans; \
	else echo "no Docker engine answers: nothing to clean"; fi

wipe-docker: ## docker: like clean-docker, and remove the volumes (Kafka data, checkpoints)
	@if docker info >/dev/null 2>&1; then $(COMPOSE) --profile '*' down --remove-orphans --volumes; \
	else echo "no Docker engine answers: nothing to wipe"; fi

# Waits (60 s at most) until the master's JSON API lists argv[1] alive workers.
define SPARK_WAIT_FOR_WORKERS
import json, sys, time, urllib.request
want, deadline, alive = int(sys.argv[1]), time.time() + 60, 0
while time.time() < deadline:
    state = json.load(urllib.request.urlopen("http://localhost:8080/json/", timeout=5))
    alive = state.get("aliveworkers", 0)
    if alive >= want:
        print(f"{alive} Spark worker(s) registered, {state.get('cores')} cores")
        sys.exit(0)
    time.sleep(1)
sys.exit(f"only {alive} of {want} Spark workers registered after 60 s")
endef
export SPARK_WAIT_FOR_WORKERS
