# Kafka microservices on Kubernetes: build, run, test and deploy.
# `make help` lists the targets. Every variable below can be overridden: `make run KAFKA_PORT=19092`.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Settings (override on the command line)
CARGO ?= cargo
TOOLS_DIR ?= $(CURDIR)/.tools
KAFKA_PORT ?= 9092
ORDER_GENERATOR_RATE ?= 2
PROFILE ?= dev

# Kubernetes (make kind-up and friends)
CLUSTER_NAME ?= kafka-microservices
NAMESPACE ?= kafka-demo
RELEASE ?= kafka-microservices
CHART ?= charts/kafka-microservices
KAFKA_PROFILE ?= dev
# plaintext (quick demo), scram (SCRAM-SHA-512 over TLS) or mtls (client certificates): the Kafka
# listeners (k8s/kafka/security/) and the chart's KafkaUsers and client settings follow it.
SECURITY ?= plaintext
KAFKA_DIR = $(if $(filter plaintext,$(SECURITY)),k8s/kafka/$(KAFKA_PROFILE),k8s/kafka/security/$(KAFKA_PROFILE)-$(SECURITY))
STRIMZI_VERSION ?= 1.2.0
STRIMZI_CHART ?= oci://quay.io/strimzi-helm/strimzi-kafka-operator
CNPG_VERSION ?= 1.30.0
CNPG_MANIFEST ?= https://raw.githubusercontent.com/cloudnative-pg/cloudnative-pg/release-$(basename $(CNPG_VERSION))/releases/cnpg-$(CNPG_VERSION).yaml
SERVICES ?= order payment notification inventory stream-processor accounts sensor alerting dashboard loadgen kafka-console
IMAGE_REPOSITORY ?= kafka-microservices
IMAGE_TAG ?= dev-$(shell git rev-parse --short HEAD 2>/dev/null || echo local)
REPLICAS ?= 3
SERVICE ?=
DOCKER ?= docker
KIND ?= kind
KUBECTL ?= kubectl
HELM ?= helm
KAFKA_READY_TIMEOUT ?= 900s
LOAD_RATE ?= 100
LOAD_COUNT ?= 2000

export TOOLS_DIR KAFKA_PORT ORDER_GENERATOR_RATE PROFILE NAMESPACE

comma := ,
step = @printf '\033[1m==> %s\033[0m\n' "$(1)"
HA_VALUES = $(if $(filter ha,$(KAFKA_PROFILE)),--values k8s/kafka/ha/values.yaml,)

##@ General

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m [VAR=value ...]\n"} \
	  /^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Local

.PHONY: run
run: ## Run the whole system locally: broker, topics, every service, order generator (Ctrl-C stops)
	scripts/run-local.sh

.PHONY: load
load: ## Send LOAD_COUNT orders at LOAD_RATE/s (0: as fast as possible) to `make run` and print the report
	$(CARGO) run --release --quiet -p loadgen -- --rate $(LOAD_RATE) --count $(LOAD_COUNT)

.PHONY: build
build: ## Build every service binary
	$(CARGO) build --workspace --bins --profile $(PROFILE)

.PHONY: tools
tools: ## Install the pinned tools (broker, helm, kubectl, checkers) into .tools/
	scripts/install-tools.sh all

##@ Checks

.PHONY: test
test: ## Everything CI runs: formatting, lints, unit and system tests, chart checks
	scripts/test.sh

.PHONY: bench
bench: ## Benchmarks (not tests): order flow and sensor path, scaling, memory and CPU; tables + target/bench/*.json
	$(CARGO) bench -p system-tests --bench flow
	$(CARGO) bench -p system-tests --bench sensors

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: lint
lint: ## cargo fmt --check and clippy with warnings denied
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: topology
topology: ## Rewrite the chart's copy of the topology table (charts/*/files/topology.json) from crates/events
	UPDATE_TOPOLOGY=1 $(CARGO) test -p system-tests --test topology the_charts_copy_of_the_table_is_current

.PHONY: chart-check
chart-check: ## Offline checks of the chart, k8s/ and the Dockerfile (lint, schemas, checkov, hadolint)
	scripts/chart-check.sh

##@ Kubernetes (kind)

.PHONY: prereqs
prereqs: ## Check that docker, kind, kubectl and helm are installed
	@missing=""; \
	for t in "$(DOCKER):Docker 24+ (https://docs.docker.com/get-docker/)" \
	         "$(KIND):kind 0.30+ (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)" \
	         "$(KUBECTL):kubectl 1.32+ (https://kubernetes.io/docs/tasks/tools/)" \
	         "$(HELM):Helm 3.16+ (https://helm.sh/docs/intro/install/)"; do \
	  command -v "$${t%%:*}" >/dev/null 2>&1 || missing="$$missing\n  - $${t#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  printf 'kind-up needs these tools, which are not on PATH; install them and run it again:%b\n' "$$missing" >&2; \
	  exit 1; \
	fi; \
	$(DOCKER) info >/dev/null 2>&1 || { echo "docker is installed but its daemon does not answer: start Docker" >&2; exit 1; }

