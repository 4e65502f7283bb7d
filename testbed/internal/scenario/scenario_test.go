package scenario

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func load(t *testing.T, text string) (*Scenario, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.yaml")
	if err := os.WriteFile(path, []byte("name: t\nnodes: [{name: n}]\n"+text), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

func TestLoadBalancerPools(t *testing.T) {
	for _, c := range []struct{ text, err string }{
		{"loadBalancer: {mode: proxy}", ""},
		{"loadBalancer: {mode: l3, pool: 192.0.2.0/25}", ""},
		{"loadBalancer: {mode: unreachable, pool: 203.0.113.64/26}", ""},
		{"loadBalancer: {mode: assign, pool: 127.0.100.0/24}", ""},
		// Load balancers in namespaces: documentation ranges only.
		{"loadBalancer: {mode: proxy, pool: 10.0.0.0/24}", "must lie within 192.0.2.0/24 or 203.0.113.0/24"},
		{"loadBalancer: {mode: l3, pool: 203.0.113.0/23}", "must lie within"},
		{"loadBalancer: {mode: l3, pool: 127.0.100.0/24}", "must lie within"},
		// Addresses the suite probes from the host: loopback only.
		{"loadBalancer: {mode: assign, pool: 203.0.113.0/24}", "must be in 127.0.0.0/8"},
		{"loadBalancer: {mode: dsr}", "is not one of none, assign, fail, proxy, l3, unreachable"},
	} {
		_, err := load(t, c.text)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.text, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want %q", c.text, err, c.err)
		}
	}
}

func TestNetworkProfiles(t *testing.T) {
	s, err := load(t, "network: {kubeProxy: nftables, policy: kube-router}\nclient: {behindNAT: true}")
	if err != nil || s.Network.KubeProxy != "nftables" || s.Network.Policy != "kube-router" || !s.Client.BehindNAT {
		t.Errorf("%+v %v", s, err)
	}
	for text, want := range map[string]string{
		"network: {kubeProxy: ipvs}": "network.kubeProxy \"ipvs\" is not one of iptables, nftables",
		"network: {policy: calico}":  "network.policy \"calico\" is not one of none, kube-router",
		"network: {policies: none}":  "unknown field",
		"client: {nat: true}":        "unknown field",
	} {
		if _, err := load(t, text); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", text, err, want)
		}
	}
}
