# Shared by .ci/run, scripts/test.sh and scripts/demo.sh: install everything this project needs from nothing
# on a fresh Debian machine (as root), idempotently: system packages only if missing, then Python deps, then
# the Kafka jars. Source it, then call `setup`.
export DEBIAN_FRONTEND=noninteractive
RUN_START=$(date +%s)
phase() {  # phase NAME CMD...: run CMD in a subshell with errexit in force, print how long it took
  local name=$1 t0 rc
  shift
  t0=$(date +%s)
  echo "::: ${name}"
  # Not `"$@" || rc=$?`: bash ignores errexit inside anything on the left of ||.
  local outer=$-
  set +e
  (set -e; "$@")
  rc=$?
  [[ $outer == *e* ]] && set -e
  echo "::: ${name}: $(($(date +%s) - t0)) s (exit ${rc})"
  return "$rc"
}

system_packages() {
  local missing=()
  command -v java >/dev/null || missing+=(java)
  command -v mvn >/dev/null || missing+=(maven)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
  command -v python3 >/dev/null || missing+=(python3 python3-pip)
  if ! command -v uv >/dev/null && ! python3 -m pip --version >/dev/null 2>&1; then missing+=(python3-pip); fi
  # The console's browser tests and bench.console drive Debian's chromium headless.
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  if [ ${#missing[@]} -eq 0 ]; then echo "all system packages present"; return 0; fi
  echo "installing: ${missing[*]}"
  apt-get update -q
  local pkgs=()
  for m in "${missing[@]}"; do
    case $m in
      java)
        # Debian 12 has 17; newer releases only ship newer JDKs, which Kafka 3.9 runs on too.
        if apt-cache show openjdk-17-jre-headless >/dev/null 2>&1; then pkgs+=(openjdk-17-jre-headless)
        else pkgs+=(default-jre-headless); fi ;;
      postgresql)
        # Only the binaries are wanted: the launcher runs its own cluster under .qa/.
        mkdir -p /etc/postgresql-common/createcluster.d
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/qastream-ci.conf
        pkgs+=(postgresql) ;;
      *) pkgs+=("$m") ;;
    esac
  done
  apt-get install -y -q --no-install-recommends "${pkgs[@]}"
}

python_env() {
  if ! command -v uv >/dev/null; then
    python3 -m pip install -q uv || python3 -m pip install -q --break-system-packages uv
    hash -r
  fi
  uv --version
  # Compiled at install: where PYTHONDONTWRITEBYTECODE is set (it is on our dev machine) every process would
  # otherwise compile each module it imports, ~2 s of CPU per service start.
  uv sync --frozen --compile-bytecode
}

kafka_jars() {
  uv run python -c 'from qastream_shared.stack import ensure_kafka_libs; print(ensure_kafka_libs(report=print))'
}

# The real kustomize renders deploy/kubernetes in the tests; built once from the Go module proxy and cached.
KUSTOMIZE_VERSION=v5.7.1
kustomize_bin() {
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/qastream/kustomize-${KUSTOMIZE_VERSION}"
  if [ ! -x "$dir/kustomize" ]; then
    if ! command -v go >/dev/null; then echo "go is missing: cannot build kustomize"; return 1; fi
    GOBIN="$dir" go install "sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION}"
  fi
  "$dir/kustomize" version
}

setup() {
  phase "system packages" system_packages
  export PATH="$HOME/.local/bin:$PATH"
  phase "python env" python_env
  phase "kafka jars" kafka_jars
  # Only the manifest tests need it (they fail under CI without it); the demo must not depend on Go.
  phase "kustomize" kustomize_bin || echo "kustomize unavailable: tests/unit/platform/test_deploy_kubernetes.py will say so"
  export KUSTOMIZE="${XDG_CACHE_HOME:-$HOME/.cache}/qastream/kustomize-${KUSTOMIZE_VERSION}/kustomize"
}
