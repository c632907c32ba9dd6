#!/usr/bin/env bash
# Build the Docker image and prove it: the first start builds a (small) default run into a named
# /data volume and serves /api/health with ready: true; POST /api/predict answers; a second
# container on the same volume is ready without building again; the server runs as a non-root
# user; the image's size. Needs a running Docker daemon and curl and python3 on the host.
#
#   docker/check.sh
#
# Environment (all optional):
#   IMAGE            tag to build (apmae:check); kept at the end, the containers and volume are not
#   BASE             base image; default python:3.11-slim-bookworm when the daemon has it or can
#                    pull it, else apmae-base:bookworm, made by docker/base.sh (debootstrap) if missing
#   TORCH_WHEEL      a local torch wheel to build with (its version becomes TORCH_SPEC, torch's
#                    dependencies come from PyPI); default: the newest CPU cp311 x86_64 torch
#                    wheel in pip's find-links folders (PIP_FIND_LINKS, `pip config list`), if any;
#                    "none": the public CPU index
#   CA_BUNDLE        the CA bundle pip trusts in the build; default PIP_CERT or pip's configured
#                    cert, if any; "none": pip's own
#   BUILD_NETWORK    docker build --network (host: the host's resolver and proxy settings)
#   RUN_NETWORK      bridge (publish on a free loopback port) or host (default bridge)
#   DEMO_ARGS        the demo settings of both starts; small, to keep the check to minutes
#                    (the image's own CMD builds the full default run, far longer)
#   READY_TIMEOUT    seconds the first start may take to be ready (3600)
#   KEEP_VOLUME=1    keep the volume (the built run) for a later `docker run -v VOLUME:/data`
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-apmae:check}
BUILD_NETWORK=${BUILD_NETWORK:-host}
RUN_NETWORK=${RUN_NETWORK:-bridge}
DEMO_ARGS=${DEMO_ARGS:---per-task 4 --heldout-per-task 2 --sweep-scenarios 8}
READY_TIMEOUT=${READY_TIMEOUT:-3600}
PUBLIC_BASE=python:3.11-slim-bookworm
name=apmae-check-$$
volume=${name}-data
containers=()

