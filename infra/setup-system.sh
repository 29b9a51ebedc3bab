#!/usr/bin/env bash
# System packages the local stack needs: Java 17 (Kafka 4, Flink 2), Maven (fetches the Kafka
# and connector jars from Maven Central) and redis-server. Installs what is missing from Debian's
# packages when run as root; otherwise says what to install.
set -euo pipefail

missing=()
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1; }
if ! command -v java >/dev/null || [ "$(java_major)" -lt 17 ]; then missing+=(openjdk-17-jdk-headless); fi
command -v mvn >/dev/null || missing+=(maven)
command -v redis-server >/dev/null || missing+=(redis-server)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian starts redis-server as a service on install; the stack runs its own on loopback.
  if command -v systemctl >/dev/null; then systemctl disable --now redis-server >/dev/null 2>&1 || true; fi
  if pgrep -x redis-server >/dev/null && command -v service >/dev/null; then service redis-server stop >/dev/null 2>&1 || true; fi
else
  echo "missing system packages: ${missing[*]}" >&2
  echo "install them, e.g.: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
