#!/usr/bin/env bash
# System packages the local stack needs: a Java 17 JDK (Kafka 4, Flink 2, javac for the job's
# JVM operators), Maven (fetches the Kafka and connector jars from Maven Central), a C compiler
# and Python's headers (mypyc and Cython compile the scoring path at install, setup.py),
# redis-server and prometheus (with promtool). With --test also chromium, which the end-to-end
# tests use to render the health report headless. Installs what is missing from Debian's
# packages when run as root; otherwise says what to install.
set -euo pipefail

missing=()
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1; }
# A JDK, not only a JRE: the job's own JVM operators are compiled with javac (job/jvm_jar.py).
if ! command -v java >/dev/null || ! command -v javac >/dev/null || [ "$(java_major)" -lt 17 ]; then
  missing+=(openjdk-17-jdk-headless)
fi
command -v mvn >/dev/null || missing+=(maven)
# A C compiler: mypyc and Cython compile the scoring path when the package is installed (setup.py).
command -v cc >/dev/null || missing+=(gcc)
python="${PYTHON:-python3.11}"
if command -v "$python" >/dev/null && ! "$python" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  missing+=(python3.11-dev)  # Debian's own python3.11 ships its headers apart
fi
command -v redis-server >/dev/null || missing+=(redis-server)
command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
if [ "${1:-}" = "--test" ]; then
  command -v chromium >/dev/null || missing+=(chromium fonts-liberation)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]} with apt-get"
  apt-get update -qq
  # No recommends: prometheus would pull in node-exporter, a service the stack does not use.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts its servers as services on install; the stack runs its own on loopback.
  for service in redis-server prometheus; do
    if command -v systemctl >/dev/null; then systemctl disable --now "$service" >/dev/null 2>&1 || true; fi
    if pgrep -x "$service" >/dev/null && command -v service >/dev/null; then service "$service" stop >/dev/null 2>&1 || true; fi
  done
else
  echo "missing system packages: ${missing[*]}" >&2
  echo "install them, e.g.: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
