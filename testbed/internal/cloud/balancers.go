package cloud

// The load balancers that really forward traffic, in the load balancer namespace
// (netsetup.LB) between the client namespace and the node network:
//
//   - proxy: OpenStack Octavia's amphora. One HAProxy (Debian's package) per Service, in
//     TCP mode, listening on the virtual IP (an address on the namespace's lo), members
//     the nodes' InternalIP:nodePort, configured like Octavia's haproxy template
//     (octavia/common/jinja/haproxy/combined_listeners: retries 3, option redispatch,
//     timeout client/server 50 s, timeout connect 5 s, round robin). The backend sees
//     the namespace's own address on the node network (172.30.0.2). With the annotation
//     loadbalancer.openstack.org/proxy-protocol "true"/"v1" (or "v2") the members get
//     send-proxy (send-proxy-v2) and the ingress ipMode Proxy, as the OpenStack cloud
//     controller (cloud-provider-openstack) sets it.
//   - l3: a load balancer that forwards packets, as OVN's does: nftables destination NAT
//     of VIP:port to a random member's InternalIP:nodePort, no source NAT; the nodes
//     route the client network back through this namespace, whose connection tracking
//     undoes the translation. A PROXY protocol annotation fails as with OVN's Octavia
//     provider, which does not support it.
//   - unreachable: an address from the pool, nothing answers (the pool is a blackhole
//     route in the namespace).
//
// Health monitors follow the OpenStack cloud controller: enabled by the scenario's
// healthMonitor (its create-monitor, default false) or the annotation
// loadbalancer.openstack.org/enable-health-monitor; TCP checks of the node port, or for
// externalTrafficPolicy Local HTTP GET /healthz on the health check node port (expect
// 200); delay 5 s, timeout 3 s, rise 1, fall 3 (its defaults; the annotations
// health-monitor-delay, -timeout, -max-retries, -max-retries-down override them). HAProxy
// checks by itself; for l3 the checks run in this process (the "health manager") and only
// healthy members get traffic.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"scs-kaas-check/testbed/internal/netsetup"
	"scs-kaas-check/testbed/internal/scenario"
)

// Annotations of the OpenStack cloud controller that the load balancers honour.
const (
	annotationProxyProtocol   = "loadbalancer.openstack.org/proxy-protocol"
	annotationMonitor         = "loadbalancer.openstack.org/enable-health-monitor"
	annotationMonitorDelay    = "loadbalancer.openstack.org/health-monitor-delay"
	annotationMonitorTimeout  = "loadbalancer.openstack.org/health-monitor-timeout"
	annotationMonitorRise     = "loadbalancer.openstack.org/health-monitor-max-retries"
	annotationMonitorFall     = "loadbalancer.openstack.org/health-monitor-max-retries-down"
	octaviaClientTimeoutMilli = 50000
	octaviaMemberConnectMilli = 5000
	// maxConn replaces Octavia's 50000 connections: HAProxy needs file descriptors for
	// about twice its maxconn and refuses to start above the machine's limit.
	maxConn = 4000
)

type balancers struct {
	mode           string
	cfg            Config
	alloc          *allocator
	monitorDefault bool

	mu    sync.Mutex
	byUID map[types.UID]*balancer
}

func newBalancers(lb scenario.LoadBalancer, cfg Config, alloc *allocator) *balancers {
	return &balancers{mode: lb.Mode, cfg: cfg, alloc: alloc, monitorDefault: lb.HealthMonitor, byUID: map[types.UID]*balancer{}}
}

// balancer is one Service's load balancer.
type balancer struct {
	name      string // namespace/name of the Service
	lbName    string
	vip       string
	ipMode    corev1.LoadBalancerIPMode
	listeners []listener
	members   []member
	proxy     string // "", "v1" or "v2"
	monitor   *monitorSpec

	// proxy mode
	haproxy     *exec.Cmd
	haproxyDone chan struct{}
	haproxyConf string

	// l3 mode: health per member address (true without a monitor), the monitor's stop.
	mu        sync.Mutex
	healthy   map[string]bool
	stopCheck chan struct{}
}

type listener struct {
	port, nodePort int32
}

type member struct {
	node, ip string
}

type monitorSpec struct {
	delay, timeout time.Duration
	rise, fall     int
	// httpPort is the health check node port (externalTrafficPolicy Local); 0: TCP check
	// of the node port.
	httpPort int32
}

func (b *balancers) GetLoadBalancer(_ context.Context, _ string, svc *corev1.Service) (*corev1.LoadBalancerStatus, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	lb, ok := b.byUID[svc.UID]
	if !ok {
		return nil, false, nil
	}
	return status(lb.vip, lb.ipMode), true, nil
}

