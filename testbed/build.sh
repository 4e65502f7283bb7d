#!/usr/bin/env bash
# Builds the test bed, agnhost and kube-router into testbed/bin/ (gitignored), reusing Go's
# module and build caches. The first build compiles k8s.io/kubernetes' control plane and
# kube-proxy (about 9 minutes on 2 cores) and kube-router with its own dependencies (about
# 4 minutes); later builds take seconds.
#
# Run-time needs (Debian packages): iproute2 (ip netns), util-linux (nsenter), iptables,
# nftables (nft), ipset (kube-router), haproxy (load balancer mode proxy), busybox-static
# (busybox images), nginx-light (nginx images).
set -euo pipefail
cd "$(dirname "$0")"
K8S_VERSION=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
pkg=k8s.io/component-base/version
minor=$(echo "$K8S_VERSION" | cut -d. -f2)
ldflags="-X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
mkdir -p bin
go build -ldflags "$ldflags" -o bin/testbed ./cmd/testbed
go build -o bin/agnhost k8s.io/kubernetes/test/images/agnhost
# kube-router has a module of its own (it needs client-go v0.29, the test bed v0.37).
KR_VERSION=$(cd kube-router && go list -m -f '{{.Version}}' github.com/cloudnativelabs/kube-router/v2)
(cd kube-router && go build -trimpath \
  -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KR_VERSION" \
  -o ../bin/kube-router github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
echo "built $(pwd)/bin/testbed ($K8S_VERSION), $(pwd)/bin/agnhost and $(pwd)/bin/kube-router ($KR_VERSION)"
