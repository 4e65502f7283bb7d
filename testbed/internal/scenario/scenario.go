// Package scenario declares a test bed as data: nodes, storage, load balancers and the
// conformance fixtures. Scenario files live in testbed/scenarios/*.yaml.
package scenario

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"sigs.k8s.io/yaml"
)

// Scenario is one test bed configuration.
type Scenario struct {
	Name         string       `json:"name"`
	Description  string       `json:"description,omitempty"`
	Nodes        []Node       `json:"nodes"`
	Storage      Storage      `json:"storage,omitempty"`
	Network      Network      `json:"network,omitempty"`
	LoadBalancer LoadBalancer `json:"loadBalancer,omitempty"`
	Client       Client       `json:"client,omitempty"`
	Conformance  Conformance  `json:"conformance,omitempty"`
	// Registries: how image pulls from a registry behave on the emulated nodes, keyed by
	// the registry host of an image reference (`slow.registry.example` in
	// `slow.registry.example/registry.k8s.io/pause:3.10`; `docker.io` for references
	// without one). Registries not listed answer at once.
	Registries map[string]Registry `json:"registries,omitempty"`
}

// Registry behaviour of image pulls.
type Registry struct {
	// PullSeconds: every pull of an image from this registry takes this long (a slow or
	// rate-limited registry, a large image): the kubelet's Pulling event, the container
	// waiting in ContainerCreating, then Pulled.
	PullSeconds int `json:"pullSeconds,omitempty"`
}

// Network: the per-node network components (internal/dataplane).
type Network struct {
	// KubeProxy is kube-proxy's mode in every node namespace: "iptables" (default, the
	// upstream default of v1.37) or "nftables".
	KubeProxy string `json:"kubeProxy,omitempty"`
	// Policy is the NetworkPolicy profile: "none" (default: policies are accepted and
	// not enforced, as in a cluster whose only network plugin is Flannel) or
	// "kube-router" (kube-router's network policy controller on every node).
	Policy string `json:"policy,omitempty"`
}

// Client: the client namespace the suite runs in for data-plane tests.
type Client struct {
	// BehindNAT gives the client a private address (192.168.77.10) that is translated to
	// 198.51.100.10 on its way to the load balancers, as behind a NAT gateway: the
	// client's sockets and the network see different addresses.
	BehindNAT bool `json:"behindNAT,omitempty"`
}