func (b *balancers) GetLoadBalancerName(_ context.Context, _ string, svc *corev1.Service) string {
	return loadBalancerName(svc)
}

func (b *balancers) EnsureLoadBalancer(ctx context.Context, _ string, svc *corev1.Service, nodes []*corev1.Node) (*corev1.LoadBalancerStatus, error) {
	lb, err := b.ensure(svc, nodes)
	if err != nil {
		return nil, err
	}
	return status(lb.vip, lb.ipMode), nil
}

func (b *balancers) UpdateLoadBalancer(ctx context.Context, _ string, svc *corev1.Service, nodes []*corev1.Node) error {
	_, err := b.ensure(svc, nodes)
	return err
}

func (b *balancers) EnsureLoadBalancerDeleted(_ context.Context, _ string, svc *corev1.Service) error {
	b.mu.Lock()
	lb, ok := b.byUID[svc.UID]
	delete(b.byUID, svc.UID)
	b.mu.Unlock()
	if ok {
		lb.stopMonitor()
		if lb.haproxy != nil {
			lb.stopHAProxy()
		}
		if b.mode == "proxy" {
			_ = netsetup.Run("-n", netsetup.LB(b.cfg.Prefix), "addr", "del", lb.vip+"/32", "dev", "lo")
		}
		if b.mode == "l3" {
			if err := b.syncNAT(); err != nil {
				return err
			}
		}
		klog.Infof("load balancer %s (%s) for %s deleted", lb.lbName, lb.vip, lb.name)
	}
	b.alloc.release(svc.UID)
	return nil
}

// desired computes a Service's load balancer from its spec and the member nodes.
func (b *balancers) desired(svc *corev1.Service, nodes []*corev1.Node) (*balancer, error) {
	lb := &balancer{name: svc.Namespace + "/" + svc.Name, lbName: loadBalancerName(svc), ipMode: corev1.LoadBalancerIPModeVIP}
	for _, p := range svc.Spec.Ports {
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			return nil, fmt.Errorf("the test bed's load balancers support TCP listeners only, not %s (port %d)", p.Protocol, p.Port)
		}
		lb.listeners = append(lb.listeners, listener{port: p.Port, nodePort: p.NodePort})
	}
	for _, n := range nodes {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				lb.members = append(lb.members, member{node: n.Name, ip: a.Address})
				break
			}
		}
	}
	sort.Slice(lb.members, func(i, j int) bool { return lb.members[i].node < lb.members[j].node })
	switch v := svc.Annotations[annotationProxyProtocol]; v {
	case "", "false":
	case "true", "v1":
		lb.proxy = "v1"
	case "v2":
		lb.proxy = "v2"
	default:
		return nil, fmt.Errorf("unsupported value %q of annotation %s", v, annotationProxyProtocol)
	}
	if lb.proxy != "" {
		if b.mode == "l3" {
			// What Octavia answers when OVN's provider is asked for a PROXY pool.
			return nil, fmt.Errorf("error creating pool for listener of load balancer %s: Provider 'ovn' does not support a requested option: OVN provider does not support PROXY protocol", lb.lbName)
		}
		lb.ipMode = corev1.LoadBalancerIPModeProxy
	}
	enabled := b.monitorDefault
	if v, ok := svc.Annotations[annotationMonitor]; ok {
		parsed, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %v", annotationMonitor, err)
		}
		enabled = parsed
	}
	if enabled {
		m := &monitorSpec{delay: 5 * time.Second, timeout: 3 * time.Second, rise: 1, fall: 3}
		for key, into := range map[string]*int{annotationMonitorRise: &m.rise, annotationMonitorFall: &m.fall} {
			if v, ok := svc.Annotations[key]; ok {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 {
					return nil, fmt.Errorf("annotation %s: %q is not a positive number", key, v)
				}
				*into = n
			}
		}
		for key, into := range map[string]*time.Duration{annotationMonitorDelay: &m.delay, annotationMonitorTimeout: &m.timeout} {
			if v, ok := svc.Annotations[key]; ok {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 {
					return nil, fmt.Errorf("annotation %s: %q is not a positive number of seconds", key, v)
				}
				*into = time.Duration(n) * time.Second
			}
		}
		if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && svc.Spec.HealthCheckNodePort > 0 {
			m.httpPort = svc.Spec.HealthCheckNodePort
		}
		lb.monitor = m
	}
	return lb, nil
}

