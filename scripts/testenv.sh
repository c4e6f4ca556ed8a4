#!/usr/bin/env bash
# The real components argo-drift's integration tests run against, all on loopback:
# kube-apiserver of a current Kubernetes release (with etcd), a second independent API server on
# request, and a real Argo CD (server, application-controller, repo-server,
# applicationset-controller, with Redis, helm and kustomize), every binary built from the Go module
# proxy and cached, keyed by version.
#
#   scripts/testenv.sh up [--cluster NAME]    start an API server (built once); prints `export` lines
#                                             (NAME: hub, the default, or spoke)
#   scripts/testenv.sh argocd                 `up`, then the real Argo CD against it; prints `export`
#                                             lines for its address, CA and API token
#   scripts/testenv.sh env [--cluster NAME]   print the `export` lines of a running environment
#   scripts/testenv.sh logs [LINES]           the last lines of every Argo CD component's log
#   scripts/testenv.sh down [--cluster NAME]  stop it (with Argo CD, for the hub) and delete its state
#   scripts/testenv.sh build                  only build and cache every binary
#   scripts/testenv.sh browser                Debian's Chromium, and the UI extension's npm packages
#                                             (pinned lockfile) with its test harness built; prints
#                                             `export` lines for both
#   scripts/testenv.sh gitops-diff            build Argo CD's diff engine as a command (benchmarks)
#   scripts/testenv.sh gitops-engine-source   print the pinned gitops-engine's source directory
#   scripts/testenv.sh tools                  build helm and kustomize (pinned); prints `export` lines
#   scripts/testenv.sh kubectl                build kubectl (the API server's release); prints `export`
#   scripts/testenv.sh forge                  build Gitea (pinned), the forge whose pull-request API
#                                             (GitHub's request, under /api/v1) adopt is tested on
#   scripts/testenv.sh promtool               Debian's prometheus package (for promtool); prints
#                                             an `export` line for it
#   scripts/testenv.sh versions               the pinned versions
#   scripts/testenv.sh argocd-source          print the pinned Argo CD release's source directory
#   scripts/testenv.sh restart-apiserver [SECONDS]   stop the hub's API server, wait, start it again
#
# With KUBECONFIG already set (kind, k3d, a real cluster), `up` starts no API server and `argocd`
# runs Argo CD's components on this machine against that cluster, as Argo CD's own local
# development setup (its Procfile) does.
#
# Environment:
#   ARGO_DRIFT_TESTENV_CACHE  built binaries and Argo CD's release manifests (~/.cache/argo-drift)
#   ARGO_DRIFT_TESTENV_DIR    certificates, etcd data, logs, kubeconfigs (/tmp/argo-drift-testenv)
#   ARGO_DRIFT_TESTENV_PORT   the hub API server's secure port (16443; the spoke's is 1000 higher)
set -euo pipefail

# Pinned releases. kube-apiserver and Argo CD are built with Go modules (the way `go install`
# would, were it not for their replace directives); Argo CD 3.6 needs Go 1.27, which the go
# command fetches as a toolchain module.
K8S_VERSION=1.37.2
ARGOCD_VERSION=3.6.2
ARGOCD_GO=go1.27.3
HELM_VERSION=4.3.2
KUSTOMIZE_VERSION=5.8.1
# The forge adopt opens pull requests on in tests (its API takes GitHub's pull-request request).
GITEA_VERSION=1.27.3

cache=${ARGO_DRIFT_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/argo-drift}
base_state=${ARGO_DRIFT_TESTENV_DIR:-/tmp/argo-drift-testenv}
base_port=${ARGO_DRIFT_TESTENV_PORT:-16443}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$cache/bin
apiserver=$bin/kube-apiserver-v$K8S_VERSION
kubectl=$bin/kubectl-v$K8S_VERSION
argocd=$bin/argocd-v$ARGOCD_VERSION
argocd_release=$cache/argocd-v$ARGOCD_VERSION-manifests
tools=$cache/tools-helm-v$HELM_VERSION-kustomize-v$KUSTOMIZE_VERSION
gitea=$bin/gitea-v$GITEA_VERSION
# Gitea's templates and locales, read at run time (a build without its `bindata` tag).
gitea_root=$cache/src/gitea-v$GITEA_VERSION

# Argo CD's ports (loopback only).
argocd_port=$((base_port + 1637))          # argocd-server (HTTPS and gRPC): 18080
repo_port=$((argocd_port + 1))             # argocd-repo-server: 18081
redis_port=$((argocd_port + 2))            # redis: 18082
metrics_base=$((argocd_port + 3))          # components' metrics and probes: 18083..18088
# The hub's API server sends its audit events here (deploy/audit/webhook-kubeconfig.yaml); a
# test that runs argo-drift's receiver binds it.
audit_webhook_port=$((argocd_port + 13))   # 18093
argocd_ns=argocd
# Argo CD also manages the Applications of these namespaces ("apps in any namespace"); a test that
# wants the real Argo CD to act on its Applications makes its namespace with this prefix.
apps_namespaces="argo-drift-apps-*"
# Argo CD's full comparison period (argocd-cm timeout.reconciliation, which Argo CD's manifests
# pass to its components as ARGOCD_RECONCILIATION_TIMEOUT): short, so tests need not wait.
reconciliation_timeout=10s