say() { printf '[check %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { say "FAIL: $*"; exit 1; }
cleanup() {
    local c
    for c in "${containers[@]}"; do
        docker logs "$c" > "/tmp/$c.log" 2>&1 || true
        docker rm -f "$c" >/dev/null 2>&1 || true
    done
    if [ "${KEEP_VOLUME:-0}" = 1 ]; then say "volume kept: $volume"
    else docker volume rm "$volume" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
json_field() {  # json_field EXPR: evaluate EXPR on the JSON document on stdin (as `d`)
    python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"
}

for tool in docker curl python3; do command -v "$tool" >/dev/null || fail "no $tool on this machine"; done
docker info >/dev/null 2>&1 || fail "no Docker daemon (docker info failed)"
say "docker: client $(docker version -f '{{.Client.Version}}' 2>/dev/null), daemon $(docker version -f '{{.Server.Version}}'), storage $(docker info -f '{{.Driver}}')"

# ---- build inputs -------------------------------------------------------------------------
if [ -z "${BASE:-}" ]; then
    if docker image inspect "$PUBLIC_BASE" >/dev/null 2>&1 \
       || timeout 120 docker pull -q "$PUBLIC_BASE" >/dev/null 2>&1; then
        BASE=$PUBLIC_BASE
    else
        BASE=apmae-base:bookworm
        say "no $PUBLIC_BASE (no registry reachable): base $BASE from Debian's packages"
        if ! docker image inspect "$BASE" >/dev/null 2>&1; then
            t=$(now); docker/base.sh "$BASE" >/dev/null || fail "docker/base.sh failed"
            say "built $BASE with debootstrap in $(since "$t") s"
        fi
    fi
fi

find_links() {  # pip's find-links folders: PIP_FIND_LINKS and pip's configuration
    { printf '%s\n' ${PIP_FIND_LINKS:-}
      python3 -m pip config list 2>/dev/null | sed -n "s/^[^=]*find-links='\(.*\)'\$/\1/p" | tr ' ' '\n'
    } | sed 's#^file://##' | awk 'NF && !seen[$0]++'
}
if [ -z "${TORCH_WHEEL:-}" ]; then
    TORCH_WHEEL=$(find_links | while read -r d; do
        ls "$d"/torch-*+cpu-cp311-cp311-*linux*_x86_64.whl 2>/dev/null || true; done | sort -V | tail -n 1)
fi
[ "${TORCH_WHEEL:-none}" = none ] && TORCH_WHEEL=
if [ -z "${CA_BUNDLE:-}" ]; then
    CA_BUNDLE=${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}
fi
[ "${CA_BUNDLE:-none}" = none ] && CA_BUNDLE=

# docker/local/ (git-ignored) carries them into the build stage only, never the final image
rm -f docker/local/*.whl docker/local/ca-certificates.crt
build_args=(--build-arg "BASE=$BASE")
if [ -n "$TORCH_WHEEL" ]; then
    [ -f "$TORCH_WHEEL" ] || fail "TORCH_WHEEL $TORCH_WHEEL is not a file"
    ln -f "$TORCH_WHEEL" docker/local/ 2>/dev/null || cp "$TORCH_WHEEL" docker/local/
    version=$(basename "$TORCH_WHEEL" | cut -d- -f2)
    build_args+=(--build-arg "TORCH_SPEC=torch==$version" --build-arg "TORCH_INDEX_URL=")
    say "torch: local wheel $TORCH_WHEEL (torch==$version; its dependencies from PyPI)"
else
    say "torch: the public CPU index (Dockerfile default)"
fi
if [ -n "$CA_BUNDLE" ]; then
    [ -f "$CA_BUNDLE" ] || fail "CA_BUNDLE $CA_BUNDLE is not a file"
    cp "$CA_BUNDLE" docker/local/ca-certificates.crt
    say "pip's CA bundle in the build stage: $CA_BUNDLE"
fi

# ---- build ----------------------------------------------------------------------------------
say "building $IMAGE: docker build --network $BUILD_NETWORK ${build_args[*]} ."
t=$(now)
docker build --network "$BUILD_NETWORK" "${build_args[@]}" -t "$IMAGE" . > "/tmp/$name-build.log" 2>&1 \
    || { tail -n 40 "/tmp/$name-build.log"; fail "docker build failed (log: /tmp/$name-build.log)"; }
build_s=$(since "$t")
say "built $IMAGE in $build_s s (log: /tmp/$name-build.log)"
size_mb=$(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f", $1 / 1e6}')
base_mb=$(docker image inspect -f '{{.Size}}' "$BASE" | awk '{printf "%.0f", $1 / 1e6}')
say "image size: $size_mb MB ($BASE: $base_mb MB)"
if docker run --rm --entrypoint sh "$IMAGE" -c 'ls /tmp/local /usr/local/share/ca-certificates/*.crt' 2>/dev/null | grep -q .; then
    fail "build inputs (docker/local) leaked into the final image"
fi

# ---- the corpus: the model card's src.zip? --------------------------------------------------
expected=$(json_field 'd["sha256"]' < apmae/default_model/data.json)
found=$(docker run --rm --entrypoint sh "$IMAGE" -c \
    'for z in /usr/lib/jvm/*/lib/src.zip; do [ -f "$z" ] && sha256sum "$z"; done; true' | awk '{print $1}' | sort -u)
jdk=$(docker run --rm --entrypoint sh "$IMAGE" -c 'cat /usr/lib/jvm/openjdk-17/openjdk-17-source.version 2>/dev/null || dpkg-query -W -f "\${Version}" openjdk-17-source' || echo unknown)
cmd=(apmae demo --host 0.0.0.0 --port 8000 $DEMO_ARGS)
if printf '%s\n' "$found" | grep -qx "$expected"; then
    say "corpus: openjdk-17-source $jdk, src.zip SHA-256 ${expected:0:12}... matches the model card"
else
    say "CORPUS MISMATCH: the image's openjdk-17-source ($jdk) src.zip is not the model card's"
    say "  (SHA-256 ${expected:0:12}...): the demo runs with --accept-corpus, its held-out split may hold trained-on code"
    cmd+=(--accept-corpus)
fi

# ---- run ------------------------------------------------------------------------------------
start() {  # start CONTAINER: run the image's demo on the volume; sets url
    local c=$1 port
    containers+=("$c")
    if [ "$RUN_NETWORK" = host ]; then
        port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        docker run -d --name "$c" --network host -v "$volume:/data" "$IMAGE" \
            "${cmd[@]/#8000/$port}" >/dev/null
        url=http://127.0.0.1:$port
    else
        docker run -d --name "$c" -p 127.0.0.1::8000 -v "$volume:/data" "$IMAGE" "${cmd[@]}" >/dev/null
        url=http://$(docker port "$c" 8000/tcp | head -n 1)
    fi
}
wait_ready() {  # wait_ready CONTAINER TIMEOUT: until /api/health says ready (fails if it exits)
    local c=$1 limit=$2 t0 health
    t0=$(date +%s)
    while :; do
        health=$(curl -fsS --max-time 5 "$url/api/health" 2>/dev/null || true)
        if [ -n "$health" ] && [ "$(json_field 'd.get("ready") is True' <<<"$health")" = True ]; then
            say "$c: /api/health $health"
            return 0
        fi
        if [ "$(docker inspect -f '{{.State.Running}}' "$c")" != true ]; then
            docker logs --tail 40 "$c" 2>&1; fail "$c exited ($(docker inspect -f '{{.State.ExitCode}}' "$c")) before ready"
        fi
        if [ $(( $(date +%s) - t0 )) -gt "$limit" ]; then
            docker logs --tail 40 "$c" 2>&1; fail "$c not ready within $limit s"
        fi
        sleep 5
    done
}

docker volume create "$volume" >/dev/null
say "first start (builds the run into volume $volume): ${cmd[*]}"
t=$(now)
start "$name-1"
wait_ready "$name-1" "$READY_TIMEOUT"
first_s=$(since "$t")
say "first start ready in $first_s s ($url); Docker's health check: $(docker inspect -f '{{.State.Health.Status}}' "$name-1")"

uid=$(docker exec "$name-1" id -u)
say "server process: $(docker exec "$name-1" id) (pid 1 runs as $(docker exec "$name-1" stat -c %U /proc/1))"
[ "$uid" != 0 ] || fail "the container runs as root"

corpus=$(curl -fsS "$url/api/run" | json_field 'd["report"]["meta"]["corpus"].get("matches_model_card")' 2>/dev/null || echo unknown)
say "run's corpus matches the model card: $corpus"

code='public class Greeter {
    private final String name;

    public Greeter(String name) {
        this.name = name;
    }

    public String greet(String greeting) {
        StringBuilder out = new StringBuilder(greeting);
        out.append(", ").append(name);
        return out.toString();
    }
}'
body=$(python3 -c 'import json, sys; c = sys.argv[1]; s = c.index("append(name)") + 7
print(json.dumps({"code": c, "start": s, "end": s + 4}))' "$code")
t=$(now)
status=$(curl -sS -o "/tmp/$name-predict.json" -w '%{http_code}' --max-time 300 \
    -H 'Content-Type: application/json' -d "$body" "$url/api/predict")
predict_s=$(since "$t")
[ "$status" = 200 ] || { cat "/tmp/$name-predict.json"; fail "POST /api/predict answered $status"; }
say "POST /api/predict: 200 in $predict_s s: $(json_field '{k: d.get(k) for k in ("target", "completion", "correct_exact", "predicted_correct", "out_of_distribution")}' < "/tmp/$name-predict.json")"
json_field '"completion" in d' < "/tmp/$name-predict.json" | grep -qx True || fail "no completion in the answer"

say "second container on the same volume (no rebuild expected)"
docker logs "$name-1" > "/tmp/$name-1.log" 2>&1
docker rm -f "$name-1" >/dev/null
t=$(now)
start "$name-2"
wait_ready "$name-2" "$READY_TIMEOUT"
second_s=$(since "$t")
say "second start ready in $second_s s"
docker logs "$name-2" > "/tmp/$name-2.log" 2>&1
first_stages=$(grep -a '^stage times:' "/tmp/$name-1.log" | tail -n 1)
second_stages=$(grep -a '^stage times:' "/tmp/$name-2.log" | tail -n 1)
say "first start's  $first_stages"
say "second start's $second_stages"
# a stage built again: 10 s or more on the second start, and a tenth or more of its first time
rebuilt=$(python3 - "$first_stages" "$second_stages" <<'PY'
import re, sys
first, second = ({k: float(v) for k, v in re.findall(r"(\w+) ([\d.]+) s", line)} for line in sys.argv[1:])
print(", ".join(f"{k} {v:.0f} s (first start {first.get(k, 0):.0f} s)" for k, v in second.items()
                if v >= 10 and v >= 0.1 * first.get(k, 0)))
PY
)
[ -n "$second_stages" ] || fail "no stage times in the second start's log"
if [ -n "$rebuilt" ]; then
    say "FAIL: the second start on the same volume built again: $rebuilt"
    restart_ok=no
else
    say "second start built nothing again: the run came from the volume"
    restart_ok=yes
fi
docker exec "$name-2" id -u | grep -qvx 0 || fail "the second container runs as root"

[ "$restart_ok" = yes ] || fail "restart rebuilt part of the run (see above); image $IMAGE $size_mb MB; build $build_s s; first start $first_s s; second start $second_s s"
say "PASS  image $IMAGE $size_mb MB (base $BASE); build $build_s s; first start to ready $first_s s; second start to ready $second_s s; predict $predict_s s; uid $uid"
