#!/usr/bin/env bash
# Makes a fresh machine of this kind (Debian, root, no systemd) ready for the test suite:
#   - Debian's python3-celery 5.2.6 + python3-redis for /usr/bin/python3 (the tests run the real
#     Celery worker and producer with that interpreter; a `python3` earlier on PATH may lack them),
#   - Redis on 127.0.0.1:6379 (broker for the Redis tests, result backend for chords),
#   - RabbitMQ on 127.0.0.1:5672 with the default guest/guest user,
#   - Debian's docker-compose (v1) and python3-yaml, to validate the compose and collector files.
#   - Debian's prometheus (the server and promtool), for the alert rules' promtool tests and the
#     integration test that runs a real Prometheus against the bridge (its own port and data dir;
#     the package's own service is not started here: there is no systemd).
#   - Debian's redis-sentinel (the binary only: the Sentinel test starts private instances).
# Idempotent: it only acts on what is missing, and says what it did. It does not run npm.
set -euo pipefail

log() { printf 'setup-test-env: %s\n' "$*"; }
die() {
  printf 'setup-test-env: ERROR: %s\n' "$*" >&2
  exit 1
}

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || die "run as root (or install sudo): packages and services need it"
  SUDO=(sudo)
fi

# True if something accepts TCP connections on 127.0.0.1:$1 (bash's /dev/tcp, 2 s cap).
port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" >/dev/null 2>&1
}

# --- Python: celery + redis for /usr/bin/python3 -------------------------------------------------
if /usr/bin/python3 -c 'import celery, redis' >/dev/null 2>&1; then
  log "python3-celery: already importable ($(/usr/bin/python3 -c 'import celery; print(celery.__version__)'))"
else
  log "python3-celery: /usr/bin/python3 cannot import celery/redis; installing python3-celery python3-redis"
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y python3-celery python3-redis
  /usr/bin/python3 -c 'import celery, redis' ||
    die "python3-celery installed but /usr/bin/python3 still cannot import celery and redis"
  log "python3-celery: installed ($(/usr/bin/python3 -c 'import celery; print(celery.__version__)'))"
fi

# --- docker-compose v1 + PyYAML: validate docker-compose.yml and otel-collector.yaml -------------
# test/unit/deploymentFiles.test.ts runs `docker-compose config` (Debian's docker-compose, which
# needs no Docker engine for it) and parses both files with /usr/bin/python3's yaml module.
if command -v docker-compose >/dev/null 2>&1 && /usr/bin/python3 -c 'import yaml' >/dev/null 2>&1; then
  log "docker-compose: already installed ($(docker-compose version --short 2>/dev/null || echo '?'))"
else
  log "docker-compose: missing; installing Debian's docker-compose (brings python3-yaml)"
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y docker-compose python3-yaml
  command -v docker-compose >/dev/null 2>&1 || die "docker-compose installed but not on PATH"
  log "docker-compose: installed ($(docker-compose version --short 2>/dev/null || echo '?'))"
fi

# --- Prometheus + promtool: alert rule tests and the real-Prometheus integration test ------------
# test/unit/alertRules.test.ts runs `promtool test rules`; test/integration/prometheus.test.ts
# starts /usr/bin/prometheus itself.
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  log "prometheus: already installed ($(prometheus --version 2>&1 | head -n 1))"
else
  log "prometheus: missing; installing Debian's prometheus (server + promtool)"
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus
  command -v promtool >/dev/null 2>&1 || die "prometheus installed but promtool is not on PATH"
  log "prometheus: installed ($(prometheus --version 2>&1 | head -n 1))"
fi

# --- Redis Sentinel: the sentinel:// broker test runs private sentinels (never a service) --------
# test/integration/redisSentinel.test.ts starts its own redis-server and redis-sentinel processes
# on free ports; only the binary is needed. Installing the package does not start its service here
# (no systemd; invoke-rc.d's policy decides), and nothing below starts it.
if command -v redis-sentinel >/dev/null 2>&1; then
  log "redis-sentinel: already installed"
else
  log "redis-sentinel: missing; installing Debian's redis-sentinel"
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-sentinel
  command -v redis-sentinel >/dev/null 2>&1 || die "redis-sentinel installed but not on PATH"
  log "redis-sentinel: installed"
fi

# --- Redis ---------------------------------------------------------------------------------------
redis_up() { [[ $(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null) == PONG ]]; }

command -v redis-cli >/dev/null 2>&1 || die "redis-cli not found: apt-get install -y redis-server"
if redis_up; then
  log "redis: already answering on 127.0.0.1:6379"
else
  command -v redis-server >/dev/null 2>&1 || die "redis-server not found: apt-get install -y redis-server"
  log "redis: not answering; starting redis-server on 127.0.0.1:6379"
  "${SUDO[@]}" mkdir -p /var/lib/redis /var/log/redis
  # No persistence: test data is throwaway. `-::1` makes the IPv6 bind optional (no IPv6 = fine).
  "${SUDO[@]}" redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 50); do
    redis_up && break
    sleep 0.2
  done
  redis_up || die "redis-server did not answer PING within 10 s; see /var/log/redis/ci.log:
$(tail -n 20 /var/log/redis/ci.log 2>/dev/null || true)"
  log "redis: started"
fi

# --- RabbitMQ ------------------------------------------------------------------------------------
if port_open 5672; then
  log "rabbitmq: already listening on 127.0.0.1:5672"
else
  command -v rabbitmq-server >/dev/null 2>&1 ||
    die "rabbitmq-server not found: apt-get install -y rabbitmq-server"
  log "rabbitmq: nothing listens on 5672; starting rabbitmq-server -detached (takes a few seconds)"
  "${SUDO[@]}" rabbitmq-server -detached
  # The node takes a while to boot; first wait for the listener, then for the boot to finish.
  deadline=$((SECONDS + 60))
  until port_open 5672; do
    ((SECONDS < deadline)) || die "RabbitMQ did not listen on 5672 within 60 s; logs in /var/log/rabbitmq:
$(tail -n 30 /var/log/rabbitmq/*.log 2>/dev/null || true)"
    sleep 1
  done
  remaining=$((deadline - SECONDS))
  ((remaining > 5)) || remaining=5
  "${SUDO[@]}" rabbitmqctl await_startup --timeout "$remaining" >/dev/null ||
    die "RabbitMQ listens on 5672 but 'rabbitmqctl await_startup' failed; see /var/log/rabbitmq"
  log "rabbitmq: started"
fi

log "ready: /usr/bin/python3 has celery, Redis on 127.0.0.1:6379, RabbitMQ on 127.0.0.1:5672"