say() { printf 'testenv: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

# Tests run in parallel, and on a fresh machine two of them may need the same package at once
# (seen: two browser tests, one apt-get refused "Could not get lock /var/lib/dpkg/lock-frontend"):
# installs are serialised on a lock of ours, what is missing is looked at again once it is held,
# and apt waits for a dpkg lock held by anything else (DPkg::Lock::Timeout).
need_packages() {
  local missing
  mapfile -t missing < <(missing_packages "$@")
  [ ${#missing[@]} -eq 0 ] && return 0
  mkdir -p "$cache"
  exec 7>"$cache/apt.lock"
  flock -w 900 7 || die "another scripts/testenv.sh has held $cache/apt.lock for 15 minutes"
  mapfile -t missing < <(missing_packages "$@")
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null
  fi
  exec 7>&-
}

cluster=hub
parse_cluster() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --cluster) cluster=${2:?--cluster needs a name}; shift 2 ;;
      --cluster=*) cluster=${1#--cluster=}; shift ;;
      *) die "unknown argument $1 (see the head of $0)" ;;
    esac
  done
  case "$cluster" in
    hub) state=$base_state; port=$base_port ;;
    spoke) state=$base_state-spoke; port=$((base_port + 1000)) ;;
    *) die "unknown cluster '$cluster': hub or spoke" ;;
  esac
  etcd_port=$((port + 1))
  etcd_peer_port=$((port + 2))
}

# --- building from Go modules ------------------------------------------------------------------

# Go's build cache for these builds: several GB once Kubernetes and Argo CD are built, so it is
# our own and removed once every binary is cached (drop_gocache), not left in the user's.
gocache=$cache/build/go-cache
drop_gocache() { rm -rf "$gocache"; }

# gobuild OUT PACKAGE GO_MOD_TEXT [GOTOOLCHAIN]: build PACKAGE in a module of its own whose go.mod
# is GO_MOD_TEXT, into OUT (atomically; the module directory and the build cache are kept for the
# next build).
gobuild() {
  local out=$1 pkg=$2 gomod=$3 toolchain=${4:-local} dir ldflags=${5:-}
  dir=$cache/build/$(basename "$out")
  mkdir -p "$dir" "$bin"
  printf '%s\n' "$gomod" >"$dir/go.mod"
  say "building $(basename "$out") from Go modules (log: $dir/build.log)"
  (
    cd "$dir"
    export GOTOOLCHAIN=$toolchain GOFLAGS=-mod=mod CGO_ENABLED=0 GOCACHE=$gocache
    go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg"
  ) >"$dir/build.log" 2>&1 || { tail -30 "$dir/build.log" >&2; die "building $pkg failed (log: $dir/build.log)"; }
  mv "$out.tmp" "$out"
}

# module_file FIELD PATH VERSION [GOTOOLCHAIN]: download a released module from the module proxy
# and print one of `go mod download -json`'s fields (GoMod: its go.mod file; Dir: its source).
module_file() {
  local field=$1 path=$2 version=$3 toolchain=${4:-local} file
  file=$(cd "$cache" && GOTOOLCHAIN=$toolchain GOFLAGS=-mod=mod go mod download -json "$path@$version" 2>/dev/null \
    | sed -n 's/.*"'"$field"'": "\(.*\)".*/\1/p')
  [ -n "$file" ] && [ -e "$file" ] || die "the module proxy did not serve $path@$version"
  printf '%s\n' "$file"
}

# The go.mod of a released module, as the module proxy serves it.
module_gomod() { cat "$(module_file GoMod "$@")"; }

# The source directory of a released module (downloaded into Go's module cache).
module_dir() { module_file Dir "$@"; }

need_go() {
  command -v go >/dev/null || die "Go is needed to build the test binaries (the machine image has Go 1.26)"
}