.PHONY: kind-up
kind-up: prereqs cluster strimzi cnpg kafka jaeger-install images deploy ## Create the kind cluster and install Strimzi, CloudNativePG, Kafka, Jaeger and the services
	$(call step,ready)
	@$(MAKE) -s urls

.PHONY: cluster
cluster: ## Create the kind cluster (idempotent) and the namespace
	$(call step,kind cluster $(CLUSTER_NAME))
	@if $(KIND) get clusters 2>/dev/null | grep -qx '$(CLUSTER_NAME)'; then \
	  echo "cluster $(CLUSTER_NAME) exists"; \
	else \
	  $(KIND) create cluster --name $(CLUSTER_NAME) --config k8s/kind-config.yaml --wait 120s \
	    || { echo "cluster: kind could not create the cluster (is Docker running with 8 GiB of memory?)" >&2; exit 1; }; \
	fi
	@$(KUBECTL) config use-context kind-$(CLUSTER_NAME) >/dev/null
	@$(KUBECTL) create namespace $(NAMESPACE) --dry-run=client -o yaml | $(KUBECTL) apply -f - >/dev/null

.PHONY: strimzi
strimzi: ## Install the Strimzi operator at STRIMZI_VERSION and wait for its CRDs
	$(call step,Strimzi operator $(STRIMZI_VERSION))
	$(HELM) upgrade --install strimzi $(STRIMZI_CHART) --version $(STRIMZI_VERSION) \
	  --namespace $(NAMESPACE) --wait --timeout 5m \
	  || { echo "strimzi: the operator did not install (kubectl -n $(NAMESPACE) get pods)" >&2; exit 1; }
	$(call step,waiting for the Strimzi CRDs to be established)
	$(KUBECTL) wait --for condition=established --timeout=120s \
	  crd/kafkas.kafka.strimzi.io crd/kafkanodepools.kafka.strimzi.io \
	  crd/kafkatopics.kafka.strimzi.io crd/kafkausers.kafka.strimzi.io \
	  || { echo "strimzi: CRDs not established; kubectl get crd | grep strimzi" >&2; exit 1; }

.PHONY: cnpg
cnpg: ## Install the CloudNativePG operator at CNPG_VERSION (PostgreSQL for accounts) and wait for it
	$(call step,CloudNativePG operator $(CNPG_VERSION))
	$(KUBECTL) apply --server-side -f $(CNPG_MANIFEST) >/dev/null \
	  || { echo "cnpg: could not apply $(CNPG_MANIFEST)" >&2; exit 1; }
	$(KUBECTL) rollout status deployment/cnpg-controller-manager --namespace cnpg-system --timeout=180s \
	  || { echo "cnpg: the operator is not ready; kubectl -n cnpg-system get pods" >&2; exit 1; }

.PHONY: kafka
kafka: ## Create the Kafka cluster (KAFKA_PROFILE=dev: 1 node, ha: 3 nodes; SECURITY=plaintext|scram|mtls) and wait until it is Ready
	@case "$(SECURITY)" in plaintext|scram|mtls) ;; *) echo "SECURITY=$(SECURITY): expected plaintext, scram or mtls" >&2; exit 2 ;; esac
	$(call step,Kafka ($(KAFKA_PROFILE) profile, $(SECURITY)))
	$(KUBECTL) apply --namespace $(NAMESPACE) -k $(KAFKA_DIR)
	$(call step,waiting up to $(KAFKA_READY_TIMEOUT) for Kafka to be Ready (the first start pulls images))
	$(KUBECTL) wait kafka/events --namespace $(NAMESPACE) --for=condition=Ready --timeout=$(KAFKA_READY_TIMEOUT) \
	  || { echo "kafka: not Ready; kubectl -n $(NAMESPACE) describe kafka/events; kubectl -n $(NAMESPACE) get pods" >&2; exit 1; }

.PHONY: jaeger-install
jaeger-install: ## Install Jaeger v2 (all-in-one, in memory) and wait for it
	$(call step,Jaeger)
	$(KUBECTL) apply --namespace $(NAMESPACE) -f k8s/jaeger/jaeger.yaml
	$(KUBECTL) rollout status deployment/jaeger --namespace $(NAMESPACE) --timeout=180s \
	  || { echo "jaeger: not ready; kubectl -n $(NAMESPACE) describe deployment/jaeger" >&2; exit 1; }

.PHONY: images
images: ## Build one image per service and load them into kind
	@for s in $(SERVICES); do \
	  printf '\033[1m==> image %s\033[0m\n' "$(IMAGE_REPOSITORY)/$$s:$(IMAGE_TAG)"; \
	  $(DOCKER) build --build-arg SERVICE=$$s -t $(IMAGE_REPOSITORY)/$$s:$(IMAGE_TAG) . \
	    || { echo "images: docker build of $$s failed" >&2; exit 1; }; \
	done
	@if $(KIND) get clusters 2>/dev/null | grep -qx '$(CLUSTER_NAME)'; then \
	  for s in $(SERVICES); do \
	    printf '\033[1m==> loading %s into kind\033[0m\n' "$$s"; \
	    $(KIND) load docker-image $(IMAGE_REPOSITORY)/$$s:$(IMAGE_TAG) --name $(CLUSTER_NAME) \
	      || { echo "images: kind load of $$s failed" >&2; exit 1; }; \
	  done; \
	fi

