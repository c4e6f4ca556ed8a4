#!/usr/bin/env bash
# A real Kubernetes API server for argo-drift's integration tests: kube-apiserver v1.20.2 built from
# Debian's `kubernetes` source package, with Debian's etcd, on loopback, token auth and RBAC on.
#
#   scripts/testenv.sh up     build (once, cached) and start; prints the KUBECONFIG line
#   scripts/testenv.sh env    print `export KUBECONFIG=...` for a running environment
#   scripts/testenv.sh down   stop it and delete its state (the cached binary stays)
#   scripts/testenv.sh build  only build and cache kube-apiserver
#   scripts/testenv.sh restart-apiserver [SECONDS]   stop the API server, wait, start it again
#
# With KUBECONFIG already set (kind, k3d, a real cluster), `up` checks that cluster answers, installs
# the test CRDs there and starts nothing.
#
# Environment:
#   ARGO_DRIFT_TESTENV_CACHE  where the built kube-apiserver is kept   (~/.cache/argo-drift)
#   ARGO_DRIFT_TESTENV_DIR    certificates, etcd data, logs, kubeconfig (/tmp/argo-drift-testenv)
#   ARGO_DRIFT_TESTENV_PORT   the API server's secure port               (16443)
set -euo pipefail

K8S_VERSION=1.20.2
cache=${ARGO_DRIFT_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/argo-drift}
state=${ARGO_DRIFT_TESTENV_DIR:-/tmp/argo-drift-testenv}
port=${ARGO_DRIFT_TESTENV_PORT:-16443}
etcd_port=$((port + 1))
etcd_peer_port=$((port + 2))
apiserver=$cache/kube-apiserver-v$K8S_VERSION
root=$(cd "$(dirname "$0")/.." && pwd)

