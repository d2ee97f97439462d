#!/usr/bin/env bash
# The system packages the image tests need (podman builds and runs the apps' images; docker-registry is
# the registry on 127.0.0.1; debootstrap makes the base image where no container registry answers).
# Installed when missing and this runs as root (CI); otherwise the command to run is printed and it fails.
set -euo pipefail
packages=(podman buildah runc debootstrap docker-registry)
missing=()
command -v podman >/dev/null || missing+=(podman buildah runc)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "error: the image tests need ${missing[*]}: run \`sudo apt-get install -y ${packages[*]}\` and try again" >&2
    exit 3
  fi
  echo "installing ${missing[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; }
fi
# Where crun cannot run (cgroup hybrid mode) and the default rlimits are refused, podman needs runc and
# lower limits. Written only as root and only when there is no configuration yet.
if [ "$(id -u)" = 0 ] && [ ! -e /etc/containers/containers.conf ]; then
  mkdir -p /etc/containers
  cat > /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
fi
podman info >/dev/null 2>&1 || { echo "error: podman cannot run here (\`podman info\` fails)" >&2; exit 3; }
