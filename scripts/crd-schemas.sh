#!/usr/bin/env bash
# Regenerates the custom-resource schemas in k8s/schemas/<group>/ from the upstream CRDs at the
# versions pinned below, with scripts/crd2schema.py. The output is deterministic: regenerating at
# the same versions changes nothing (git diff shows what a version bump changes).
#
#   scripts/crd-schemas.sh          download the pinned upstream CRD files (needs GitHub access)
#   scripts/crd-schemas.sh DIR      use CRD YAML files already in DIR (found by file name)
#
# The kind cluster config schema (k8s/schemas/kind.x-k8s.io/) is written by hand: kind has no CRD.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# --- pins (one place; k8s/schemas/README.md lists them with their licences) ----------------------
STRIMZI_VERSION="1.2.0"
KEDA_VERSION="v2.20.2"
PROMETHEUS_OPERATOR_VERSION="v0.93.0"
CLOUDNATIVE_PG_VERSION="v1.30.0"
GH="https://raw.githubusercontent.com"
CRDS=(
  "$GH/strimzi/strimzi-kafka-operator/$STRIMZI_VERSION/install/cluster-operator/040-Crd-kafka.yaml"
  "$GH/strimzi/strimzi-kafka-operator/$STRIMZI_VERSION/install/cluster-operator/043-Crd-kafkatopic.yaml"
  "$GH/strimzi/strimzi-kafka-operator/$STRIMZI_VERSION/install/cluster-operator/044-Crd-kafkauser.yaml"
  "$GH/strimzi/strimzi-kafka-operator/$STRIMZI_VERSION/install/cluster-operator/045-Crd-kafkanodepool.yaml"
  "$GH/kedacore/keda/$KEDA_VERSION/config/crd/bases/keda.sh_scaledobjects.yaml"
  "$GH/kedacore/keda/$KEDA_VERSION/config/crd/bases/keda.sh_triggerauthentications.yaml"
  "$GH/prometheus-operator/prometheus-operator/$PROMETHEUS_OPERATOR_VERSION/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"
  "$GH/prometheus-operator/prometheus-operator/$PROMETHEUS_OPERATOR_VERSION/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"
  "$GH/cloudnative-pg/cloudnative-pg/$CLOUDNATIVE_PG_VERSION/config/crd/bases/postgresql.cnpg.io_clusters.yaml"
)
# -------------------------------------------------------------------------------------------------

die() { printf 'crd-schemas: %s\n' "$*" >&2; exit 1; }
scripts/install-tools.sh k8s >/dev/null
PY="${TOOLS_DIR:-$ROOT/.tools}/venv/bin/python"

tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
files=()
for url in "${CRDS[@]}"; do
  name="$(basename "$url")"
  if [ $# -gt 0 ]; then
    found="$(find "$1" -name "$name" -type f | head -n 1)"
    [ -n "$found" ] || die "$name not found under $1"
    files+=("$found")
  else
    curl -fsSL --retry 3 -o "$tmp/$name" "$url" || die "could not download $url"
    files+=("$tmp/$name")
  fi
done
for group in kafka.strimzi.io keda.sh monitoring.coreos.com postgresql.cnpg.io; do
  rm -rf "k8s/schemas/$group"
done
"$PY" scripts/crd2schema.py k8s/schemas "${files[@]}"
