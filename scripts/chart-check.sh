#!/usr/bin/env bash
# Offline checks of everything deployed to Kubernetes, with the pinned tools from .tools/:
#
#   lint      helm lint --strict, with the chart's values schema
#   template  helm template
#   schema    every rendered object and every manifest in k8s/ against Kubernetes 1.34 and the
#             Strimzi / prometheus-operator / KEDA / CloudNativePG CRD schemas kept in k8s/schemas/
#             (scripts/schema-check.py; scripts/crd-schemas.sh regenerates them)
#   checkov   security checks; the only skips are in .checkov.yaml or annotated on an object, with reasons
#   yamllint  values files, k8s/, and the rendered manifests (duplicate keys pass every other check)
#   promtool  `promtool check rules` on every rendered PrometheusRule, and the alert unit tests in
#             tests/fixtures/alerts-test.yaml against the observability values
#   hadolint  the Dockerfile
#
#   scripts/chart-check.sh                      all checks: default values, charts/*/ci/*.yaml,
#                                               k8s/kind-values.yaml, k8s/kafka/ha/values.yaml
#   scripts/chart-check.sh --values F [--only CHECK]      the chart rendered with one values file
#   scripts/chart-check.sh --dockerfile F --only hadolint a given Dockerfile
#
# Exit status: 0 when every check passes; 1 and the name of the failed check otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="${TOOLS_DIR:-$ROOT/.tools}/bin"
VENV_PY="${TOOLS_DIR:-$ROOT/.tools}/venv/bin/python"
CHART="charts/kafka-microservices"
NAMESPACE="${NAMESPACE:-kafka-demo}"
K8S_VERSION="1.34.0"
OUT="${CHART_CHECK_OUT:-$ROOT/target/chart-check}"

only=""
values=()
dockerfile="Dockerfile"
while [ $# -gt 0 ]; do
  case "$1" in
    --values) values+=("$2"); shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --dockerfile) dockerfile="$2"; shift 2 ;;
    *) echo "usage: $0 [--values FILE]... [--only lint|template|schema|checkov|promtool|yamllint|hadolint] [--dockerfile FILE]" >&2; exit 2 ;;
  esac
