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
	LoadBalancer LoadBalancer `json:"loadBalancer,omitempty"`
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
	// Mode: "none" (default: no cloud controller, nothing happens), "assign" (an address from
	// Pool is written to status.loadBalancer.ingress, with the events a cloud controller
	// writes), or "fail" (SyncLoadBalancerFailed events with FailMessage). Data-plane modes
	// (proxy, l3, unreachable) plug in through cloud.Provider.
	Mode        string `json:"mode,omitempty"`
	Pool        string `json:"pool,omitempty"`
	FailMessage string `json:"failMessage,omitempty"`
}

// Conformance: which e2e fixture (directory name under tests/fixtures/e2e) the emulated
// conformance image plays for an E2E_FOCUS. Default plays for every focus not listed; no
// default and no match is ginkgo matching no spec.
type Conformance struct {
	Default string            `json:"default,omitempty"`
	ByFocus map[string]string `json:"byFocus,omitempty"`
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
	if s.LoadBalancer.Pool != "" {
		if err := loopback("loadBalancer.pool", s.LoadBalancer.Pool); err != nil {
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
	switch s.LoadBalancer.Mode {
	case "", "none", "assign", "fail":
	default:
		return nil, fmt.Errorf("%s: loadBalancer.mode %q is not one of none, assign, fail", path, s.LoadBalancer.Mode)
	}
	return &s, nil
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
