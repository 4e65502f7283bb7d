// Package netsetup builds the test bed's network out of network namespaces, veth pairs
// and bridges, using iproute2. Nothing is added to the root namespace's interfaces.
//
// Layout (N = node index, K = pod slot on that node):
//
//	<prefix>-world   bridge br0 172.30.0.1/24 (the control plane listens here),
//	                 routes 10.244.N.0/24 via 172.30.0.(10+N), ip_forward=1
//	<prefix>-nN      eth0 172.30.0.(10+N)/24 (veth to br0), default via 172.30.0.1,
//	                 bridge cbr0 10.244.N.1/24 for its pods, ip_forward=1, and (like
//	                 kube-proxy for the "kubernetes" Service) DNAT of the Service's
//	                 ClusterIP:443 to the API server
//	<prefix>-nNpK    eth0 10.244.N.(K+2)/24 (veth to cbr0), default via 10.244.N.1
package netsetup

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	// WorldIP is the control plane's address on the node network.
	WorldIP = "172.30.0.1"
	// APIServerPort is the API server's port on WorldIP.
	APIServerPort = 6443
	// KubernetesServiceIP is the ClusterIP of default/kubernetes (first of ServiceCIDR).
	KubernetesServiceIP = "10.96.0.1"
	// ServiceCIDR is the service cluster IP range.
	ServiceCIDR = "10.96.0.0/16"
	// ClusterCIDR holds every node's pod CIDR.
	ClusterCIDR = "10.244.0.0/16"
	// LoadBalancerPool is the default pool of the cloud-controller emulation. It is a
	// loopback range on purpose: the suite probes load balancer addresses from the host's
	// namespace, and no probe may ever leave this machine (a private or public address
	// would be routed to the host's default gateway). Nothing listens there until the
	// data-plane issue brings real load balancers.
	LoadBalancerPool = "127.0.100.0/24"
)

// NodeIP of node index i.
func NodeIP(i int) string { return fmt.Sprintf("172.30.0.%d", 10+i) }

// PodCIDR of node index i.
func PodCIDR(i int) string { return fmt.Sprintf("10.244.%d.0/24", i) }

// World is the name of the world namespace.
func World(prefix string) string { return prefix + "-world" }

// NodeNS is the namespace name of node index i.
func NodeNS(prefix string, i int) string { return fmt.Sprintf("%s-n%d", prefix, i) }

