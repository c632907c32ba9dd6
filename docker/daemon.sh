#!/usr/bin/env bash
# A Docker daemon for docker/check.sh in CI.
#
#   docker/daemon.sh start DIR   exit 0 when `docker info` answers: at once if a daemon runs,
#                                else (as root) after installing Debian's docker.io and debootstrap
#                                when missing and starting dockerd (its log and pid in DIR);
#                                else exit 1 with the reason on stdout, one line
#   docker/daemon.sh stop DIR    stop the dockerd that start started (safe when it started none)
#
# APMAE_CI_DOCKER=0 skips (start exits 1 saying so).
set -uo pipefail

start() {
    local dir=$1 i
    mkdir -p "$dir"
    if [ "${APMAE_CI_DOCKER:-1}" = 0 ]; then echo "APMAE_CI_DOCKER=0"; return 1; fi
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then return 0; fi
    [ "$(id -u)" = 0 ] || { echo "no Docker daemon answers and starting one needs root"; return 1; }
    if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null || ! command -v debootstrap >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        { apt-get install -y -q docker.io debootstrap \
          || { apt-get update -q && apt-get install -y -q docker.io debootstrap; }; } >"$dir/apt.log" 2>&1 \
            || { echo "apt-get install docker.io debootstrap failed ($(tail -n 1 "$dir/apt.log"))"; return 1; }
    fi
    dockerd >"$dir/dockerd.log" 2>&1 &
    echo $! >"$dir/dockerd.pid"
    for i in $(seq 60); do
        if docker info >/dev/null 2>&1; then
            echo "dockerd started (pid $(cat "$dir/dockerd.pid"), storage $(docker info -f '{{.Driver}}'))" >&2
            return 0
        fi
        kill -0 "$(cat "$dir/dockerd.pid")" 2>/dev/null || break
        sleep 1
    done
    echo "dockerd did not start: $(grep -a -iE 'level=(error|fatal)' "$dir/dockerd.log" | tail -n 1 | cut -c1-200)"
    stop "$dir"
    return 1
}

stop() {
    local dir=$1 pid i
    [ -f "$dir/dockerd.pid" ] || { rm -rf "$dir"; return 0; }
    pid=$(cat "$dir/dockerd.pid")
    kill "$pid" 2>/dev/null
    for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    rm -rf "$dir"
}

case "${1:-}" in
    start|stop) [ -n "${2:-}" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }; "$1" "$2" ;;
    *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