say() { printf 'testenv: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

need_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() {
  [ -x "$apiserver" ] && return 0
  need_packages golang-go golang-github-modern-go-reflect2-dev dpkg-dev make rsync
  if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src .* bookworm main' /etc/apt/sources.list; then
    say "adding a deb-src line for bookworm main"
    echo 'deb-src http://deb.debian.org/debian bookworm main' | as_root tee /etc/apt/sources.list.d/argo-drift-src.list >/dev/null
  fi
  as_root apt-get update -qq
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/argo-drift-k8s-build.XXXXXX")
  trap 'rm -rf "$work"; trap - RETURN' RETURN
  say "downloading the kubernetes source package into $work"
  (cd "$work" && apt-get source --download-only kubernetes >/dev/null 2>&1) || die "apt-get source kubernetes failed"
  (cd "$work" && dpkg-source --no-check -x kubernetes_*.dsc src >/dev/null) || die "dpkg-source -x failed"
  local tree=$work/src
  grep -q "gitVersion.*v$K8S_VERSION\|$K8S_VERSION" "$tree/debian/changelog" || say "warning: source is not v$K8S_VERSION"
  # The vendored reflect2 1.0.1 segfaults under Go >= 1.18 once the server stores a custom resource.
  rm -rf "$tree/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$tree/vendor/github.com/modern-go/reflect2"
  # Under Go >= 1.18 this zero-value comparison rejects every empty string in a custom resource as
  # null, and Argo CD writes `"group": ""` for core kinds.
  for f in vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go vendor/github.com/go-openapi/validate/type.go; do
    [ -f "$tree/$f" ] || continue
    sed -i -E 's/if data == nil \|\| reflect\.DeepEqual\(reflect\.Zero\([^)]*\)\.Interface\(\), data\)/if data == nil/; s/if data == nil \|\| reflect\.DeepEqual\(reflect\.Zero\(.*\), reflect\.ValueOf\(data\)\)/if data == nil/' "$tree/$f"
    grep -q 'reflect.DeepEqual(reflect.Zero' "$tree/$f" && die "could not patch $f"
  done
  mkdir -p "$tree/.go/src/k8s.io"
  ln -s "$tree" "$tree/.go/src/k8s.io/kubernetes"
  say "building kube-apiserver (3-5 minutes on 2 cores)"
  (
    cd "$tree/.go/src/k8s.io/kubernetes"
    export GO111MODULE=off GOPATH=$tree/.go CGO_ENABLED=0 GOFLAGS= GOCACHE=$work/gocache
    make WHAT=cmd/kube-apiserver KUBE_GIT_VERSION=v$K8S_VERSION KUBE_GIT_TREE_STATE=clean >"$work/build.log" 2>&1
  ) || { tail -30 "$work/build.log" >&2; die "kube-apiserver build failed"; }
  local bin
  bin=$(find "$tree/_output" -type f -name kube-apiserver -perm -u+x | head -1)
  [ -n "$bin" ] || die "build produced no kube-apiserver binary"
  mkdir -p "$cache"
  cp "$bin" "$apiserver.tmp" && mv "$apiserver.tmp" "$apiserver"
  say "cached $apiserver"
}

certificates() {
  [ -f "$state/pki/server.crt" ] && return 0
  command -v openssl >/dev/null || need_packages openssl
  local d=$state/pki
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=argo-drift-testenv-ca" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >"$d/ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 3650 \
    -extfile "$d/ext" -out "$d/server.crt" 2>/dev/null
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  # Tokens: an administrator (system:masters) for the tests, and an unprivileged identity whose
  # rights come only from RBAC, as the controller has in a real cluster.
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$d/admin.token"
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$d/controller.token"
  {
    echo "$(cat "$d/admin.token"),admin,admin,system:masters"
    echo "$(cat "$d/controller.token"),system:serviceaccount:argocd:argo-drift,argo-drift-sa,system:serviceaccounts"
  } >"$d/tokens.csv"
  chmod 600 "$d"/*.key "$d"/*.token "$d/tokens.csv"
}

kubeconfig() {
  local user=$1 token_file=$2 out=$3
  cat >"$out.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: argo-drift-testenv
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 <"$state/pki/ca.crt")
users:
- name: $user
  user:
    token: $(cat "$token_file")
contexts:
- name: argo-drift-testenv
  context: {cluster: argo-drift-testenv, user: $user}
current-context: argo-drift-testenv
EOF
  chmod 600 "$out.tmp" && mv "$out.tmp" "$out"
}

# Running, and not a zombie waiting to be reaped (kill -0 succeeds on those too).
alive() {
  [ -f "$state/$1.pid" ] || return 1
  local pid stat
  pid=$(cat "$state/$1.pid")
  kill -0 "$pid" 2>/dev/null || return 1
  stat=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
  [ "$stat" != Z ]
}

ready() {
  curl -sf --max-time 2 --cacert "$state/pki/ca.crt" -H "Authorization: Bearer $(cat "$state/pki/admin.token")" \
    "https://127.0.0.1:$port/readyz" >/dev/null 2>&1
}

start_etcd() {
  alive etcd && return 0
  need_packages etcd-server
  local etcd
  etcd=$(command -v etcd || echo /usr/bin/etcd)
  mkdir -p "$state/etcd"
  say "starting etcd on 127.0.0.1:$etcd_port"
  nohup "$etcd" --name argo-drift-testenv --data-dir "$state/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "argo-drift-testenv=http://127.0.0.1:$etcd_peer_port" \
    --quota-backend-bytes 4294967296 --unsafe-no-fsync >"$state/etcd.log" 2>&1 9>&- &
  echo $! >"$state/etcd.pid"
}

start_apiserver() {
  alive kube-apiserver && return 0
  say "starting kube-apiserver on 127.0.0.1:$port"
  local d=$state/pki
  nohup "$apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
    --tls-cert-file "$d/server.crt" --tls-private-key-file "$d/server.key" --client-ca-file "$d/ca.crt" \
    --token-auth-file "$d/tokens.csv" --authorization-mode RBAC --anonymous-auth=false \
    --service-account-key-file "$d/sa.pub" --service-account-signing-key-file "$d/sa.key" \
    --service-account-issuer https://kubernetes.default.svc --api-audiences https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=true \
    --enable-admission-plugins NamespaceLifecycle,LimitRanger,DefaultStorageClass,ResourceQuota \
    --disable-admission-plugins ServiceAccount \
    --endpoint-reconciler-type none --max-requests-inflight 2000 --max-mutating-requests-inflight 1000 \
    --cert-dir "$state/pki" >"$state/kube-apiserver.log" 2>&1 9>&- &
  echo $! >"$state/kube-apiserver.pid"
}

wait_ready() {
  for _ in $(seq 1 120); do
    ready && return 0
    alive kube-apiserver || { tail -20 "$state/kube-apiserver.log" >&2; die "kube-apiserver exited; log: $state/kube-apiserver.log"; }
    sleep 0.5
  done
  die "kube-apiserver not ready after 60 s; log: $state/kube-apiserver.log"
}

install_crds() {
  local kc=$1
  # The tests apply through the API with the project's own client; curl keeps this script free of
  # kubectl, which Debian does not ship as a binary package.
  local server token ca
  server=$(awk '/server:/ {print $2; exit}' "$kc")
  if [ "$kc" = "$state/kubeconfig" ]; then
    token=$(cat "$state/pki/admin.token")
    ca=(--cacert "$state/pki/ca.crt")
  else
    return 0 # an existing cluster: the tests install the CRDs themselves through its kubeconfig
  fi
  for f in "$root"/deploy/testenv/crds/*.yaml; do
    local name
    name=$(awk '/^  name:/ {print $2; exit}' "$f")
    curl -sf "${ca[@]}" -H "Authorization: Bearer $token" -H 'Content-Type: application/apply-patch+yaml' \
      -X PATCH --data-binary @"$f" \
      "$server/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$name?fieldManager=argo-drift-testenv&force=true" >/dev/null \
      || die "could not install CRD $name from $f"
  done
}

up() {
  if [ -n "${KUBECONFIG:-}" ] && [ "${KUBECONFIG}" != "$state/kubeconfig" ]; then
    [ -f "$KUBECONFIG" ] || die "KUBECONFIG=$KUBECONFIG does not exist"
    say "using the existing cluster in KUBECONFIG=$KUBECONFIG"
    echo "export KUBECONFIG=$KUBECONFIG"
    return 0
  fi
  command -v curl >/dev/null || need_packages curl
  # The Git-over-SSH tests run their own sshd on loopback.
  [ -x /usr/sbin/sshd ] || need_packages openssh-server
  mkdir -p "$state"
  # Test binaries may call `up` at the same time; one of them does the work.
  # The servers started below must not inherit the lock (fd 9), or it would never be released.
  exec 9>"$state.lock"
  flock -w 900 9 || die "another scripts/testenv.sh up holds $state.lock"
  build
  certificates
  start_etcd
  start_apiserver
  wait_ready
  kubeconfig admin "$state/pki/admin.token" "$state/kubeconfig"
  kubeconfig argo-drift "$state/pki/controller.token" "$state/kubeconfig-controller"
  install_crds "$state/kubeconfig"
  say "ready: https://127.0.0.1:$port (logs in $state)"
  echo "export KUBECONFIG=$state/kubeconfig"
}

down() {
  for p in kube-apiserver etcd; do
    if alive "$p"; then
      kill "$(cat "$state/$p.pid")" 2>/dev/null || true
      for _ in $(seq 1 50); do alive "$p" || break; sleep 0.1; done
      alive "$p" && kill -9 "$(cat "$state/$p.pid")" 2>/dev/null || true
    fi
  done
  rm -rf "$state"
  say "stopped and removed $state"
}

# Stop and start kube-apiserver alone (etcd keeps the data): the resilience tests use it.
restart_apiserver() {
  alive kube-apiserver || die "not running: scripts/testenv.sh up"
  kill "$(cat "$state/kube-apiserver.pid")"
  for _ in $(seq 1 100); do alive kube-apiserver || break; sleep 0.1; done
  alive kube-apiserver && kill -9 "$(cat "$state/kube-apiserver.pid")"
  # A slow graceful shutdown can hold the port a little longer: wait until it is free.
  for _ in $(seq 1 100); do alive kube-apiserver || break; sleep 0.1; done
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
    sleep 0.1
  done
  sleep "${2:-0}"
  start_apiserver
  wait_ready
  say "kube-apiserver restarted"
}

case "${1:-}" in
  up) up ;;
  restart-apiserver) restart_apiserver "$@" ;;
  down) down ;;
  build) build ;;
  env) [ -f "$state/kubeconfig" ] || die "not running: scripts/testenv.sh up"; echo "export KUBECONFIG=$state/kubeconfig" ;;
  -h|--help|help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
