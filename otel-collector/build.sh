#!/usr/bin/env bash
# Builds the stack's Go programs from Go modules (the Go module proxy only) into a
# cache outside the repository, for the tests and for running the stack without
# Docker:
#
#   ${TORCHELASTIC_OTEL_CACHE:-$HOME/.cache/torchelastic-otel}/bin/otelcol-torchelastic
#   ${TORCHELASTIC_OTEL_CACHE:-$HOME/.cache/torchelastic-otel}/bin/jaeger      (Jaeger v2)
#   ${TORCHELASTIC_OTEL_CACHE:-$HOME/.cache/torchelastic-otel}/bin/prometheus  (Prometheus 3)
#
# Usage: otel-collector/build.sh [collector] [jaeger] [prometheus]   (default: collector)
#
# Each binary has a stamp next to it (bin/.NAME.stamp): a hash of what its build
# depends on (its version in versions.env, the builder manifest for the collector,
# the Go version, and RECIPE below, to bump when a build step here changes).
# A binary whose stamp matches is not rebuilt, so calling this on every `make test`
# costs nothing once built. GOMODCACHE and GOCACHE are honoured, so a build can be
# measured from empty caches.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${TORCHELASTIC_OTEL_CACHE:-$HOME/.cache/torchelastic-otel}
bin=$cache/bin
mkdir -p "$bin" "$cache/build"

command -v go >/dev/null || { echo "build.sh: needs Go (go1.26+) on PATH" >&2; exit 1; }
go_version=$(go env GOVERSION)
# Static binaries: they run on any Linux of the same architecture.
export CGO_ENABLED=0

# Bump when a build step below changes, so that every binary is rebuilt.
RECIPE=1

stamp_of() { # NAME VERSION [FILE...] -> hash of the inputs that decide NAME's build
    local name=$1 version=$2; shift 2
    { echo "$name $version $go_version recipe $RECIPE"; [ $# -eq 0 ] || cat "$@"; } | sha256sum | cut -d' ' -f1
}

up_to_date() { # NAME STAMP
    [ -x "$bin/$1" ] && [ -f "$bin/.$1.stamp" ] && [ "$(cat "$bin/.$1.stamp")" = "$2" ]
}

build_collector() {
    local stamp
    stamp=$(stamp_of otelcol-torchelastic "$OTELCOL_VERSION" "$here/builder-config.yaml")
    if up_to_date otelcol-torchelastic "$stamp"; then
        echo "build.sh: otelcol-torchelastic $OTELCOL_VERSION is up to date"; return
    fi
    echo "build.sh: building otelcol-torchelastic $OTELCOL_VERSION (a few minutes the first time)"
    local work=$cache/build/otelcol
    mkdir -p "$work"
    # The builder, pinned to the collector release of the manifest, generates the
    # distribution's Go sources. Its own module step (`go mod tidy`) also resolves
    # the components' test-only imports, some of which the Go module proxy does not
    # serve (contrib's pkg/semconvtest), so the modules are resolved here instead:
    # exactly the manifest's versions, its replaces, and only what the binary imports.
    GOBIN=$cache/tools go install "go.opentelemetry.io/collector/cmd/builder@$OTELCOL_VERSION"
    rm -rf "$work/otelcol-torchelastic-src"
    # The manifest's output_path is relative: run the builder inside the cache.
    (cd "$work" && "$cache/tools/builder" --config="$here/builder-config.yaml" \
        --skip-get-modules --skip-compilation >"$work/builder.log" 2>&1) \
        || { cat "$work/builder.log" >&2; exit 1; }
    local module modules replaces
    module=$(awk '$1 == "module:" {print $2; exit}' "$here/builder-config.yaml")
    modules=$(awk '$1 == "-" && $2 == "gomod:" {print $3 "@" $4}' "$here/builder-config.yaml")
    replaces=$(awk '$1 == "-" && $3 == "=>" {print "-replace=" $2 "=" $4 "@" $5}' \
        "$here/builder-config.yaml")
    (
        cd "$work/otelcol-torchelastic-src"
        go mod init "$module" >/dev/null 2>&1
        # shellcheck disable=SC2086 # one argument per replace
        [ -z "$replaces" ] || go mod edit $replaces
        # shellcheck disable=SC2086 # one argument per module
        go get $modules
        GOFLAGS=-mod=mod go build -trimpath -ldflags='-s -w' -o otelcol-torchelastic .
    )
    install -m 0755 "$work/otelcol-torchelastic-src/otelcol-torchelastic" "$bin/otelcol-torchelastic"
    echo "$stamp" > "$bin/.otelcol-torchelastic.stamp"
}

build_jaeger() {
    local stamp
    stamp=$(stamp_of jaeger "$JAEGER_VERSION")
    if up_to_date jaeger "$stamp"; then
        echo "build.sh: jaeger $JAEGER_V2_VERSION is up to date"; return
    fi
    echo "build.sh: building jaeger $JAEGER_V2_VERSION (module $JAEGER_VERSION)"
    # `go install …@version` refuses jaeger's module: its go.mod has a replace
    # directive. A throw-away module that requires it as a tool builds the same
    # package (replace directives of dependencies do not apply).
    local work=$cache/build/jaeger
    rm -rf "$work" && mkdir -p "$work"
    (
        cd "$work"
        go mod init torchelastic-otel.local/jaeger-build >/dev/null 2>&1
        go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION"
        go build -trimpath -ldflags='-s -w' -o "$bin/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger
    )
    echo "$stamp" > "$bin/.jaeger.stamp"
}

build_prometheus() {
    local stamp
    stamp=$(stamp_of prometheus "$PROMETHEUS_VERSION")
    if up_to_date prometheus "$stamp"; then
        echo "build.sh: prometheus $PROMETHEUS_RELEASE is up to date"; return
    fi
    echo "build.sh: building prometheus $PROMETHEUS_RELEASE (module $PROMETHEUS_VERSION)"
    # remove_all_sd leaves out every service-discovery plugin (cloud SDKs, Kubernetes
    # client): the tests scrape nothing, they push through the OTLP receiver.
    GOBIN=$bin go install -trimpath -ldflags='-s -w' -tags remove_all_sd \
        "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION"
    echo "$stamp" > "$bin/.prometheus.stamp"
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(collector)
for target in "${targets[@]}"; do
    case $target in
        collector) build_collector ;;
        jaeger) build_jaeger ;;
        prometheus) build_prometheus ;;
        all) build_collector; build_jaeger; build_prometheus ;;
        *) echo "build.sh: unknown target '$target' (collector, jaeger, prometheus, all)" >&2; exit 2 ;;
    esac
done
