#!/usr/bin/env bash
# Builds the Debian bookworm base images that deploy/Dockerfile starts from,
# for machines that reach Debian's package mirror but no container registry.
#
# It runs debootstrap --variant=minbase against the mirror that this
# machine's own apt configuration names, installs the packages that the
# Dockerfile's stages need (read from its BUILD_PACKAGES and
# RUNTIME_PACKAGES arguments), and imports two images under the tags that
# the Dockerfile uses by default:
#   debian:bookworm       minbase plus the build packages (build stage)
#   debian:bookworm-slim  minbase without docs, man pages and locales,
#                         plus the runtime libraries (runtime stage)
# Both carry the label org.peercache.base=debootstrap, which distinguishes
# them from the official images that they replace on this machine.
# Because the packages are already installed, the Dockerfile's apt-get steps
# are skipped and `docker compose build` works offline.
#
# Usage: scripts/docker-base-images.sh [--force]
#   --force  rebuilds images that already exist (by default they are kept)
# Needs root (debootstrap and chroot) and a running Docker engine.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dockerfile="$repo_root/deploy/Dockerfile"
suite=bookworm
build_tag=debian:bookworm
runtime_tag=debian:bookworm-slim
label=org.peercache.base=debootstrap
force=0
work_dir=""

log() {
  echo "docker-base-images: $*"
}

die() {
  echo "docker-base-images: error: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

parse_args() {
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --force) force=1 ;;
      -h | --help) usage; exit 0 ;;
      *) die "unknown argument '$1' (expected --force or --help)" ;;
    esac
    shift
  done
}

image_exists() {
  docker image inspect "$1" >/dev/null 2>&1
}

# Prints the value of one `ARG NAME="..."` line of the Dockerfile, so that
# the package lists live in one place.
dockerfile_arg() {
  local value
  value="$(sed -n "s/^ARG $1=\"\(.*\)\"\$/\1/p" "$dockerfile")"
  [ -n "$value" ] || die "no ARG $1=\"...\" line in $dockerfile"
  echo "$value"
}

ensure_debootstrap() {
  if command -v debootstrap >/dev/null 2>&1; then
    return
  fi
  log "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    debootstrap >/dev/null
}

# Prints "URI SUITE" for every enabled binary (deb) source of this machine's
# apt configuration, in both the one-line format (*.list) and the deb822
# format (*.sources).
apt_sources() {
  local file
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    awk '
      { sub(/#.*/, "") }
      $1 != "deb" { next }
      {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if (i + 1 <= NF) print $i, $(i + 1)
      }' "$file"
  done
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    awk '
      function flush(   i, j, nu, ns, u, s) {
        if (types ~ /(^| )deb( |$)/ && enabled !~ /^(no|false|0)$/) {
          nu = split(uris, u, " "); ns = split(suites, s, " ")
          for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]
        }
        types = uris = suites = ""; enabled = "yes"; field = ""
      }
      BEGIN { enabled = "yes" }
      /^#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]/ { if (field == "uris") uris = uris " " $0
                 else if (field == "suites") suites = suites " " $0
                 next }
      {
        name = tolower($0); sub(/:.*/, "", name)
        value = $0; sub(/^[^:]*:[ \t]*/, "", value)
        field = name
        if (name == "types") types = value
        else if (name == "uris") uris = value
        else if (name == "suites") suites = value
        else if (name == "enabled") enabled = tolower(value)
      }
      END { flush() }' "$file"
  done
}

# Prints the first URI that apt uses for the given suite, or nothing.
apt_uri_for() {
  apt_sources | awk -v want="$1" '$2 == want { sub(/\/+$/, "", $1); print $1; exit }'
}

# Writes the image's own apt sources: the same mirrors as this machine, for
# the main component of the suite, its updates and its security suite.
write_image_sources() {
  local root="$1" mirror="$2" updates security
  updates="$(apt_uri_for "$suite-updates")"
  security="$(apt_uri_for "$suite-security")"

  rm -f "$root/etc/apt/sources.list"
  {
    echo "Types: deb"
    echo "URIs: $mirror"
    if [ -n "$updates" ] && [ "$updates" = "$mirror" ]; then
      echo "Suites: $suite $suite-updates"
    else
      echo "Suites: $suite"
    fi
    echo "Components: main"
    echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
    if [ -n "$security" ]; then
      echo
      echo "Types: deb"
      echo "URIs: $security"
      echo "Suites: $suite-security"
      echo "Components: main"
      echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
    fi
  } >"$root/etc/apt/sources.list.d/debian.sources"
}

# Replaces what debootstrap copied from this machine with neutral files.
# Docker mounts its own /etc/hosts, /etc/hostname and /etc/resolv.conf into
# every container, so these only matter for tools that read the image.
write_image_identity() {
  local root="$1"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    >"$root/etc/hosts"
  echo localhost >"$root/etc/hostname"
  : >"$root/etc/resolv.conf"
  : >"$root/etc/machine-id"
}

