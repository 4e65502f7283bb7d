#!/usr/bin/env bash
# Builds the test bed and agnhost into testbed/bin/ (gitignored), reusing Go's module and
# build caches. The first build compiles k8s.io/kubernetes' control plane (about 9 minutes
# on 2 cores); later builds take seconds.
#
# Run-time needs (Debian packages): iproute2 (ip netns), util-linux (nsenter), iptables,
# busybox-static (busybox images), nginx-light (nginx images).
set -euo pipefail
cd "$(dirname "$0")"
K8S_VERSION=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
pkg=k8s.io/component-base/version
minor=$(echo "$K8S_VERSION" | cut -d. -f2)
ldflags="-X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
mkdir -p bin
go build -ldflags "$ldflags" -o bin/testbed ./cmd/testbed
go build -o bin/agnhost k8s.io/kubernetes/test/images/agnhost
echo "built $(pwd)/bin/testbed ($K8S_VERSION) and $(pwd)/bin/agnhost"
