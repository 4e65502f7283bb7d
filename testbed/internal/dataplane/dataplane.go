// Package dataplane runs the per-node network components of the test bed, each as its own
// process inside the node's network namespace, as a DaemonSet pod with hostNetwork would:
//
//   - kube-proxy from k8s.io/kubernetes/cmd/kube-proxy/app (this binary re-executed as
//     `testbed kube-proxy`), mode iptables (the default) or nftables, with the
//     credential of user system:kube-proxy, which the bootstrap ClusterRoleBinding
//     system:node-proxier binds to ClusterRole system:node-proxier, as kubeadm does;
//   - in the enforcing profile, kube-router's network policy controller
//     (testbed/bin/kube-router, github.com/cloudnativelabs/kube-router/v2 built from its own
//     module testbed/kube-router/; firewall only), with a credential of its own bound to
//     the ClusterRole of kube-router's upstream DaemonSet manifest.
//
// Logs: <dir>/nodes/<node>/kube-proxy.log and kube-router.log.
package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"scs-kaas-check/testbed/internal/netsetup"
	"scs-kaas-check/testbed/internal/pki"
	"scs-kaas-check/testbed/internal/scenario"
)

// Policy profiles (scenario network.policy).
const (
	// PolicyNone enforces nothing: NetworkPolicy objects are accepted and ignored, as in a
	// cluster whose only network plugin is Flannel.
	PolicyNone = "none"
	// PolicyKubeRouter runs kube-router's network policy controller on every node.
	PolicyKubeRouter = "kube-router"
)

// kube-proxy's health endpoint (its default --healthz-bind-address port).
const kubeProxyHealthzPort = 10256

// kubeRouterUser is the user name of kube-router's client certificate.
const kubeRouterUser = "system:testbed:kube-router"

// kubeRouterRules are the rules of ClusterRole kube-router in kube-router v2.1.0's
// daemonset/generic-kuberouter.yaml (the networkpolicies rule of the long-gone
// "extensions" group left out).
var kubeRouterRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"namespaces", "pods", "services", "nodes", "endpoints"}, Verbs: []string{"list", "get", "watch"}},
	{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"list", "get", "watch"}},
	{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
	{APIGroups: []string{""}, Resources: []string{"services/status"}, Verbs: []string{"update"}},
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
}

// Config is what the node components need.
type Config struct {
	Prefix     string
	Dir        string // the test bed's working directory
	Self       string // this binary (for `testbed kube-proxy`)
	KubeRouter string // the kube-router binary (profile kube-router)
	ServerURL  string
	CA         *pki.CA
	Network    scenario.Network
}

// DataPlane is the set of running node components.
type DataPlane struct {
	cfg   Config
	mu    sync.Mutex
	procs []*process
}

type process struct {
	name  string
	cmd   *exec.Cmd
	done  chan struct{}
	err   error
	ready chan struct{} // closed when the component has done its first sync
	once  sync.Once
}