// ensure creates or updates the load balancer of svc.
func (b *balancers) ensure(svc *corev1.Service, nodes []*corev1.Node) (*balancer, error) {
	want, err := b.desired(svc, nodes)
	if err != nil {
		return nil, err
	}
	vip, err := b.alloc.get(svc.UID)
	if err != nil {
		return nil, err
	}
	want.vip = vip
	b.mu.Lock()
	lb := b.byUID[svc.UID]
	if lb == nil {
		lb = want
		lb.healthy = map[string]bool{}
		b.byUID[svc.UID] = lb
	} else {
		if !sameMonitor(lb.monitor, want.monitor) {
			lb.stopMonitor()
		}
		lb.mu.Lock()
		lb.ipMode, lb.listeners, lb.members, lb.proxy, lb.monitor = want.ipMode, want.listeners, want.members, want.proxy, want.monitor
		lb.mu.Unlock()
	}
	b.mu.Unlock()
	switch b.mode {
	case "proxy":
		if err := b.ensureHAProxy(lb); err != nil {
			return nil, err
		}
	case "l3":
		lb.mu.Lock()
		for _, m := range lb.members {
			if _, ok := lb.healthy[m.ip]; !ok {
				lb.healthy[m.ip] = true // members start healthy, as HAProxy's
			}
		}
		if lb.monitor != nil && lb.stopCheck == nil {
			lb.stopCheck = make(chan struct{})
			go b.check(lb, lb.monitor, lb.stopCheck)
		}
		lb.mu.Unlock()
		if err := b.syncNAT(); err != nil {
			return nil, err
		}
	}
	klog.Infof("load balancer %s for %s: %s %s, members %v, monitor %+v", lb.lbName, lb.name, b.mode, lb.vip, lb.members, lb.monitor)
	return lb, nil
}

func sameMonitor(a, b *monitorSpec) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

func (lb *balancer) stopMonitor() {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.stopCheck != nil {
		close(lb.stopCheck)
		lb.stopCheck = nil
	}
}

// haproxyConfig renders the amphora's configuration.
func (b *balancers) haproxyConfig(lb *balancer) string {
	var s strings.Builder
	fmt.Fprintf(&s, "# load balancer %s of Service %s (Octavia amphora emulation)\n", lb.lbName, lb.name)
	fmt.Fprintf(&s, "global\n    maxconn %d\n\n", maxConn)
	s.WriteString("defaults\n    no log\n    retries 3\n    option redispatch\n    option splice-request\n    option splice-response\n")
	for _, l := range lb.listeners {
		id := fmt.Sprintf("listener-%d", l.port)
		fmt.Fprintf(&s, "\nfrontend %s\n    maxconn %d\n    bind %s:%d\n    mode tcp\n    default_backend pool-%d\n    timeout client %d\n",
			id, maxConn, lb.vip, l.port, l.port, octaviaClientTimeoutMilli)
		fmt.Fprintf(&s, "\nbackend pool-%d\n    mode tcp\n    balance roundrobin\n", l.port)
		check := ""
		if m := lb.monitor; m != nil {
			fmt.Fprintf(&s, "    timeout check %ds\n", int(m.timeout.Seconds()))
			check = fmt.Sprintf(" check inter %ds fall %d rise %d", int(m.delay.Seconds()), m.fall, m.rise)
			if m.httpPort > 0 {
				s.WriteString("    option httpchk GET /healthz\n    http-check expect rstatus 200\n")
				check += fmt.Sprintf(" port %d", m.httpPort)
			}
		}
		fmt.Fprintf(&s, "    fullconn %d\n    option allbackups\n    timeout connect %d\n    timeout server %d\n",
			maxConn, octaviaMemberConnectMilli, octaviaClientTimeoutMilli)
		send := map[string]string{"": "", "v1": " send-proxy", "v2": " send-proxy-v2"}[lb.proxy]
		for _, m := range lb.members {
			fmt.Fprintf(&s, "    server %s %s:%d weight 1%s%s\n", m.node, m.ip, l.nodePort, check, send)
		}
	}
	return s.String()
}

