# Shared by tools/test, tools/demo and perf/run: install what is missing, then configure and build.
# Sourced, not executed.

RB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian packages the build, the tests and the demo need. Keep these lists the single source of
# truth. RB_BUILD_PACKAGES compiles ringbouncer (containers/Dockerfile's build stage uses it too);
# RB_PACKAGES adds what the tests and the demo run: PostgreSQL, the life test's Python modules
# and the metrics test's Prometheus parser (python3-prometheus-client),
# systemd-analyze (systemd) and systemd-nspawn (systemd-container) for the unit tests.
# docker.io, docker-compose and mmdebstrap stay out: only containers/check-docker installs them.
RB_BUILD_PACKAGES=(
  build-essential cmake pkg-config ninja-build
  liburing-dev libwolfssl-dev libabsl-dev libbenchmark-dev catch2 libpq-dev
)
RB_PACKAGES=(
  "${RB_BUILD_PACKAGES[@]}"
  postgresql postgresql-contrib pgbouncer
  python3 python3-psycopg2 python3-rich python3-prometheus-client iproute2
  systemd systemd-container
)

rb_log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Installs the Debian packages in RB_PACKAGES (and any passed as arguments) that are missing.
rb_install_packages() {
  local want=("${RB_PACKAGES[@]}" "$@") missing=() p
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
    return 1
  fi
  rb_log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# rb_build DIR [cmake args...]: configures (once) and builds everything into DIR.
rb_build() {
  local dir=$1; shift
  local gen=()
  command -v ninja >/dev/null && [ ! -f "$dir/CMakeCache.txt" ] && gen=(-G Ninja)
  cmake -S "$RB_ROOT" -B "$dir" "${gen[@]}" "$@" >/dev/null
  cmake --build "$dir" -j "$(nproc)"
}
