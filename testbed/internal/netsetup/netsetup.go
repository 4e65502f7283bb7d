// Package netsetup builds the test bed's network out of network namespaces, veth pairs
// and bridges, using iproute2. Nothing is added to the root namespace's interfaces.
//
// Layout (N = node index, K = pod slot on that node):
//
//	<prefix>-world   bridge br0 172.30.0.1/24 (the control plane listens here),
//	                 routes 10.244.N.0/24 via 172.30.0.(10+N), the client network and
//	                 the load balancer pool via 172.30.0.2, ip_forward=1
//	<prefix>-nN      eth0 172.30.0.(10+N)/24 (veth to br0), default via 172.30.0.1,
//	                 bridge cbr0 10.244.N.1/24 for its pods (bridged traffic crosses the
//	                 node's netfilter: bridge-nf-call-iptables=1), ip_forward=1; Services
//	                 are kube-proxy's rules (internal/dataplane)
//	<prefix>-nNpK    eth0 10.244.N.(K+2)/24 (veth to cbr0), default via 10.244.N.1
//	<prefix>-lb      the cloud's load balancers: eth0 172.30.0.2/24 (veth to br0),
//	                 client0 198.51.100.1/24, virtual IPs of the pool on lo (proxy) or
//	                 destination NAT (l3), a blackhole route for the rest of the pool,
//	                 forwarding from the client only to the API server and to NATed VIPs
//	<prefix>-client  where the suite runs for data-plane tests: eth0 198.51.100.10/24
//	                 (veth to the load balancer namespace), default via 198.51.100.1
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
	"time"

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
	// LoadBalancerPool is the default pool of the "assign" mode of the cloud-controller
	// emulation. It is a loopback range on purpose: in that mode the suite probes load
	// balancer addresses from the host's namespace, and no probe may ever leave this
	// machine (a private or public address would be routed to the host's default
	// gateway). Nothing listens there.
	LoadBalancerPool = "127.0.100.0/24"
	// DataPlanePool is the default pool of the load balancers that forward traffic
	// (modes proxy, l3, unreachable): a documentation range (RFC 5737) that exists only
	// inside the test bed's namespaces. The suite reaches it from the client namespace.
	DataPlanePool = "203.0.113.0/24"
	// LBNodeIP is the load balancer namespace's address on the node network (the
	// source address of a proxying load balancer's connections to the nodes).
	LBNodeIP = "172.30.0.2"
	// ClientNet is the network between the client and the load balancer namespace
	// (a documentation range, RFC 5737).
	ClientNet = "198.51.100.0/24"
	// LBClientIP is the load balancer namespace's address on the client network.
	LBClientIP = "198.51.100.1"
	// ClientIP is the client's address as the load balancers see it.
	ClientIP = "198.51.100.10"
	// ClientPrivateIP is the client's own address when it sits behind NAT
	// (scenario client.behindNAT): its sockets use it, the network sees ClientIP.
	ClientPrivateIP = "192.168.77.10"
)

// NodeIP of node index i.
func NodeIP(i int) string { return fmt.Sprintf("172.30.0.%d", 10+i) }

// PodCIDR of node index i.
func PodCIDR(i int) string { return fmt.Sprintf("10.244.%d.0/24", i) }

// World is the name of the world namespace.
func World(prefix string) string { return prefix + "-world" }

// LB is the name of the load balancer namespace.
func LB(prefix string) string { return prefix + "-lb" }

// Client is the name of the client namespace.
func Client(prefix string) string { return prefix + "-client" }

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
	// Traffic between pods of one node is bridged on cbr0; as on a real node with a
	// bridge CNI (br_netfilter), it crosses the node's iptables so that kube-proxy and
	// the NetworkPolicy implementation see it.
	return inNS(n, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
}

// CreateEdge makes the load balancer and client namespaces (see the package comment).
// pool is the load balancer pool routed to the load balancer namespace (empty: none);
// behindNAT gives the client a private address that is translated to ClientIP on the
// way out, as a client behind a NAT gateway sees it.
func CreateEdge(prefix, pool string, behindNAT bool) error {
	w, lb, c := World(prefix), LB(prefix), Client(prefix)
	cmds := [][]string{
		{"netns", "add", lb},
		{"-n", lb, "link", "set", "lo", "up"},
		{"-n", w, "link", "add", "vlb", "type", "veth", "peer", "name", "eth0", "netns", lb},
		{"-n", w, "link", "set", "vlb", "master", "br0", "up"},
		{"-n", lb, "addr", "add", LBNodeIP + "/24", "dev", "eth0"},
		{"-n", lb, "link", "set", "eth0", "up"},
		{"-n", lb, "route", "add", ClusterCIDR, "via", WorldIP},
		{"netns", "add", c},
		{"-n", c, "link", "set", "lo", "up"},
		{"-n", lb, "link", "add", "client0", "type", "veth", "peer", "name", "eth0", "netns", c},
		{"-n", lb, "addr", "add", LBClientIP + "/24", "dev", "client0"},
		{"-n", lb, "link", "set", "client0", "up"},
		{"-n", c, "addr", "add", ClientIP + "/24", "dev", "eth0"},
		{"-n", c, "link", "set", "eth0", "up"},
		{"-n", w, "route", "add", ClientNet, "via", LBNodeIP},
		{"netns", "exec", lb, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	}
	if behindNAT {
		cmds = append(cmds,
			[]string{"-n", c, "addr", "add", ClientPrivateIP + "/32", "dev", "lo"},
			[]string{"-n", c, "route", "add", "default", "via", LBClientIP, "src", ClientPrivateIP})
	} else {
		cmds = append(cmds, []string{"-n", c, "route", "add", "default", "via", LBClientIP})
	}
	if pool != "" {
		cmds = append(cmds,
			[]string{"-n", w, "route", "add", pool, "via", LBNodeIP},
			// Pool addresses without a load balancer do not answer.
			[]string{"-n", lb, "route", "add", "blackhole", pool})
	}
	if err := batch(cmds); err != nil {
		return err
	}
	if behindNAT {
		if err := NFT(c, fmt.Sprintf(`table ip testbed_nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth0" ip saddr %s snat to %s
	}
}
`, ClientPrivateIP, ClientIP)); err != nil {
			return err
		}
	}
	// The client reaches the API server and the load balancers, not the node network.
	return NFT(lb, fmt.Sprintf(`table ip testbed_edge {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
		iifname "client0" ip daddr %s tcp dport %d accept
		iifname "client0" ct status dnat accept
		iifname "client0" drop
	}
}
`, WorldIP, APIServerPort))
}

// NFT loads an nftables script (`nft -f -`) in the named namespace.
func NFT(ns, script string) error {
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft in %s: %v: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
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
	var ln net.Listener
	err := in(ns, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// DialIn connects to a TCP address from inside the named network namespace.
func DialIn(ns, addr string, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := in(ns, func() (err error) {
		conn, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return conn, err
}

// in runs f on a thread that has entered the named network namespace.
func in(ns string, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(own)
	target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	ferr := f()
	if err := unix.Setns(own, unix.CLONE_NEWNET); err != nil {
		// The thread is in the wrong namespace: never unlock it (the runtime ends it).
		runtime.LockOSThread()
		return fmt.Errorf("setns back: %w", err)
	}
	return ferr
}