// Start writes the credentials, creates kube-router's RBAC objects (profile kube-router)
// and starts the components of every node.
func Start(ctx context.Context, cfg Config, admin kubernetes.Interface, nodes []scenario.Node) (*DataPlane, error) {
	d := &DataPlane{cfg: cfg}
	proxyKC, err := d.kubeconfig("kube-proxy", "system:kube-proxy")
	if err != nil {
		return nil, err
	}
	var routerKC string
	if cfg.Network.Policy == PolicyKubeRouter {
		if _, err := os.Stat(cfg.KubeRouter); err != nil {
			return nil, fmt.Errorf("kube-router binary: %v (build it with testbed/build.sh)", err)
		}
		if routerKC, err = d.kubeconfig("kube-router", kubeRouterUser); err != nil {
			return nil, err
		}
		if err := kubeRouterRBAC(ctx, admin); err != nil {
			return nil, err
		}
	}
	mode := cfg.Network.KubeProxy
	if mode == "" {
		mode = "iptables"
	}
	for i, n := range nodes {
		logDir := filepath.Join(cfg.Dir, "nodes", n.Name)
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			return nil, err
		}
		ns := netsetup.NodeNS(cfg.Prefix, i)
		p, err := d.start("kube-proxy "+n.Name, ns, filepath.Join(logDir, "kube-proxy.log"), nil,
			cfg.Self, "kube-proxy",
			"--kubeconfig="+proxyKC,
			"--hostname-override="+n.Name,
			"--proxy-mode="+mode,
			"--cluster-cidr="+netsetup.ClusterCIDR,
			"--nodeport-addresses=primary",
			// Rules follow every Service and EndpointSlice change at once (default: at most
			// once a second): the test bed's pods start in a fraction of a second, and a
			// probe must not outrun the rules as it never does on real nodes.
			"--iptables-min-sync-period=0",
			// Leave nf_conntrack_max alone: it is the host's, not the node namespace's.
			"--conntrack-max-per-core=0",
			"--metrics-bind-address=127.0.0.1:10249",
		)
		if err != nil {
			return nil, err
		}
		go d.waitKubeProxy(ctx, p, netsetup.NodeIP(i))
		if cfg.Network.Policy != PolicyKubeRouter {
			continue
		}
		// kube-router logs "sync iptables took ..." (level 1) after each full sync.
		synced := func(line string) bool { return strings.Contains(line, "sync iptables took") }
		if _, err := d.start("kube-router "+n.Name, ns, filepath.Join(logDir, "kube-router.log"), synced,
			cfg.KubeRouter,
			"--run-firewall=true",
			"--run-router=false",
			"--run-service-proxy=false",
			"--kubeconfig="+routerKC,
			"--hostname-override="+n.Name,
			"--service-cluster-ip-range="+netsetup.ServiceCIDR,
			"--enable-cni=false",
			"--health-port=0",
			"--metrics-port=0",
			"--v=1",
		); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// kubeconfig writes a kubeconfig with a client certificate of user (in no group).
func (d *DataPlane) kubeconfig(name, user string) (string, error) {
	cred, err := d.cfg.CA.Issue(user, nil, nil, nil, false)
	if err != nil {
		return "", err
	}
	path := filepath.Join(d.cfg.Dir, "pki", name+".kubeconfig")
	return path, os.WriteFile(path, []byte(pki.Kubeconfig(d.cfg.ServerURL, d.cfg.CA.CertPEM, user, cred)), 0o600)
}

func kubeRouterRBAC(ctx context.Context, c kubernetes.Interface) error {
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "kube-router"}, Rules: kubeRouterRules}
	if _, err := c.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("ClusterRole kube-router: %w", err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-router"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "kube-router"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: kubeRouterUser}},
	}
	if _, err := c.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("ClusterRoleBinding kube-router: %w", err)
	}
	return nil
}

// start runs argv inside network namespace ns with its output in logPath. synced, if not
// nil, marks the process ready on the first output line it accepts.
func (d *DataPlane) start(name, ns, logPath string, synced func(string) bool, argv ...string) (*process, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		log.Close()
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{}), ready: make(chan struct{})}
	go func() {
		r := bufio.NewReader(out)
		for {
			line, err := r.ReadString('\n')
			_, _ = io.WriteString(log, line)
			if synced != nil && synced(line) {
				p.once.Do(func() { close(p.ready) })
			}
			if err != nil {
				break
			}
		}
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	d.mu.Lock()
	d.procs = append(d.procs, p)
	d.mu.Unlock()
	return p, nil
}

// waitKubeProxy marks kube-proxy ready once its health endpoint answers 200, which it does
// after its first successful sync of the rules.
func (d *DataPlane) waitKubeProxy(ctx context.Context, p *process, nodeIP string) {
	client := &http.Client{Timeout: time.Second}
	url := fmt.Sprintf("http://%s:%d/healthz", nodeIP, kubeProxyHealthzPort)
	for {
		if resp, err := client.Get(url); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				p.once.Do(func() { close(p.ready) })
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-p.done:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitReady waits until every component has synced once; a component that exits first
// is an error naming its log.
func (d *DataPlane) WaitReady(ctx context.Context) error {
	d.mu.Lock()
	procs := append([]*process(nil), d.procs...)
	d.mu.Unlock()
	for _, p := range procs {
		select {
		case <-p.ready:
		case <-p.done:
			return fmt.Errorf("%s exited: %v (log in %s/nodes)", p.name, p.err, d.cfg.Dir)
		case <-ctx.Done():
			return fmt.Errorf("%s did not sync in time (log in %s/nodes)", p.name, d.cfg.Dir)
		}
	}
	return nil
}

// Failed returns a channel that receives the first component that exits.
func (d *DataPlane) Failed() <-chan string {
	d.mu.Lock()
	procs := append([]*process(nil), d.procs...)
	d.mu.Unlock()
	ch := make(chan string, len(procs))
	for _, p := range procs {
		go func() {
			<-p.done
			ch <- fmt.Sprintf("%s exited: %v", p.name, p.err)
		}()
	}
	return ch
}

// Stop kills every component.
func (d *DataPlane) Stop() {
	d.mu.Lock()
	procs := append([]*process(nil), d.procs...)
	d.mu.Unlock()
	for _, p := range procs {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	for _, p := range procs {
		<-p.done
	}
}