// ensureHAProxy puts the VIP on the namespace's lo and (re)starts HAProxy when its
// configuration changed or it is not running.
func (b *balancers) ensureHAProxy(lb *balancer) error {
	ns := netsetup.LB(b.cfg.Prefix)
	conf := b.haproxyConfig(lb)
	running := false
	if lb.haproxy != nil {
		select {
		case <-lb.haproxyDone:
		default:
			running = true
		}
	}
	if running && conf == lb.haproxyConf {
		return nil
	}
	dir := filepath.Join(b.cfg.Dir, "lb")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, lb.lbName+".cfg")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return err
	}
	if out, err := exec.Command("haproxy", "-c", "-q", "-f", path).CombinedOutput(); err != nil {
		return fmt.Errorf("amphora configuration rejected: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if err := netsetup.Run("-n", ns, "addr", "replace", lb.vip+"/32", "dev", "lo"); err != nil {
		return err
	}
	if lb.haproxy != nil {
		lb.stopHAProxy()
	}
	logFile, err := os.Create(filepath.Join(dir, lb.lbName+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "haproxy", "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start haproxy: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(done) }()
	lb.haproxy, lb.haproxyDone, lb.haproxyConf = cmd, done, conf
	// Provisioned once the listener accepts connections (an amphora turning ACTIVE).
	if len(lb.listeners) == 0 {
		return nil
	}
	addr := fmt.Sprintf("%s:%d", lb.vip, lb.listeners[0].port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if conn, err := netsetup.DialIn(ns, addr, time.Second); err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-done:
			logText, _ := os.ReadFile(filepath.Join(dir, lb.lbName+".log"))
			return fmt.Errorf("the amphora's haproxy exited: %s", strings.TrimSpace(string(logText)))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the amphora's haproxy does not accept connections on %s", addr)
		}
	}
}

func (lb *balancer) stopHAProxy() {
	_ = syscall.Kill(-lb.haproxy.Process.Pid, syscall.SIGKILL)
	<-lb.haproxyDone
	lb.haproxy = nil
}

// syncNAT replaces the l3 load balancers' nftables table with one rule per listener: DNAT
// of VIP:port to a random healthy member's node port. A listener without healthy members
// has no rule: its packets meet the pool's blackhole route.
func (b *balancers) syncNAT() error {
	b.mu.Lock()
	lbs := make([]*balancer, 0, len(b.byUID))
	for _, lb := range b.byUID {
		lbs = append(lbs, lb)
	}
	b.mu.Unlock()
	sort.Slice(lbs, func(i, j int) bool { return lbs[i].vip < lbs[j].vip })
	var rules strings.Builder
	for _, lb := range lbs {
		lb.mu.Lock()
		var targets []string
		for _, m := range lb.members {
			if lb.healthy[m.ip] {
				targets = append(targets, m.ip)
			}
		}
		lb.mu.Unlock()
		if len(targets) == 0 {
			continue
		}
		var entries []string
		for i, ip := range targets {
			entries = append(entries, fmt.Sprintf("%d : %s", i, ip))
		}
		for _, l := range lb.listeners {
			fmt.Fprintf(&rules, "\t\tip daddr %s tcp dport %d dnat to numgen random mod %d map { %s } : %d\n",
				lb.vip, l.port, len(targets), strings.Join(entries, ", "), l.nodePort)
		}
	}
	return netsetup.NFT(netsetup.LB(b.cfg.Prefix), fmt.Sprintf(`table ip testbed_lb
delete table ip testbed_lb
table ip testbed_lb {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
%s	}
}
`, rules.String()))
}

// check is the l3 health manager of one load balancer: every delay it probes each member
// and marks it down after fall failures, up after rise successes.
func (b *balancers) check(lb *balancer, m *monitorSpec, stop chan struct{}) {
	fails, oks := map[string]int{}, map[string]int{}
	client := &http.Client{Timeout: m.timeout}
	probe := func(mem member) bool {
		if m.httpPort > 0 {
			resp, err := client.Get(fmt.Sprintf("http://%s:%d/healthz", mem.ip, m.httpPort))
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}
		lb.mu.Lock()
		port := lb.listeners[0].nodePort
		lb.mu.Unlock()
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", mem.ip, port), m.timeout)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}
	tick := time.NewTicker(m.delay)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		lb.mu.Lock()
		members := append([]member(nil), lb.members...)
		lb.mu.Unlock()
		changed := false
		for _, mem := range members {
			ok := probe(mem)
			lb.mu.Lock()
			if ok {
				fails[mem.ip] = 0
				oks[mem.ip]++
				if !lb.healthy[mem.ip] && oks[mem.ip] >= m.rise {
					lb.healthy[mem.ip], changed = true, true
				}
			} else {
				oks[mem.ip] = 0
				fails[mem.ip]++
				if lb.healthy[mem.ip] && fails[mem.ip] >= m.fall {
					lb.healthy[mem.ip], changed = false, true
				}
			}
			lb.mu.Unlock()
		}
		if changed {
			klog.Infof("load balancer %s: member health %v", lb.lbName, lb.healthy)
			if err := b.syncNAT(); err != nil {
				klog.Errorf("load balancer %s: %v", lb.lbName, err)
			}
		}
	}
}
