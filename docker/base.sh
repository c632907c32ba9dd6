#!/usr/bin/env bash
# A Debian bookworm base image made from Debian's own packages, for machines that reach Debian's
# mirror but no image registry (the Dockerfile's default, python:3.11-slim-bookworm, comes from
# Docker Hub). Needs root, debootstrap and a running Docker daemon.
#
#   docker/base.sh [TAG]     default TAG apmae-base:bookworm; prints TAG when done
#   docker build --build-arg BASE=apmae-base:bookworm ...
#
# The image is `debootstrap --variant=minbase bookworm`, with apt pointed at bookworm,
# bookworm-updates and bookworm-security (as Debian's official images are): openjdk-17-source
# comes from bookworm-security, and the model card's src.zip hash is that package's.
# MIRROR (default http://deb.debian.org/debian) and SECURITY_MIRROR override the mirrors.
set -euo pipefail
tag=${1:-apmae-base:bookworm}
mirror=${MIRROR:-http://deb.debian.org/debian}
security=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
[ "$(id -u)" = 0 ] || { echo "docker/base.sh: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "docker/base.sh: apt-get install debootstrap" >&2; exit 1; }
root=$(mktemp -d /tmp/apmae-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$mirror" >&2
rm -f "$root/etc/apt/sources.list"
cat > "$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
# as in Debian's images: no recommends, no caches left behind in layers
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    > "$root/etc/apt/apt.conf.d/90apmae-no-recommends"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/tmp/* "$root"/var/log/*.log
tar -C "$root" --numeric-owner -c . \
    | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' - "$tag" >&2
echo "$tag"