# Keeps documentation, man pages and translations out of the slim image,
# now and for every package installed into it later.
make_slim() {
  local root="$1"
  cat >"$root/etc/dpkg/dpkg.cfg.d/slim-image" <<'EOF'
# Files that the slim image leaves out to stay small (copyright notices stay).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
EOF
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root/usr/share/man/"* "$root/usr/share/groff/"* "$root/usr/share/info/"* \
    "$root/usr/share/lintian/"* "$root/usr/share/locale/"*
}

# Installs packages inside the root with apt-get, from the image's own
# sources. The machine's resolver is lent to the chroot only for this step.
chroot_install() {
  local root="$1"
  shift
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  mount -t proc proc "$root/proc"
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  chroot "$root" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 "$@" >/dev/null
  chroot "$root" apt-get clean
  umount "$root/proc"
  rm -rf "$root/var/lib/apt/lists/"*
  : >"$root/etc/resolv.conf"
}

# Removes caches, logs and temporary files that the image does not need.
scrub_root() {
  local root="$1"
  rm -rf "$root/var/cache/apt/"*.bin "$root/var/cache/debconf/"*-old \
    "$root/var/log/"*.log "$root/var/log/apt/"* "$root/tmp/"* "$root/var/tmp/"*
  rm -f "$root/debootstrap/debootstrap.log"
}

import_root() {
  local root="$1" tag="$2"
  scrub_root "$root"
  tar --numeric-owner -C "$root" \
    --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* --exclude=./run/* \
    -cf - . |
    docker import \
      --change 'CMD ["bash"]' \
      --change "LABEL $label" \
      --message "debootstrap --variant=minbase $suite" \
      - "$tag" >/dev/null
  log "imported $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}'))"
}

cleanup() {
  [ -n "$work_dir" ] || return 0
  # Unmount anything still mounted below the work dir before deleting it,
  # deepest first, so rm never reaches the machine's /proc.
  awk -v dir="$work_dir/" 'index($2, dir) == 1 { print $2 }' /proc/self/mounts |
    sort -r | while read -r mount_point; do umount -l "$mount_point" || true; done
  if awk -v dir="$work_dir/" 'index($2, dir) == 1 { found = 1 } END { exit !found }' \
    /proc/self/mounts; then
    echo "docker-base-images: error: mounts remain below $work_dir; not deleting it" >&2
    return 0
  fi
  rm -rf "$work_dir"
}

main() {
  parse_args "$@"
  docker info >/dev/null 2>&1 || die "'docker info' failed; start the Docker engine or check access to its socket"

  local need_build=1 need_runtime=1
  if [ "$force" -eq 0 ]; then
    image_exists "$build_tag" && need_build=0 && log "$build_tag exists, kept (use --force to rebuild)"
    image_exists "$runtime_tag" && need_runtime=0 && log "$runtime_tag exists, kept (use --force to rebuild)"
  fi
  if [ "$need_build" -eq 0 ] && [ "$need_runtime" -eq 0 ]; then
    return 0
  fi

  [ "$(id -u)" -eq 0 ] || die "must run as root, because debootstrap and chroot need it"
  local build_packages runtime_packages mirror start
  build_packages="$(dockerfile_arg BUILD_PACKAGES)"
  runtime_packages="$(dockerfile_arg RUNTIME_PACKAGES)"
  ensure_debootstrap
  mirror="$(apt_uri_for "$suite")"
  [ -n "$mirror" ] || die "no apt source for suite '$suite' in /etc/apt/sources.list or /etc/apt/sources.list.d/"

  start=$SECONDS
  work_dir="$(mktemp -d /var/tmp/peercache-base.XXXXXX)"
  trap cleanup EXIT
  log "debootstrap --variant=minbase $suite from $mirror"
  debootstrap --variant=minbase "$suite" "$work_dir/base" "$mirror" >"$work_dir/debootstrap.out" 2>&1 ||
    { tail -n 20 "$work_dir/debootstrap.out" >&2; die "debootstrap from $mirror failed (its last lines are above)"; }
  write_image_sources "$work_dir/base" "$mirror"
  write_image_identity "$work_dir/base"

  if [ "$need_runtime" -eq 1 ]; then
    cp -a "$work_dir/base" "$work_dir/slim"
    make_slim "$work_dir/slim"
    log "installing into $runtime_tag: $runtime_packages"
    # shellcheck disable=SC2086 # the list is split into package names
    chroot_install "$work_dir/slim" $runtime_packages
    import_root "$work_dir/slim" "$runtime_tag"
  fi
  if [ "$need_build" -eq 1 ]; then
    log "installing into $build_tag: $build_packages"
    # shellcheck disable=SC2086
    chroot_install "$work_dir/base" $build_packages
    import_root "$work_dir/base" "$build_tag"
  fi
  log "done in $((SECONDS - start)) s"
}

main "$@"