done
full=$([ ${#values[@]} -eq 0 ] && echo yes || echo no)
if [ "$full" = yes ]; then
  values=(default "$CHART"/ci/*.yaml k8s/kind-values.yaml k8s/kafka/ha/values.yaml)
fi

"$ROOT/scripts/install-tools.sh" k8s

failed=()
run() { # name, command...
  local name="$1"; shift
  # Rendering feeds the schema and checkov checks, so it always runs.
  if [ -n "$only" ] && [ "$only" != "${name%%:*}" ] && [ "${name%%:*}" != template ]; then return 0; fi
  printf -- '--- %s\n' "$name"
  if "$@"; then printf 'ok   %s\n' "$name"; else printf 'FAIL %s\n' "$name"; failed+=("$name"); fi
}

helm_args() { # values-file -> helm arguments
  [ "$1" = default ] || printf -- '--values\0%s\0' "$1"
}

rm -rf "$OUT" && mkdir -p "$OUT"
rendered=()
for v in "${values[@]}"; do
  label="$(basename "$v" .yaml)"
  [ "$v" = k8s/kafka/ha/values.yaml ] && label="ha-values"
  mapfile -d '' args < <(helm_args "$v")
  run "lint:$label" "$BIN/helm" lint --strict "$CHART" --namespace "$NAMESPACE" "${args[@]}"
  file="$OUT/$label.yaml"
  render() { "$BIN/helm" template app "$CHART" --namespace "$NAMESPACE" "${args[@]}" > "$file"; }
  run "template:$label" render
  [ -s "$file" ] && rendered+=("$file")
done

manifests=()
if [ "$full" = yes ]; then
  manifests=(k8s/kind-config.yaml k8s/kafka/dev/kafka.yaml k8s/kafka/ha/kafka.yaml k8s/jaeger/jaeger.yaml)
  # The Kafka cluster of each security mode, as `make kafka SECURITY=…` applies it (kustomize).
  for overlay in k8s/kafka/security/*-*/; do
    name="kafka-$(basename "$overlay")"
    mkdir -p "$OUT/overlays"
    run "template:$name" sh -c '"$1" kustomize "$2" > "$3"' _ "$BIN/kubectl" "$overlay" "$OUT/overlays/$name.yaml"
    manifests+=("$OUT/overlays/$name.yaml")
  done
fi

if [ ${#rendered[@]} -gt 0 ] || [ ${#manifests[@]} -gt 0 ]; then
  run "schema" "$VENV_PY" scripts/schema-check.py -k "$K8S_VERSION" --crd-schemas k8s/schemas \
    "${rendered[@]}" "${manifests[@]}"
  # checkov reads a directory, and matches NetworkPolicies to pods across all files in it: each
  # render gets a directory of its own, so one values set cannot cover for another.
  check_dirs=()
  for f in "${rendered[@]}"; do
    d="$OUT/checkov/$(basename "$f" .yaml)"; mkdir -p "$d"; cp "$f" "$d/"; check_dirs+=("$d")
  done
  for f in "${manifests[@]}"; do
    # kind's cluster config is not a Kubernetes object.
    [ "$f" = k8s/kind-config.yaml ] && continue
    d="$OUT/checkov/$(echo "${f%.yaml}" | tr '/' '_')"; mkdir -p "$d"; cp "$f" "$d/"; check_dirs+=("$d")
  done
  checkov_all() {
    local d status=0
    for d in "${check_dirs[@]}"; do
      "$BIN/checkov" --config-file .checkov.yaml -d "$d" || { echo "checkov failed on ${d#"$OUT"/checkov/}"; status=1; }
    done
    return $status
  }
  run "checkov" checkov_all
  promtool_rules() {
    local f rules any=no
    for f in "${rendered[@]}"; do
      rules="${f%.yaml}.rules.yaml"
      "$VENV_PY" - "$f" "$rules" <<'PY' || return 1
import sys, yaml
groups = [g for d in yaml.safe_load_all(open(sys.argv[1]))
          if d and d.get("kind") == "PrometheusRule" for g in d["spec"]["groups"]]
if groups:
    yaml.safe_dump({"groups": groups}, open(sys.argv[2], "w"), sort_keys=False)
PY
      [ -s "$rules" ] || continue
      any=yes
      "$BIN/promtool" check rules "$rules" || return 1
      if [ "$(basename "$f")" = observability-values.yaml ]; then
        cp "$rules" "$OUT/rules.yaml" && cp tests/fixtures/alerts-test.yaml "$OUT/alerts-test.yaml"
        "$BIN/promtool" test rules "$OUT/alerts-test.yaml" || return 1
      fi
    done
    [ $any = yes ] || echo "(no PrometheusRule rendered)"
  }
  run "promtool" promtool_rules
  [ ${#rendered[@]} -eq 0 ] || run "yamllint:rendered" "$BIN/yamllint" -c .yamllint-rendered.yaml "${rendered[@]}"
fi

if [ "$full" = yes ]; then
  run "yamllint" "$BIN/yamllint" --strict "$CHART/values.yaml" "$CHART"/ci k8s .checkov.yaml .yamllint.yaml
  run "hadolint" "$BIN/hadolint" "$dockerfile"
else
  lint_values=()
  for v in "${values[@]}"; do [ "$v" = default ] || lint_values+=("$v"); done
  [ ${#lint_values[@]} -eq 0 ] || run "yamllint" "$BIN/yamllint" --strict "${lint_values[@]}"
  [ "$only" != hadolint ] || run "hadolint" "$BIN/hadolint" "$dockerfile"
fi

if [ ${#failed[@]} -gt 0 ]; then
  printf '\nchart-check FAILED: %s\n' "${failed[*]}"
  exit 1
fi
printf '\nchart-check: every check passed\n'