// Node is one emulated node (a network namespace with its agent).
type Node struct {
	Name string `json:"name"`
	// Roles become node-role.kubernetes.io/<role> labels ("control-plane", "worker", ...).
	Roles []string `json:"roles,omitempty"`
	// Zone and Region become topology.kubernetes.io/zone and /region (omitted if empty).
	Zone   string `json:"zone,omitempty"`
	Region string `json:"region,omitempty"`
	// Host becomes topology.scs.community/host-id (omitted if empty).
	Host   string            `json:"host,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	Taints []Taint           `json:"taints,omitempty"`
	// Unschedulable cordons the node.
	Unschedulable bool `json:"unschedulable,omitempty"`
	// ExternalIP adds an ExternalIP address (information only; nothing answers on it). It
	// must be a loopback address (127.0.0.0/8): the suite may probe it from the host.
	// (Load balancers exclude nodes labelled node.kubernetes.io/exclude-from-external-
	// load-balancers, as the upstream service controller does; set it under labels.)
	ExternalIP string `json:"externalIP,omitempty"`
}

// Taint of a node.
type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
}

// Storage: provisioner emulations, CSIDriver objects and storage classes.
type Storage struct {
	Provisioners []Provisioner  `json:"provisioners,omitempty"`
	Classes      []StorageClass `json:"classes,omitempty"`
}

// Provisioner describes how the provisioner emulation answers claims of classes that name it.
type Provisioner struct {
	Name string `json:"name"`
	// CSIDriver, when set, creates a storage.k8s.io/v1 CSIDriver object of this name.
	CSIDriver *CSIDriver `json:"csiDriver,omitempty"`
	// NodeAffinity of provisioned PVs: "" or "none", "node" (kubernetes.io/hostname of the
	// selected node, i.e. node-local storage) or "zone" (topology.kubernetes.io/zone).
	NodeAffinity string `json:"nodeAffinity,omitempty"`
	// Source of provisioned PVs: "csi" (default), "hostPath" or "local".
	Source string `json:"source,omitempty"`
	// FSType written into the PV's CSI source (default ext4; "-" for none).
	FSType string `json:"fsType,omitempty"`
	// Fail makes every provisioning attempt fail with this message (ProvisioningFailed event).
	Fail string `json:"fail,omitempty"`
	// RootMode is the octal mode of a new volume's root directory, owned by root (default
	// "0755" for csi, a fresh file system; "0777" for hostPath and local, as
	// local-path-provisioner makes them). "0777" is a driver that makes its volumes
	// writable for every user (e.g. csi-driver-nfs's mountPermissions parameter).
	RootMode string `json:"rootMode,omitempty"`
	// LosesData: the node stages the volume like a broken driver that formats it on every
	// mount, so what one pod wrote is gone for the next (csi source only).
	LosesData bool `json:"losesData,omitempty"`
}

// CSIDriver object fields.
type CSIDriver struct {
	// FSGroupPolicy: ReadWriteOnceWithFSType (the API default), File or None.
	FSGroupPolicy string `json:"fsGroupPolicy,omitempty"`
}

// StorageClass to create.
type StorageClass struct {
	Name              string            `json:"name"`
	Provisioner       string            `json:"provisioner"`
	Default           bool              `json:"default,omitempty"`
	BetaDefault       bool              `json:"betaDefault,omitempty"`
	VolumeBindingMode string            `json:"volumeBindingMode,omitempty"`
	ReclaimPolicy     string            `json:"reclaimPolicy,omitempty"`
	AllowExpansion    bool              `json:"allowVolumeExpansion,omitempty"`
	Parameters        map[string]string `json:"parameters,omitempty"`
}

// LoadBalancer behaviour of the cloud-controller emulation.
type LoadBalancer struct {
	// Mode: "none" (default: no cloud controller, nothing happens, no address ever),
	// "assign" (an address from Pool, default 127.0.100.0/24, is written to
	// status.loadBalancer.ingress with the events a cloud controller writes; nothing
	// answers there), "fail" (SyncLoadBalancerFailed events with FailMessage), or one of
	// the load balancers in the load balancer namespace, reached from the client
	// namespace (Pool default 203.0.113.0/24):
	//   "proxy": OpenStack Octavia's amphora: HAProxy (Debian's) in TCP mode per Service,
	//            members are the nodes' InternalIP:nodePort; the backend sees the load
	//            balancer's address; with annotation loadbalancer.openstack.org/proxy-
	//            protocol "true" (or "v1", "v2") HAProxy sends the PROXY protocol header
	//            and the ingress gets ipMode Proxy, as the OpenStack cloud controller does;
	//   "l3": a load balancer that forwards packets (OVN-based): destination NAT of the
	//         virtual IP to the node ports, no source NAT, return traffic routed back
	//         through the load balancer namespace;
	//   "unreachable": an address is assigned, nothing answers (packets are dropped).
	Mode        string `json:"mode,omitempty"`
	Pool        string `json:"pool,omitempty"`
	FailMessage string `json:"failMessage,omitempty"`
	// HealthMonitor is the OpenStack cloud controller's create-monitor (default false, as
	// there): members are health-checked (TCP to the node port; for
	// externalTrafficPolicy Local HTTP GET /healthz on the health check node port) and
	// only healthy ones get traffic. The Service annotation
	// loadbalancer.openstack.org/enable-health-monitor overrides it.
	HealthMonitor bool `json:"healthMonitor,omitempty"`
}

// ForwardsTraffic says whether the mode has a load balancer in the load balancer namespace.
func (lb LoadBalancer) ForwardsTraffic() bool {
	switch lb.Mode {
	case "proxy", "l3", "unreachable":
		return true
	}
	return false
}

// Conformance: which e2e fixture (directory name under tests/fixtures/e2e) the emulated
// conformance image plays for an E2E_FOCUS. Default plays for every focus not listed; no
// default and no match is ginkgo matching no spec. ByTag stands for other builds of the
// image: registry.k8s.io/conformance:<tag> with a listed tag plays that fixture for every
// focus (a test that shares a test bed picks its run's outcome with --conformance-image).
type Conformance struct {
	Default string            `json:"default,omitempty"`
	ByFocus map[string]string `json:"byFocus,omitempty"`
	ByTag   map[string]string `json:"byTag,omitempty"`
}

// Load reads a scenario file.
func Load(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Scenario
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(s.Nodes) == 0 {
		return nil, fmt.Errorf("%s: a scenario needs at least one node", path)
	}
	if len(s.Nodes) > 200 {
		return nil, fmt.Errorf("%s: at most 200 nodes", path)
	}
	seen := map[string]bool{}
	for _, n := range s.Nodes {
		if n.Name == "" || seen[n.Name] {
			return nil, fmt.Errorf("%s: node names must be unique and non-empty (%q)", path, n.Name)
		}
		seen[n.Name] = true
	}
	// Addresses the suite may probe from the host's namespace must stay on this machine.
	loopback := func(what, v string) error {
		ip := net.ParseIP(v)
		if ip == nil {
			if _, n, err := net.ParseCIDR(v); err == nil {
				ip = n.IP
			}
		}
		if ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("%s: %s %q must be in 127.0.0.0/8: the suite probes it from the host, and no traffic may leave this machine", path, what, v)
		}
		return nil
	}
	for _, n := range s.Nodes {
		if n.ExternalIP != "" {
			if err := loopback("node "+n.Name+" externalIP", n.ExternalIP); err != nil {
				return nil, err
			}
		}
	}
	switch s.LoadBalancer.Mode {
	case "", "none", "assign", "fail", "proxy", "l3", "unreachable":
	default:
		return nil, fmt.Errorf("%s: loadBalancer.mode %q is not one of none, assign, fail, proxy, l3, unreachable", path, s.LoadBalancer.Mode)
	}
	if s.LoadBalancer.Pool != "" {
		if s.LoadBalancer.ForwardsTraffic() {
			if err := documentation(s.LoadBalancer.Pool); err != nil {
				return nil, fmt.Errorf("%s: loadBalancer.pool: %w", path, err)
			}
		} else if err := loopback("loadBalancer.pool", s.LoadBalancer.Pool); err != nil {
			return nil, err
		}
	}
	for _, p := range s.Storage.Provisioners {
		if p.RootMode != "" {
			if _, err := strconv.ParseUint(p.RootMode, 8, 32); err != nil {
				return nil, fmt.Errorf("%s: provisioner %s: rootMode %q is not an octal mode", path, p.Name, p.RootMode)
			}
		}
	}
	switch s.Network.KubeProxy {
	case "", "iptables", "nftables":
	default:
		return nil, fmt.Errorf("%s: network.kubeProxy %q is not one of iptables, nftables", path, s.Network.KubeProxy)
	}
	switch s.Network.Policy {
	case "", "none", "kube-router":
	default:
		return nil, fmt.Errorf("%s: network.policy %q is not one of none, kube-router", path, s.Network.Policy)
	}
	return &s, nil
}

// documentation accepts a pool inside 192.0.2.0/24 or 203.0.113.0/24 (RFC 5737): the
// load balancer namespace routes it, nothing outside the test bed ever does.
func documentation(pool string) error {
	_, n, err := net.ParseCIDR(pool)
	if err != nil {
		return err
	}
	for _, r := range []string{"192.0.2.0/24", "203.0.113.0/24"} {
		_, doc, _ := net.ParseCIDR(r)
		size, _ := n.Mask.Size()
		if doc.Contains(n.IP) && size >= 24 {
			return nil
		}
	}
	return fmt.Errorf("%q must lie within 192.0.2.0/24 or 203.0.113.0/24 (documentation ranges that exist only inside the test bed's namespaces)", pool)
}

// Labels of a node as the scenario declares them.
func (n Node) AllLabels() map[string]string {
	l := map[string]string{
		"kubernetes.io/hostname":  n.Name,
		"kubernetes.io/os":        "linux",
		"kubernetes.io/arch":      "amd64",
		"beta.kubernetes.io/os":   "linux",
		"beta.kubernetes.io/arch": "amd64",
	}
	for _, r := range n.Roles {
		l["node-role.kubernetes.io/"+r] = ""
	}
	if n.Zone != "" {
		l["topology.kubernetes.io/zone"] = n.Zone
	}
	if n.Region != "" {
		l["topology.kubernetes.io/region"] = n.Region
	}
	if n.Host != "" {
		l["topology.scs.community/host-id"] = n.Host
	}
	for k, v := range n.Labels {
		l[k] = v
	}
	return l
}