.PHONY: deploy
deploy: ## helm upgrade --install the services (and their KafkaTopics), waiting until they are ready
	$(call step,helm release $(RELEASE) ($(IMAGE_REPOSITORY)/*:$(IMAGE_TAG)))
	$(HELM) upgrade --install $(RELEASE) $(CHART) --namespace $(NAMESPACE) \
	  --values k8s/kind-values.yaml $(HA_VALUES) --set kafka.security.mode=$(SECURITY) \
	  --set image.repository=$(IMAGE_REPOSITORY) --set image.tag=$(IMAGE_TAG) \
	  --wait --timeout 10m \
	  || { echo "deploy: not ready in time; kubectl -n $(NAMESPACE) get pods; make logs" >&2; exit 1; }
	$(HELM) test $(RELEASE) --namespace $(NAMESPACE) --logs

.PHONY: load-k8s
load-k8s: ## Run the load generator as a Job in the cluster (LOAD_RATE, LOAD_COUNT) and print its report
	$(call step,load run: $(LOAD_COUNT) orders at $(LOAD_RATE)/s)
	$(HELM) upgrade $(RELEASE) $(CHART) --namespace $(NAMESPACE) --reuse-values \
	  --set loadgen.enabled=true --set loadgen.rate=$(LOAD_RATE) --set loadgen.count=$(LOAD_COUNT)
	@job=$$($(KUBECTL) get jobs --namespace $(NAMESPACE) -l app.kubernetes.io/name=loadgen \
	  --sort-by=.metadata.creationTimestamp -o name | tail -n 1); \
	echo "waiting for $$job"; \
	$(KUBECTL) wait --namespace $(NAMESPACE) --for=condition=complete --timeout=30m $$job \
	  || echo "load-k8s: $$job did not complete (lost orders make it fail); its log follows" >&2; \
	$(KUBECTL) logs --namespace $(NAMESPACE) $$job

.PHONY: urls
urls: ## Print where everything is
	@printf '\n  Order API     http://localhost:8080/orders\n'
	@printf '  Notifications http://localhost:8082/notifications\n'
	@printf '  Stock         http://localhost:8083/stock\n'
	@printf '  Processor     http://localhost:8084/state/<key>\n'
	@printf '  Accounts      http://localhost:8085/   (register and log in)\n'
	@printf '  Sensors       http://localhost:8090/   (the live dashboard; sensor API on localhost:8086)\n'
	@printf '%s\n' "  Hot reading   curl -sX POST localhost:8086/readings -H 'content-type: application/json' \\" \
	  "                  -d '{\"sensor_id\":999,\"temperature\":35.5,\"humidity\":40}'"
	@printf '  Kafka         localhost:9092   (kafka-console -b localhost:9092 topics list)\n'
	@printf '  Jaeger UI     http://localhost:16686   (make jaeger)\n\n'
	@printf '  make scale-payment REPLICAS=3   watch the payment group take the partitions over\n'
	@printf '  make logs SERVICE=payment       follow one service\n\n'

.PHONY: scale-payment
scale-payment: ## Scale payment to REPLICAS and show how the orders partitions move
	$(call step,scaling payment to $(REPLICAS))
	$(KUBECTL) scale deployment payment --namespace $(NAMESPACE) --replicas=$(REPLICAS)
	$(KUBECTL) rollout status deployment/payment --namespace $(NAMESPACE) --timeout=180s
	@$(KUBECTL) logs --namespace $(NAMESPACE) -l app.kubernetes.io/name=payment --prefix --tail=-1 \
	  | grep -E 'partitions (assigned|revoked)' | tail -n 20

.PHONY: jaeger
jaeger: ## Open the Jaeger UI
	@url=http://localhost:16686; echo "Jaeger UI: $$url (search service 'order', operation 'POST /orders')"; \
	( command -v xdg-open >/dev/null && xdg-open $$url ) || ( command -v open >/dev/null && open $$url ) || true

.PHONY: logs
logs: ## Follow the services' logs (SERVICE=payment for one)
	$(KUBECTL) logs --namespace $(NAMESPACE) --prefix --follow --max-log-requests 30 \
	  -l app.kubernetes.io/instance=$(RELEASE)$(if $(SERVICE),$(comma)app.kubernetes.io/name=$(SERVICE),)

.PHONY: kind-down
kind-down: ## Delete the kind cluster and everything in it
	$(call step,deleting kind cluster $(CLUSTER_NAME))
	$(KIND) delete cluster --name $(CLUSTER_NAME)

##@ Maintenance

.PHONY: clean
clean: ## Remove build output, local-run state and installed tools
	$(CARGO) clean
	rm -rf .run .tools