// Run runs `ip args...` and returns an error with its output.
func Run(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func inNS(ns string, argv ...string) error {
	args := append([]string{"netns", "exec", ns}, argv...)
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func batch(cmds [][]string) error {
	for _, c := range cmds {
		if err := Run(c...); err != nil {
			return err
		}
	}
	return nil
}

// CreateWorld makes the world namespace with its bridge.
func CreateWorld(prefix string) error {
	w := World(prefix)
	return batch([][]string{
		{"netns", "add", w},
		{"-n", w, "link", "set", "lo", "up"},
		{"-n", w, "link", "add", "br0", "type", "bridge"},
		{"-n", w, "addr", "add", WorldIP + "/24", "dev", "br0"},
		{"-n", w, "link", "set", "br0", "up"},
		{"netns", "exec", w, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	})
}

// CreateNode makes node i's namespace, wires it to the world bridge, creates its pod
// bridge and routes.
func CreateNode(prefix string, i int) error {
	w, n := World(prefix), NodeNS(prefix, i)
	veth := fmt.Sprintf("v%d", i)
	gw := fmt.Sprintf("10.244.%d.1", i)
	if err := batch([][]string{
		{"netns", "add", n},
		{"-n", n, "link", "set", "lo", "up"},
		{"-n", w, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", n},
		{"-n", w, "link", "set", veth, "master", "br0", "up"},
		{"-n", n, "addr", "add", NodeIP(i) + "/24", "dev", "eth0"},
		{"-n", n, "link", "set", "eth0", "up"},
		{"-n", n, "route", "add", "default", "via", WorldIP},
		{"-n", n, "link", "add", "cbr0", "type", "bridge"},
		{"-n", n, "addr", "add", gw + "/24", "dev", "cbr0"},
		{"-n", n, "link", "set", "cbr0", "up"},
		{"-n", w, "route", "add", PodCIDR(i), "via", NodeIP(i)},
		{"netns", "exec", n, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	}); err != nil {
		return err
	}
	// What kube-proxy does for the "kubernetes" Service, so that pods reach the API server
	// at KUBERNETES_SERVICE_HOST:443 as in a real cluster. Other Services have no data
	// plane yet (see the data-plane issue: kube-proxy will replace this rule).
	return inNS(n, "iptables", "-t", "nat", "-A", "PREROUTING", "-d", KubernetesServiceIP+"/32",
		"-p", "tcp", "--dport", "443", "-j", "DNAT", "--to-destination",
		fmt.Sprintf("%s:%d", WorldIP, APIServerPort))
}

// PodNet is the network of one pod.
type PodNet struct {
	NS   string
	IP   string
	slot int
}

// Pods allocates pod slots of one node.
type Pods struct {
	prefix string
	node   int
	mu     sync.Mutex
	used   map[int]bool
	seq    int
}

// NewPods returns the pod allocator for node i.
func NewPods(prefix string, i int) *Pods {
	return &Pods{prefix: prefix, node: i, used: map[int]bool{}}
}

// Create makes a pod namespace with an address on the node's pod bridge.
func (p *Pods) Create() (*PodNet, error) {
	p.mu.Lock()
	slot := -1
	for k := 0; k < 250; k++ {
		if !p.used[k] {
			slot = k
			break
		}
	}
	if slot < 0 {
		p.mu.Unlock()
		return nil, fmt.Errorf("node %d has no free pod address", p.node)
	}
	p.used[slot] = true
	p.seq++
	seq := p.seq
	p.mu.Unlock()
	n := NodeNS(p.prefix, p.node)
	ns := fmt.Sprintf("%s-n%dp%d", p.prefix, p.node, seq)
	ip := fmt.Sprintf("10.244.%d.%d", p.node, slot+2)
	veth := "vp" + strconv.Itoa(seq)
	err := batch([][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", n, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"-n", n, "link", "set", veth, "master", "cbr0", "up"},
		{"-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "route", "add", "default", "via", fmt.Sprintf("10.244.%d.1", p.node)},
	})
	if err != nil {
		_ = Run("netns", "del", ns)
		p.release(slot)
		return nil, err
	}
	return &PodNet{NS: ns, IP: ip, slot: slot}, nil
}

func (p *Pods) release(slot int) {
	p.mu.Lock()
	delete(p.used, slot)
	p.mu.Unlock()
}

// Delete kills what still runs in the pod's namespace and removes it.
func (p *Pods) Delete(pn *PodNet) error {
	KillIn(pn.NS)
	err := Run("netns", "del", pn.NS)
	p.release(pn.slot)
	return err
}

// KillIn sends SIGKILL to every process in the named network namespace.
func KillIn(ns string) {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// List returns the network namespaces whose names start with prefix + "-".
func List(prefix string) []string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], prefix+"-") {
			names = append(names, f[0])
		}
	}
	return names
}

// Cleanup kills every process in the prefix's namespaces and deletes them (pods first).
func Cleanup(prefix string) []error {
	var errs []error
	names := List(prefix)
	for _, ns := range names {
		KillIn(ns)
	}
	// Pods, then nodes, then the world.
	for _, pass := range []func(string) bool{
		func(s string) bool { return strings.Contains(strings.TrimPrefix(s, prefix), "p") },
		func(s string) bool { return !strings.HasSuffix(s, "-world") },
		func(string) bool { return true },
	} {
		for _, ns := range List(prefix) {
			if pass(ns) {
				if err := Run("netns", "del", ns); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errs
}

// ParseIP is net.ParseIP that panics on a constant typo.
func ParseIP(s string) net.IP {
	ip := net.ParseIP(s)
	if ip == nil {
		panic("bad IP " + s)
	}
	return ip
}

// ListenIn opens a TCP listener inside the named network namespace (the socket keeps
// that namespace; the calling thread returns to its own).
func ListenIn(ns, addr string) (net.Listener, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(own)
	target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("setns %s: %w", ns, err)
	}
	ln, lerr := net.Listen("tcp", addr)
	if err := unix.Setns(own, unix.CLONE_NEWNET); err != nil {
		// The thread is in the wrong namespace: never unlock it (the runtime ends it).
		runtime.LockOSThread()
		return nil, fmt.Errorf("setns back: %w", err)
	}
	return ln, lerr
}
