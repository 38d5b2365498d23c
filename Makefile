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

export TOOLS_DIR KAFKA_PORT ORDER_GENERATOR_RATE PROFILE

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

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: lint
lint: ## cargo fmt --check and clippy with warnings denied
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: clean
clean: ## Remove build output, local-run state and installed tools
	$(CARGO) clean
	rm -rf .run .tools