# k8s_build OUT COMMAND: a command of k8s.io/kubernetes (cmd/COMMAND) at the pinned release.
# k8s.io/kubernetes replaces every k8s.io staging module with its own ./staging copy; outside its
# repository those are the published modules v0.<minor>.<patch>.
k8s_build() {
  local out=$1 command=$2 staging minor=${K8S_VERSION#*.}
  need_go
  mkdir -p "$cache"
  staging=$(module_gomod k8s.io/kubernetes "v$K8S_VERSION" \
    | sed -nE 's#^\s*(k8s\.io/[a-z0-9-]+) => \./staging/src/k8s\.io/[a-z0-9-]+.*#\t\1 => \1 v0.'"$minor"'#p')
  [ -n "$staging" ] || die "no staging modules found in k8s.io/kubernetes@v$K8S_VERSION's go.mod"
  gobuild "$out" "k8s.io/kubernetes/cmd/$command" "$(printf 'module argo-drift.io/testenv/%s\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n%s\n)' "$command" "$K8S_VERSION" "$staging")" \
    local "-X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*} -X k8s.io/component-base/version.gitTreeState=clean"
}

build_apiserver() {
  [ -x "$apiserver" ] && return 0
  k8s_build "$apiserver" kube-apiserver
}

# kubectl of the same release, for the tests that run documented commands (docs/install.md).
build_kubectl() {
  [ -x "$kubectl" ] && return 0
  k8s_build "$kubectl" kubectl
  drop_gocache
}

build_argocd() {
  [ -x "$argocd" ] && [ -x "$argocd_release/bin/git-verify-wrapper.sh" ] && return 0
  need_go
  mkdir -p "$cache"
  local gomod replaces
  gomod=$(module_gomod github.com/argoproj/argo-cd/v3 "v$ARGOCD_VERSION" "$ARGOCD_GO")
  # Argo CD's own replace block, less its ./gitops-engine (a nested module, not in the zip): the
  # gitops-engine module is tagged at the same release.
  replaces=$(printf '%s\n' "$gomod" | awk '/^replace \(/{p=1} p{print} p&&/^\)/{p=0}')
  if [ ! -x "$argocd" ]; then
    gobuild "$argocd" github.com/argoproj/argo-cd/v3/cmd "$(printf 'module argo-drift.io/testenv/argocd\n\ngo 1.27.0\n\nrequire (\n\tgithub.com/argoproj/argo-cd/v3 v%s\n\tgithub.com/argoproj/argo-cd/gitops-engine/v3 v%s\n)\n\n%s' "$ARGOCD_VERSION" "$ARGOCD_VERSION" "$replaces")" \
      "$ARGOCD_GO" "-X github.com/argoproj/argo-cd/v3/common.version=$ARGOCD_VERSION -X github.com/argoproj/argo-cd/v3/common.gitTreeState=clean"
  fi
  release_manifests
}

# gitops-diff (scripts/gitops-diff): Argo CD's diff engine of the pinned release, for the diff
# benchmark's side-by-side figures.
# The cached command is named after its source too, so that a changed main.go is rebuilt.
gitops_diff=$bin/gitops-diff-v$ARGOCD_VERSION-$(sha256sum "$root/scripts/gitops-diff/main.go" | cut -c1-12)
build_gitops_diff() {
  [ -x "$gitops_diff" ] && return 0
  need_go
  mkdir -p "$cache/build/$(basename "$gitops_diff")"
  cp "$root/scripts/gitops-diff/main.go" "$cache/build/$(basename "$gitops_diff")/main.go"
  local replaces
  replaces=$(module_gomod github.com/argoproj/argo-cd/gitops-engine/v3 "v$ARGOCD_VERSION" "$ARGOCD_GO" | awk '/^replace \(/{p=1} p{print} p&&/^\)/{p=0}')
  gobuild "$gitops_diff" . "$(printf 'module argo-drift.io/testenv/gitops-diff\n\ngo 1.27.0\n\nrequire github.com/argoproj/argo-cd/gitops-engine/v3 v%s\n\n%s' "$ARGOCD_VERSION" "$replaces")" "$ARGOCD_GO"
}

# helm and kustomize, which Argo CD's repo-server runs, on its PATH.
build_tools() {
  need_go
  mkdir -p "$tools"
  local helm_replaces
  [ -x "$tools/helm" ] || { helm_replaces=$(module_gomod helm.sh/helm/v4 "v$HELM_VERSION" | awk '/^replace \(/{p=1} p{print} p&&/^\)/{p=0} /^replace [^(]/{print}')
  gobuild "$tools/helm" helm.sh/helm/v4/cmd/helm "$(printf 'module argo-drift.io/testenv/helm\n\ngo 1.26.0\n\nrequire helm.sh/helm/v4 v%s\n\n%s' "$HELM_VERSION" "$helm_replaces")" \
    local "-X helm.sh/helm/v4/internal/version.version=v$HELM_VERSION"; }
  # Argo CD 3.6 ships kustomize 5.8.3, whose kube-openapi pseudo-version the module proxy does not
  # serve; 5.8.1 builds. The same Go toolchain as Argo CD.
  [ -x "$tools/kustomize" ] || gobuild "$tools/kustomize" sigs.k8s.io/kustomize/kustomize/v5 \
    "$(printf 'module argo-drift.io/testenv/kustomize\n\ngo 1.27.0\n\nrequire sigs.k8s.io/kustomize/kustomize/v5 v%s\n' "$KUSTOMIZE_VERSION")" "$ARGOCD_GO"
  # The last of the builds (the API server's went first).
  drop_gocache
}

# Gitea from its released module. Its go.mod has replace directives (and names the module
# gitea.dev), so it is built inside a copy of the module's source, which also serves as its
# static root. Pure Go (modernc sqlite): no cgo.
build_forge() {
  [ -x "$gitea" ] && [ -d "$gitea_root/options" ] && return 0
  need_go
  local src log=$cache/build/gitea.log
  mkdir -p "$cache/build" "$bin" "$cache/src"
  src=$(module_dir code.gitea.io/gitea "v$GITEA_VERSION")
  rm -rf "$gitea_root.tmp" && cp -r "$src" "$gitea_root.tmp" && chmod -R u+w "$gitea_root.tmp"
  say "building gitea v$GITEA_VERSION from Go modules (log: $log)"
  (
    cd "$gitea_root.tmp"
    export GOFLAGS=-mod=mod CGO_ENABLED=0 GOCACHE=$gocache
    go build -trimpath -ldflags "-s -w -X main.Version=$GITEA_VERSION" -o "$gitea.tmp" .
  ) >"$log" 2>&1 || { tail -30 "$log" >&2; die "building gitea failed (log: $log)"; }
  rm -rf "$gitea_root" && mv "$gitea_root.tmp" "$gitea_root"
  mv "$gitea.tmp" "$gitea"
  drop_gocache
}

build() {
  build_apiserver
  build_argocd
  build_tools
  build_forge
  build_kubectl
}

# --- the API server ----------------------------------------------------------------------------

certificates() {
  [ -f "$state/pki/server.crt" ] && return 0
  command -v openssl >/dev/null || need_packages openssl
  local d=$state/pki
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=argo-drift-testenv-$cluster-ca" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  # One serving certificate for every server on loopback: kube-apiserver and argocd-server.
  openssl req -newkey rsa:2048 -nodes -subj "/CN=argo-drift-testenv" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc,DNS:argocd-server\nextendedKeyUsage=serverAuth\n' >"$d/ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 3650 \
    -extfile "$d/ext" -out "$d/server.crt" 2>/dev/null
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  # Tokens: an administrator (system:masters) for the tests, Argo CD's controller (also
  # cluster-admin, as Argo CD's install grants it), and an unprivileged identity whose rights come
  # only from RBAC, as argo-drift has in a real cluster.
  for t in admin argocd controller; do
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$d/$t.token"
  done
  {
    echo "$(cat "$d/admin.token"),admin,admin,system:masters"
    echo "$(cat "$d/argocd.token"),system:serviceaccount:argocd:argocd-application-controller,argocd-sa,system:masters"
    echo "$(cat "$d/controller.token"),system:serviceaccount:argocd:argo-drift,argo-drift-sa,system:serviceaccounts"
  } >"$d/tokens.csv"
  chmod 600 "$d"/*.key "$d"/*.token "$d/tokens.csv"
}

# Two people with tokens of their own (the audit tests name them), added to an older state too.
user_tokens() {
  local d=$state/pki t
  for t in alice bob; do
    [ -f "$d/$t.token" ] && continue
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$d/$t.token"
    chmod 600 "$d/$t.token"
    echo "$(cat "$d/$t.token"),$t,$t,system:masters" >>"$d/tokens.csv"
  done
}

# The audit webhook (hub only): the receiver's serving certificate (signed by the test CA, which
# the webhook kubeconfig trusts), a CA of its own for the API server's client certificate, and
# the shipped webhook kubeconfig with this environment's addresses and files.
audit_webhook() {
  local d=$state/pki/audit ca=$state/pki
  if [ ! -f "$d/client.crt" ]; then
    mkdir -p "$d"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=argo-drift-audit" -keyout "$d/receiver.key" -out "$d/receiver.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$d/receiver.ext"
    openssl x509 -req -in "$d/receiver.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -CAcreateserial -days 3650 \
      -extfile "$d/receiver.ext" -out "$d/receiver.crt" 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=argo-drift-audit-clients" \
      -keyout "$d/client-ca.key" -out "$d/client-ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver-audit" -keyout "$d/client.key" -out "$d/client.csr" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >"$d/client.ext"
    openssl x509 -req -in "$d/client.csr" -CA "$d/client-ca.crt" -CAkey "$d/client-ca.key" -CAcreateserial \
      -days 3650 -extfile "$d/client.ext" -out "$d/client.crt" 2>/dev/null
    cp "$ca/ca.crt" "$d/ca.crt"
    chmod 600 "$d"/*.key
  fi
  sed -e "s|https://argo-drift-audit.argo-drift.svc:8443/audit|https://127.0.0.1:$audit_webhook_port/audit|" \
    -e "s|/etc/kubernetes/argo-drift/|$d/|g" "$root/deploy/audit/webhook-kubeconfig.yaml" >"$state/audit-webhook.kubeconfig"
}

kubeconfig() {
  local user=$1 token_file=$2 out=$3 namespace=${4:-default}
  cat >"$out.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: argo-drift-testenv-$cluster
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 <"$state/pki/ca.crt")
users:
- name: $user
  user:
    token: $(cat "$token_file")
contexts:
- name: argo-drift-testenv-$cluster
  context: {cluster: argo-drift-testenv-$cluster, user: $user, namespace: $namespace}
current-context: argo-drift-testenv-$cluster
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

# start NAME COMMAND...: run a server in the background, its log in $state/NAME.log. The servers
# must not inherit the lock (fd 9), or it would never be released.
start() {
  local name=$1; shift
  alive "$name" && return 0
  nohup "$@" >"$state/$name.log" 2>&1 9>&- &
  echo $! >"$state/$name.pid"
}

# supervise NAME COMMAND...: like start, but the command is started again a second after it
# exits, as the kubelet restarts a crashed container (restartPolicy: Always). The loop leads a
# process group of its own, so that stop ends the command with it. Argo CD v3.6.2's application
# controller can panic when a CRD appears while a settings change invalidates its cluster cache
# (gitops-engine pkg/cache/cluster.go:696: startMissingWatches, run by
# reconcileAPIServiceWatches' retries, writes apisMeta after Invalidate set it to nil; seen here
# in a cold run); in a cluster its pod is restarted and resumes its operations, and so it is here.
supervise() {
  local name=$1; shift
  alive "$name" && return 0
  # shellcheck disable=SC2016 # expanded by the loop's own shell
  setsid nohup bash -c 'while :; do "$@"; echo "scripts/testenv.sh: $0 exited with status $?; starting it again in 1 s" >&2; sleep 1; done' \
    "$name" "$@" >"$state/$name.log" 2>&1 9>&- &
  echo $! >"$state/$name.pid"
}

stop() {
  local name=$1
  if alive "$name"; then
    # A supervised command's whole group (the loop and the command), else the process alone.
    kill -- "-$(cat "$state/$name.pid")" 2>/dev/null || kill "$(cat "$state/$name.pid")" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$name" || break; sleep 0.1; done
    if alive "$name"; then
      kill -9 -- "-$(cat "$state/$name.pid")" 2>/dev/null || kill -9 "$(cat "$state/$name.pid")" 2>/dev/null || true
    fi
  fi
  rm -f "$state/$name.pid"
}

ready() {
  curl -sf --max-time 2 --cacert "$state/pki/ca.crt" -H "Authorization: Bearer $(cat "$state/pki/admin.token")" \
    "https://127.0.0.1:$port/readyz" >/dev/null 2>&1
}

start_etcd() {
  alive etcd && return 0
  need_packages etcd-server
  mkdir -p "$state/etcd"
  say "starting etcd on 127.0.0.1:$etcd_port"
  start etcd "$(command -v etcd || echo /usr/bin/etcd)" --name "argo-drift-testenv-$cluster" --data-dir "$state/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "argo-drift-testenv-$cluster=http://127.0.0.1:$etcd_peer_port" \
    --quota-backend-bytes 4294967296 --unsafe-no-fsync
}

start_apiserver() {
  local d=$state/pki webhook=()
  # The hub's audit events also go to argo-drift's webhook receiver, when a test runs one
  # (batched for a second; while nothing listens, the API server retries and drops them).
  if [ "$cluster" = hub ]; then
    audit_webhook
    webhook=(--audit-webhook-config-file "$state/audit-webhook.kubeconfig" --audit-webhook-mode batch
      --audit-webhook-batch-max-wait 1s --audit-webhook-initial-backoff 1s)
  fi
  # One started by an older version of this script (other flags, other tokens) is restarted.
  local args
  args="${webhook[*]} tokens:$(sha256sum "$d/tokens.csv" | cut -c1-16) policy:$(sha256sum "$root/deploy/audit/audit-policy.yaml" | cut -c1-16)"
  if alive kube-apiserver && [ "$(cat "$state/kube-apiserver.args" 2>/dev/null)" != "$args" ]; then
    say "restarting kube-apiserver: its flags changed"
    stop kube-apiserver
  fi
  alive kube-apiserver && return 0
  printf '%s' "$args" >"$state/kube-apiserver.args"
  say "starting kube-apiserver v$K8S_VERSION on 127.0.0.1:$port"
  start kube-apiserver "$apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
    --tls-cert-file "$d/server.crt" --tls-private-key-file "$d/server.key" --client-ca-file "$d/ca.crt" \
    --token-auth-file "$d/tokens.csv" --authorization-mode RBAC --anonymous-auth=false \
    --service-account-key-file "$d/sa.pub" --service-account-signing-key-file "$d/sa.key" \
    --service-account-issuer https://kubernetes.default.svc --api-audiences https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=true \
    --enable-admission-plugins NamespaceLifecycle,LimitRanger,DefaultStorageClass,ResourceQuota \
    --disable-admission-plugins ServiceAccount \
    --endpoint-reconciler-type none --max-requests-inflight 2000 --max-mutating-requests-inflight 1000 \
    --audit-policy-file "$root/deploy/audit/audit-policy.yaml" --audit-log-path "$state/audit.log" \
    --audit-log-format json --audit-log-maxsize 100 --audit-log-maxbackup 1 "${webhook[@]}" \
    --cert-dir "$state/pki"
}

wait_ready() {
  for _ in $(seq 1 240); do
    ready && return 0
    alive kube-apiserver || { tail -20 "$state/kube-apiserver.log" >&2; die "kube-apiserver exited; log: $state/kube-apiserver.log"; }
    sleep 0.5
  done
  die "kube-apiserver not ready after 120 s; log: $state/kube-apiserver.log"
}

# kube PATH METHOD [CURL ARGS...]: a request to the API server as the administrator.
kube() {
  local path=$1 method=$2; shift 2
  curl -sf --cacert "$state/pki/ca.crt" -H "Authorization: Bearer $(cat "$state/pki/admin.token")" \
    -X "$method" "$@" "https://127.0.0.1:$port$path"
}

# apply_file COLLECTION_PATH NAME FILE [MANAGER]: server-side apply of one YAML document.
apply_file() {
  kube "$1/$2?fieldManager=${4:-argo-drift-testenv}&force=true" PATCH \
    -H 'Content-Type: application/apply-patch+yaml' --data-binary @"$3" >/dev/null \
    || die "could not apply $2 from $3"
}

yaml_name() { awk '/^metadata:/ {m=1; next} m && /^  name:/ {print $2; exit}' "$1"; }

install_crds() {
  local f
  for f in "$argocd_release"/crds/*.yaml "$root"/deploy/testenv/crds/*.yaml; do
    apply_file /apis/apiextensions.k8s.io/v1/customresourcedefinitions "$(yaml_name "$f")" "$f"
  done
}

# The Argo CD CRDs are the release's own; fetching them needs only the module, not the build.
release_manifests() {
  [ -x "$argocd_release/bin/git-verify-wrapper.sh" ] && return 0
  need_go
  mkdir -p "$cache"
  local src
  src=$(module_dir github.com/argoproj/argo-cd/v3 "v$ARGOCD_VERSION" "$ARGOCD_GO")
  rm -rf "$argocd_release.tmp"
  mkdir -p "$argocd_release.tmp/crds" "$argocd_release.tmp/config"
  cp "$src"/manifests/crds/*-crd.yaml "$argocd_release.tmp/crds/"
  cp "$src"/manifests/base/config/argocd-*.yaml "$argocd_release.tmp/config/"
  # The repo-server runs git-verify-wrapper.sh for every manifest generation (Argo CD's image
  # has it on PATH; reposerver/repository/repository.go calls VerifyCommitSignature).
  mkdir -p "$argocd_release.tmp/bin"
  cp "$src"/hack/git-verify-wrapper.sh "$src"/hack/gpg-wrapper.sh "$argocd_release.tmp/bin/"
  chmod 755 "$argocd_release.tmp"/bin/*
  rm -rf "$argocd_release" && mv "$argocd_release.tmp" "$argocd_release"
}

exports() {
  if [ "$external" = 1 ]; then
    echo "export KUBECONFIG=$KUBECONFIG"
  else
    echo "export KUBECONFIG=$state/kubeconfig"
  fi
  echo "export ARGO_DRIFT_ARGOCD_CRDS=$argocd_release/crds"
  # The API server's audit log (deploy/audit/audit-policy.yaml), JSON lines; none for a cluster
  # of KUBECONFIG's.
  [ "$external" = 1 ] || echo "export ARGO_DRIFT_TESTENV_AUDIT_LOG=$state/audit.log"
  # The audit webhook's receiver address and files (the hub's API server posts there), and the
  # directory of alice's and bob's tokens (alice.token, bob.token).
  if [ "$external" = 0 ] && [ "$cluster" = hub ]; then
    echo "export ARGO_DRIFT_TESTENV_AUDIT_WEBHOOK_ADDR=127.0.0.1:$audit_webhook_port"
    echo "export ARGO_DRIFT_TESTENV_AUDIT_WEBHOOK_DIR=$state/pki/audit"
    echo "export ARGO_DRIFT_TESTENV_USER_TOKENS=$state/pki"
  fi
}

external=0
up() {
  parse_cluster "$@"
  if [ "$cluster" = hub ] && [ -n "${KUBECONFIG:-}" ] && [ "${KUBECONFIG}" != "$state/kubeconfig" ]; then
    [ -f "$KUBECONFIG" ] || die "KUBECONFIG=$KUBECONFIG does not exist"
    external=1
    say "using the existing cluster in KUBECONFIG=$KUBECONFIG"
    release_manifests
    exports
    return 0
  fi
  command -v curl >/dev/null || need_packages curl
  # The Git-over-SSH tests run their own sshd on loopback.
  [ -x /usr/sbin/sshd ] || need_packages openssh-server
  mkdir -p "$state"
  # Test binaries may call `up` at the same time; one of them does the work.
  exec 9>"$state.lock"
  flock -w 2400 9 || die "another scripts/testenv.sh up holds $state.lock"
  build_apiserver
  release_manifests
  certificates
  user_tokens
  start_etcd
  start_apiserver
  wait_ready
  kubeconfig admin "$state/pki/admin.token" "$state/kubeconfig"
  kubeconfig argo-drift "$state/pki/controller.token" "$state/kubeconfig-controller"
  install_crds
  say "ready: kube-apiserver v$K8S_VERSION at https://127.0.0.1:$port (logs in $state)"
  exports
}

# --- Argo CD -----------------------------------------------------------------------------------

# The environment Argo CD's Procfile gives every component when it runs outside a cluster
# (ARGOCD_FAKE_IN_CLUSTER), with Argo CD's own kubeconfig.
argocd_env() {
  printf '%s\n' ARGOCD_FAKE_IN_CLUSTER=true "KUBECONFIG=$argocd_kubeconfig" \
    "ARGOCD_TLS_DATA_PATH=$state/argocd/tls" "ARGOCD_SSH_DATA_PATH=$state/argocd/ssh" \
    "ARGOCD_GNUPGHOME=$state/argocd/gpg/keys" "ARGOCD_GPG_DATA_PATH=$state/argocd/gpg/source" \
    ARGOCD_GPG_ENABLED=false "PATH=$tools:$argocd_release/bin:$PATH" "HOME=$state/argocd/home" \
    "ARGOCD_RECONCILIATION_TIMEOUT=$reconciliation_timeout"
}

start_argocd_component() {
  local name=$1; shift
  # A component started by an older version of this script with other arguments is restarted.
  if alive "$name" && [ "$(cat "$state/$name.args" 2>/dev/null)" != "$*" ]; then
    say "restarting $name: its arguments changed"
    stop "$name"
  fi
  alive "$name" && return 0
  printf '%s' "$*" >"$state/$name.args"
  say "starting $name"
  local vars
  mapfile -t vars < <(argocd_env)
  # The namespace comes from Argo CD's kubeconfig context (the repo-server has no --namespace).
  supervise "$name" env "${vars[@]}" "ARGOCD_BINARY_NAME=$name" "$argocd" "$@" --loglevel info
}

argocd_api() {
  local path=$1; shift
  curl -sf --max-time 10 --cacert "$state/pki/ca.crt" "$@" "https://127.0.0.1:$argocd_port$path"
}

# Argo CD's settings: the release's own ConfigMaps and Secret, then the test installation's keys
# on top, under a field manager of their own so that neither removes the other's fields (an apiKey account for argo-drift, an admin password, a short reconciliation period, the
# server certificate signed by the test CA).
argocd_settings() {
  local cfg f hash ns_path=/api/v1/namespaces/$argocd_ns
  kube /api/v1/namespaces POST -H 'Content-Type: application/json' \
    --data "{\"metadata\":{\"name\":\"$argocd_ns\"}}" >/dev/null 2>&1 || true
  for f in "$argocd_release"/config/*.yaml; do
    case "$(awk '/^kind:/ {print $2; exit}' "$f")" in
      ConfigMap) apply_file "$ns_path/configmaps" "$(yaml_name "$f")" "$f" ;;
      Secret) apply_file "$ns_path/secrets" "$(yaml_name "$f")" "$f" ;;
    esac
  done
  cfg=$state/argocd/config
  mkdir -p "$cfg"
  [ -f "$state/argocd/admin.password" ] || head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/argocd/admin.password"
  chmod 600 "$state/argocd/admin.password"
  hash=$(ARGOCD_BINARY_NAME=argocd "$argocd" account bcrypt --password "$(cat "$state/argocd/admin.password")")
  cat >"$cfg/argocd-cm.yaml" <<YAML
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-cm, namespace: $argocd_ns}
data:
  accounts.argo-drift: apiKey
  admin.enabled: "true"
  timeout.reconciliation: $reconciliation_timeout
  url: https://127.0.0.1:$argocd_port
YAML
  cat >"$cfg/argocd-rbac-cm.yaml" <<YAML
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-rbac-cm, namespace: $argocd_ns}
data:
  policy.csv: |
    g, argo-drift, role:admin
YAML
  cat >"$cfg/argocd-secret.yaml" <<YAML
apiVersion: v1
kind: Secret
metadata: {name: argocd-secret, namespace: $argocd_ns}
stringData:
  admin.password: '$hash'
  admin.passwordMtime: '2026-01-01T00:00:00Z'
YAML
  cat >"$cfg/argocd-server-tls.yaml" <<YAML
apiVersion: v1
kind: Secret
metadata: {name: argocd-server-tls, namespace: $argocd_ns, labels: {app.kubernetes.io/part-of: argocd}}
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 <"$state/pki/server.crt")
  tls.key: $(base64 -w0 <"$state/pki/server.key")
YAML
  chmod 600 "$cfg"/*.yaml
  apply_file "$ns_path/configmaps" argocd-cm "$cfg/argocd-cm.yaml" argo-drift-testenv-settings
  apply_file "$ns_path/configmaps" argocd-rbac-cm "$cfg/argocd-rbac-cm.yaml" argo-drift-testenv-settings
  apply_file "$ns_path/secrets" argocd-secret "$cfg/argocd-secret.yaml" argo-drift-testenv-settings
  apply_file "$ns_path/secrets" argocd-server-tls "$cfg/argocd-server-tls.yaml" argo-drift-testenv-settings
  # The default project, as argocd-server would create it (server/server.go,
  # initializeDefaultProject), that also admits Applications from the namespaces of "apps in any
  # namespace" (docs/operator-manual/app-any-namespace.md: spec.sourceNamespaces).
  cat >"$cfg/default-project.yaml" <<YAML
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: default, namespace: $argocd_ns}
spec:
  sourceRepos: ['*']
  destinations: [{server: '*', namespace: '*'}]
  clusterResourceWhitelist: [{group: '*', kind: '*'}]
  sourceNamespaces: ['$apps_namespaces']
YAML
  apply_file "/apis/argoproj.io/v1alpha1/namespaces/$argocd_ns/appprojects" default \
    "$cfg/default-project.yaml" argo-drift-testenv-settings
}

# An API token for the argo-drift account, made through Argo CD's own API (log in as admin, then
# POST /api/v1/account/argo-drift/token), kept while it still works.
argocd_token() {
  local token_file=$state/argocd/token session
  if [ -s "$token_file" ] && argocd_api /api/v1/session/userinfo -H "Authorization: Bearer $(cat "$token_file")" \
    | grep -q '"loggedIn":true'; then
    return 0
  fi
  session=$(argocd_api /api/v1/session -X POST -H 'Content-Type: application/json' \
    --data "{\"username\":\"admin\",\"password\":\"$(cat "$state/argocd/admin.password")\"}" \
    | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  [ -n "$session" ] || die "could not log in to argocd-server as admin (scripts/testenv.sh logs)"
  argocd_api /api/v1/account/argo-drift/token -X POST -H "Authorization: Bearer $session" \
    -H 'Content-Type: application/json' --data '{"id":"argo-drift-tests"}' \
    | sed -n 's/.*"token":"\([^"]*\)".*/\1/p' >"$token_file.tmp"
  [ -s "$token_file.tmp" ] || die "argocd-server gave no API token for the argo-drift account"
  chmod 600 "$token_file.tmp" && mv "$token_file.tmp" "$token_file"
}

argocd_exports() {
  echo "export ARGO_DRIFT_TEST_ARGOCD_SERVER=127.0.0.1:$argocd_port"
  echo "export ARGO_DRIFT_TEST_ARGOCD_CA=$state/pki/ca.crt"
  echo "export ARGO_DRIFT_TEST_ARGOCD_TOKEN_FILE=$state/argocd/token"
  echo "export ARGO_DRIFT_TEST_ARGOCD_NAMESPACE=$argocd_ns"
  echo "export ARGO_DRIFT_TEST_ARGOCD_BINARY=$argocd"
  echo "export ARGO_DRIFT_TEST_ARGOCD_APPS_NAMESPACES=$apps_namespaces"
}

argocd_up() {
  up >/dev/null
  if [ "$external" = 1 ]; then
    die "the real Argo CD runs against the project's own API server (its admin token and CA); unset KUBECONFIG"
  fi
  exec 9>"$state.argocd.lock"
  flock -w 2400 9 || die "another scripts/testenv.sh argocd holds $state.argocd.lock"
  build_argocd
  build_tools
  need_packages redis-server
  mkdir -p "$state/argocd/tls" "$state/argocd/ssh" "$state/argocd/gpg/keys" "$state/argocd/gpg/source" "$state/argocd/home"
  argocd_kubeconfig=$state/kubeconfig-argocd
  kubeconfig argocd-application-controller "$state/pki/argocd.token" "$argocd_kubeconfig" "$argocd_ns"
  argocd_settings
  start redis "$(command -v redis-server || echo /usr/bin/redis-server)" --bind 127.0.0.1 --port "$redis_port" \
    --save '' --appendonly no
  local repo=127.0.0.1:$repo_port m=$metrics_base redis=127.0.0.1:$redis_port
  start_argocd_component argocd-repo-server --address 127.0.0.1 --port "$repo_port" --redis "$redis" \
    --metrics-address 127.0.0.1 --metrics-port "$m"
  start_argocd_component argocd-application-controller --repo-server "$repo" --redis "$redis" \
    --metrics-port "$((m + 1))" --commit-server 127.0.0.1:1 --self-heal-timeout-seconds 2 \
    --application-namespaces "$apps_namespaces"
  start_argocd_component argocd-server --repo-server "$repo" --redis "$redis" --address 127.0.0.1 \
    --port "$argocd_port" --metrics-address 127.0.0.1 --metrics-port "$((m + 2))" --dex-server http://127.0.0.1:1 \
    --application-namespaces "$apps_namespaces" --enable-proxy-extension
  start_argocd_component argocd-applicationset-controller --argocd-repo-server "$repo" \
    --metrics-addr "127.0.0.1:$((m + 3))" --probe-addr "127.0.0.1:$((m + 4))" --webhook-addr "127.0.0.1:$((m + 5))"
  local p
  for _ in $(seq 1 240); do
    argocd_api /api/version >/dev/null 2>&1 && break
    for p in argocd-server argocd-repo-server argocd-application-controller argocd-applicationset-controller; do
      alive "$p" || { tail -20 "$state/$p.log" >&2; die "$p exited; log: $state/$p.log"; }
    done
    sleep 0.5
  done
  argocd_api /api/version >/dev/null || die "argocd-server did not answer /api/version in 120 s (log: $state/argocd-server.log)"
  argocd_token
  say "ready: Argo CD v$ARGOCD_VERSION at https://127.0.0.1:$argocd_port (scripts/testenv.sh logs)"
  exports
  argocd_exports
}

# The browser tests' tools: Chromium from Debian, the extension's npm packages exactly as the
# lockfile pins them (`npm ci`, again only when the lockfile changed), the harness bundle.
browser() {
  need_packages chromium
  local ui=$root/ui-extension stamp
  command -v npm >/dev/null || die "npm is needed for the UI extension's tests"
  exec 8>"$cache/ui-extension.lock"
  flock -w 600 8 || die "another scripts/testenv.sh browser holds $cache/ui-extension.lock"
  stamp=$(sha256sum "$ui/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$ui/node_modules/.argo-drift-lock" 2>/dev/null)" != "$stamp" ]; then
    say "installing the UI extension's npm packages (npm ci)"
    (cd "$ui" && npm ci --no-audit --no-fund --loglevel=error) >&2 || die "npm ci in $ui failed"
    echo "$stamp" >"$ui/node_modules/.argo-drift-lock"
  fi
  (cd "$ui" && npm run --silent build:harness) >&2 || die "building the test harness failed"
  echo "export ARGO_DRIFT_TEST_CHROMIUM=$(command -v chromium || echo /usr/bin/chromium)"
  echo "export ARGO_DRIFT_TEST_UI_EXTENSION=$ui"
}

logs() {
  parse_cluster
  local p
  for p in argocd-server argocd-repo-server argocd-application-controller argocd-applicationset-controller redis; do
    [ -f "$state/$p.log" ] || continue
    echo "===== $p ($state/$p.log), last ${1:-50} lines"
    tail -n "${1:-50}" "$state/$p.log"
  done
}

down() {
  parse_cluster "$@"
  for p in argocd-applicationset-controller argocd-application-controller argocd-server argocd-repo-server redis kube-apiserver etcd; do
    stop "$p"
  done
  rm -rf "$state"
  say "stopped and removed $state"
}

# Stop and start kube-apiserver alone (etcd keeps the data): the resilience tests use it.
# A running Argo CD is restarted with it: argocd-server v3.6.2's Application informer, seen
# here, kept serving the list it had before the restart (apps created later answered
# "permission denied", Argo CD's reply for an app it does not know), and every later test of
# the shared Argo CD failed.
restart_apiserver() {
  parse_cluster
  alive kube-apiserver || die "not running: scripts/testenv.sh up"
  local with_argocd=0 p
  alive argocd-server && with_argocd=1
  if [ "$with_argocd" = 1 ]; then
    for p in argocd-applicationset-controller argocd-application-controller argocd-server argocd-repo-server; do
      stop "$p"
    done
  fi
  kill "$(cat "$state/kube-apiserver.pid")"
  for _ in $(seq 1 100); do alive kube-apiserver || break; sleep 0.1; done
  alive kube-apiserver && kill -9 "$(cat "$state/kube-apiserver.pid")"
  # A slow graceful shutdown can hold the port a little longer: wait until it is free.
  for _ in $(seq 1 100); do alive kube-apiserver || break; sleep 0.1; done
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
    sleep 0.1
  done
  sleep "${1:-0}"
  start_apiserver
  wait_ready
  say "kube-apiserver restarted"
  if [ "$with_argocd" = 1 ]; then
    argocd_up >/dev/null
    say "Argo CD restarted"
  fi
}

case "${1:-}" in
  up) shift; up "$@" ;;
  argocd) shift; parse_cluster; argocd_up ;;
  logs) shift; logs "$@" ;;
  env) shift; parse_cluster "$@"; [ -f "$state/kubeconfig" ] || die "not running: scripts/testenv.sh up"; exports ;;
  restart-apiserver) shift; restart_apiserver "$@" ;;
  down) shift; down "$@" ;;
  build) build ;;
  # The pinned Argo CD release's source (Go's module cache): its resource_customizations tree
  # is the reference suite for the Lua runner. Needs no cluster.
  argocd-source) need_go; mkdir -p "$cache"; echo "export ARGO_DRIFT_ARGOCD_SOURCE=$(module_dir github.com/argoproj/argo-cd/v3 "v$ARGOCD_VERSION" "$ARGOCD_GO")" ;;
  browser) browser ;;
  gitops-diff) build_gitops_diff; echo "export ARGO_DRIFT_GITOPS_DIFF=$gitops_diff" ;;
  gitops-engine-source) need_go; mkdir -p "$cache"; echo "export ARGO_DRIFT_GITOPS_ENGINE_SOURCE=$(module_dir github.com/argoproj/argo-cd/gitops-engine/v3 "v$ARGOCD_VERSION" "$ARGOCD_GO")" ;;
  tools) need_go; build_tools; echo "export ARGO_DRIFT_TEST_KUSTOMIZE=$tools/kustomize"; echo "export ARGO_DRIFT_TEST_HELM=$tools/helm" ;;
  kubectl) build_kubectl; echo "export ARGO_DRIFT_TEST_KUBECTL=$kubectl" ;;
  forge) build_forge; echo "export ARGO_DRIFT_TEST_GITEA=$gitea"; echo "export ARGO_DRIFT_TEST_GITEA_ROOT=$gitea_root" ;;
  promtool) need_packages prometheus; echo "export ARGO_DRIFT_PROMTOOL=$(command -v promtool)" ;;
  versions) printf 'kubernetes v%s\nargo-cd v%s\nhelm v%s\nkustomize v%s\ngitea v%s\n' "$K8S_VERSION" "$ARGOCD_VERSION" "$HELM_VERSION" "$KUSTOMIZE_VERSION" "$GITEA_VERSION" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
