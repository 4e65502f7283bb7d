// Command testbed starts a real Kubernetes control plane (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler from k8s.io/kubernetes) with emulated nodes
// whose pods run real programs in network namespaces. See testbed/README.md.
//
//	testbed run --scenario scenarios/three-zones.yaml [--dir DIR] [--prefix P] ...
//	testbed cleanup --prefix P
//
// Internal subcommands: serve (the world namespace's process), container-init (a
// container), go-runner (the conformance image emulation), kube-proxy (upstream
// kube-proxy, run inside a node's network namespace).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/version"
	"k8s.io/klog/v2"
	kubeproxy "k8s.io/kubernetes/cmd/kube-proxy/app"

	"scs-kaas-check/testbed/internal/cloud"
	"scs-kaas-check/testbed/internal/controlplane"
	"scs-kaas-check/testbed/internal/dataplane"
	"scs-kaas-check/testbed/internal/gorunner"
	"scs-kaas-check/testbed/internal/netsetup"
	"scs-kaas-check/testbed/internal/node"
	"scs-kaas-check/testbed/internal/pki"
	"scs-kaas-check/testbed/internal/scenario"
	"scs-kaas-check/testbed/internal/storage"
)

func usage() {
	fmt.Fprintf(os.Stderr, `usage:
  testbed run --scenario FILE [--dir DIR] [--prefix PREFIX] [--listen 127.0.0.1:0]
              [--agnhost PATH] [--kube-router PATH] [--suite-binary PATH]
              [--fixtures DIR] [--keep]
  testbed cleanup --prefix PREFIX [--dir DIR]
  testbed cleanup --stale        (every test bed whose control plane no longer runs)
`)
	os.Exit(2)
}

type options struct {
	scenario, dir, prefix, listen, agnhost, kubeRouter, suite, fixtures string
	keep                                                                bool
}

func (o *options) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.scenario, "scenario", "", "scenario file (testbed/scenarios/*.yaml)")
	fs.StringVar(&o.dir, "dir", "", "working directory (default: a new temporary directory)")
	fs.StringVar(&o.prefix, "prefix", "", "name prefix of network namespaces (default: tb + random)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "address of the API server forwarder in the host's namespace")
	fs.StringVar(&o.agnhost, "agnhost", "", "agnhost binary (default: agnhost next to this binary)")
	fs.StringVar(&o.kubeRouter, "kube-router", "", "kube-router binary for network.policy kube-router (default: kube-router next to this binary)")
	fs.StringVar(&o.suite, "suite-binary", "", "scs-kaas-check binary for images */scs-kaas-check:*")
	fs.StringVar(&o.fixtures, "fixtures", "", "tests/fixtures/e2e directory for the conformance image emulation")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory after stopping")
}

func (o *options) args() []string {
	return []string{"--scenario=" + o.scenario, "--dir=" + o.dir, "--prefix=" + o.prefix, "--listen=" + o.listen,
		"--agnhost=" + o.agnhost, "--kube-router=" + o.kubeRouter, "--suite-binary=" + o.suite, "--fixtures=" + o.fixtures}
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "run":
		os.Exit(run(os.Args[2:]))
	case "serve":
		os.Exit(serve(os.Args[2:]))
	case "cleanup":
		os.Exit(cleanup(os.Args[2:]))
	case "container-init":
		if len(os.Args) != 3 {
			usage()
		}
		err := node.ContainerInit(os.Args[2])
		fmt.Fprintf(os.Stderr, "container-init: %v\n", err)
		os.Exit(128)
	case "go-runner":
		os.Exit(gorunner.Main())
	case "kube-proxy":
		cmd := kubeproxy.NewProxyCommand()
		cmd.SetArgs(os.Args[2:])
		os.Exit(cli.Run(cmd))
	default:
		usage()
	}
}

func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "testbed: error: "+format+"\n", args...)
	return 1
}

func absolute(p string) string {
	if p == "" {
		return ""
	}
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// run is the outer process in the host's namespaces: it builds the network, opens the
// forwarder socket on the host's loopback, starts `serve` inside the world namespace,
// and removes everything when told to stop (SIGTERM/SIGINT) or when serve dies.
func run(argv []string) int {
	var o options
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	o.flags(fs)
	_ = fs.Parse(argv)
	if o.scenario == "" {
		usage()
	}
	if os.Geteuid() != 0 {
		return fail("the test bed needs root (network namespaces, mounts)")
	}
	start := time.Now()
	sc, err := scenario.Load(o.scenario)
	if err != nil {
		return fail("%v", err)
	}
	self, _ := os.Executable()
	if o.agnhost == "" {
		o.agnhost = filepath.Join(filepath.Dir(self), "agnhost")
	}
	if _, err := os.Stat(o.agnhost); err != nil {
		return fail("agnhost binary: %v (build it with testbed/build.sh)", err)
	}
	if o.kubeRouter == "" {
		o.kubeRouter = filepath.Join(filepath.Dir(self), "kube-router")
	}
	if sc.Network.Policy == dataplane.PolicyKubeRouter {
		if _, err := os.Stat(o.kubeRouter); err != nil {
			return fail("kube-router binary: %v (build it with testbed/build.sh)", err)
		}
	}
	o.scenario, o.agnhost, o.kubeRouter, o.suite, o.fixtures = absolute(o.scenario), absolute(o.agnhost), absolute(o.kubeRouter), absolute(o.suite), absolute(o.fixtures)
	if err := commands(sc); err != nil {
		return fail("%v", err)
	}
	if o.prefix == "" {
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		o.prefix = "tb" + hex.EncodeToString(b)
	}
	if len(o.prefix) > 10 || strings.ContainsAny(o.prefix, "/ .") {
		return fail("--prefix must be at most 10 characters without '/', '.' or spaces")
	}
	createdDir := false
	if o.dir == "" {
		if o.dir, err = os.MkdirTemp("", "testbed-"+o.prefix+"-"); err != nil {
			return fail("%v", err)
		}
		createdDir = true
	} else if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return fail("%v", err)
	}
	o.dir = absolute(o.dir)
	_ = os.WriteFile(filepath.Join(o.dir, "prefix"), []byte(o.prefix+"\n"), 0o644)

	// Leftovers of a crashed run with the same prefix go first.
	netsetup.Cleanup(o.prefix)
	cleanupAll := func() {
		for _, err := range netsetup.Cleanup(o.prefix) {
			fmt.Fprintf(os.Stderr, "testbed: cleanup: %v\n", err)
		}
		if !o.keep {
			unmountUnder(o.dir)
			if createdDir {
				_ = os.RemoveAll(o.dir)
			} else {
				for _, sub := range []string{"nodes", "volumes", "etcd", "pki", "nginx-etc", "lb"} {
					_ = os.RemoveAll(filepath.Join(o.dir, sub))
				}
			}
		}
	}
	if err := netsetup.CreateWorld(o.prefix); err != nil {
		cleanupAll()
		return fail("%v", err)
	}
	for i := range sc.Nodes {
		if err := netsetup.CreateNode(o.prefix, i); err != nil {
			cleanupAll()
			return fail("%v", err)
		}
	}
	pool := ""
	if sc.LoadBalancer.ForwardsTraffic() {
		if pool = sc.LoadBalancer.Pool; pool == "" {
			pool = netsetup.DataPlanePool
		}
	}
	if err := netsetup.CreateEdge(o.prefix, pool, sc.Client.BehindNAT); err != nil {
		cleanupAll()
		return fail("%v", err)
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		cleanupAll()
		return fail("listen %s: %v", o.listen, err)
	}
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		cleanupAll()
		return fail("%v", err)
	}
	_ = ln.Close()

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + netsetup.World(o.prefix), "--", self, "serve"},
		append(o.args(), fmt.Sprintf("--started=%d", start.UnixNano()))...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{lnFile}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		cleanupAll()
		return fail("start control plane: %v", err)
	}
	_ = lnFile.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	code := 0
	select {
	case s := <-sigs:
		fmt.Fprintf(os.Stderr, "testbed: %v: stopping\n", s)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		case <-sigs:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	case err := <-exited:
		code = fail("the control plane stopped: %v (log: %s)", err, filepath.Join(o.dir, "control-plane.log"))
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cleanupAll()
	fmt.Fprintf(os.Stderr, "testbed: stopped, network namespaces %s-* removed\n", o.prefix)
	return code
}

// commands checks that the programs the scenario's network needs are installed.
func commands(sc *scenario.Scenario) error {
	need := map[string]string{"ip": "iproute2", "nsenter": "util-linux", "iptables": "iptables", "nft": "nftables"}
	if sc.Network.Policy == dataplane.PolicyKubeRouter {
		need["ipset"] = "ipset"
	}
	if sc.LoadBalancer.Mode == "proxy" {
		need["haproxy"] = "haproxy"
	}
	var missing []string
	for cmd, pkg := range need {
		if _, err := exec.LookPath(cmd); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", cmd, pkg))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("missing programs: %s", strings.Join(missing, ", "))
	}
	return nil
}

// unmountUnder lazily unmounts anything still mounted below dir in this mount namespace.
func unmountUnder(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			_ = syscall.Unmount(f[4], syscall.MNT_DETACH)
		}
	}
}

func cleanup(argv []string) int {
	fs := flag.NewFlagSet("cleanup", flag.ExitOnError)
	prefix := fs.String("prefix", "", "prefix of the test bed to remove")
	dir := fs.String("dir", "", "its working directory, removed too")
	stale := fs.Bool("stale", false, "remove every test bed (tb* prefix) whose world namespace has no process left")
	_ = fs.Parse(argv)
	var prefixes []string
	switch {
	case *prefix != "":
		prefixes = []string{*prefix}
	case *stale:
		out, _ := exec.Command("ip", "netns", "list").Output()
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || !strings.HasPrefix(f[0], "tb") || !strings.HasSuffix(f[0], "-world") {
				continue
			}
			pids, _ := exec.Command("ip", "netns", "pids", f[0]).Output()
			if strings.TrimSpace(string(pids)) == "" {
				prefixes = append(prefixes, strings.TrimSuffix(f[0], "-world"))
			}
		}
	default:
		usage()
	}
	code := 0
	for _, p := range prefixes {
		for _, err := range netsetup.Cleanup(p) {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
		fmt.Fprintf(os.Stderr, "testbed: removed network namespaces %s-*\n", p)
	}
	if *dir != "" {
		unmountUnder(absolute(*dir))
		_ = os.RemoveAll(*dir)
	}
	return code
}

// serve runs inside the world namespace: control plane, agents, emulations.
func serve(argv []string) int {
	var o options
	var started int64
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	o.flags(fs)
	fs.Int64Var(&started, "started", 0, "")
	_ = fs.Parse(argv)
	start := time.Unix(0, started)
	sc, err := scenario.Load(o.scenario)
	if err != nil {
		return fail("%v", err)
	}
	// Component logs go to a file; stdout carries only the ready line.
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	logPath := filepath.Join(o.dir, "control-plane.log")
	_ = klogFlags.Parse([]string{"--logtostderr=false", "--alsologtostderr=false", "--log_file=" + logPath, "--one_output=true", "--skip_log_headers=true", "--stderrthreshold=FATAL"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	files, err := controlplane.Prepare(filepath.Join(o.dir, "pki"), nil)
	if err != nil {
		return fail("certificates: %v", err)
	}
	etcd, err := controlplane.StartEtcd(o.dir)
	if err != nil {
		return fail("etcd: %v", err)
	}
	// No graceful etcd or API server shutdown: on a stop the pods are killed and the
	// process exits; its data directory is thrown away (a graceful stop waits for every
	// open watch and takes many seconds).
	_ = etcd
	cpErr := make(chan error, 3)
	go func() {
		cpErr <- fmt.Errorf("kube-apiserver: %w", controlplane.RunAPIServer(ctx, files.APIServerArgs()))
	}()
	admin, err := files.AdminClient()
	if err != nil {
		return fail("%v", err)
	}
	readyCtx, readyCancel := context.WithTimeout(ctx, 3*time.Minute)
	defer readyCancel()
	go func() {
		select {
		case err := <-cpErr:
			fmt.Fprintf(os.Stderr, "testbed: error: %v\n", err)
			readyCancel()
		case <-readyCtx.Done():
		}
	}()
	if err := controlplane.WaitReady(readyCtx, admin); err != nil {
		return fail("%v", err)
	}

	// The forwarder: the host's 127.0.0.1 socket (fd 3) to the API server.
	hostLn, err := net.FileListener(os.NewFile(3, "host-listener"))
	if err != nil {
		return fail("host listener: %v", err)
	}
	go forward(hostLn, controlplane.ServerURL()[len("https://"):])
	kubeconfig := filepath.Join(o.dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(pki.Kubeconfig("https://"+hostLn.Addr().String(), files.CA.CertPEM, "kubernetes-admin", files.Admin)), 0o600); err != nil {
		return fail("%v", err)
	}

	go func() { cpErr <- fmt.Errorf("kube-controller-manager: %w", files.RunControllerManager(ctx)) }()
	go func() { cpErr <- fmt.Errorf("kube-scheduler: %w", files.RunScheduler(ctx)) }()
	go func() {
		if err := <-cpErr; ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "testbed: error: %v\n", err)
			sigs <- syscall.SIGTERM
		}
	}()

	if err := storage.Setup(ctx, admin, sc.Storage); err != nil {
		return fail("%v", err)
	}
	storage.Run(ctx, admin, o.dir, sc.Storage)
	provider, err := cloud.NewProvider(sc.LoadBalancer, cloud.Config{Prefix: o.prefix, Dir: o.dir})
	if err != nil {
		return fail("%v", err)
	}
	if err := cloud.Run(ctx, admin, provider); err != nil {
		return fail("cloud controller: %v", err)
	}

	self, _ := os.Executable()
	programs := &node.Programs{
		Agnhost: o.agnhost, Suite: o.suite, Self: self, Fixtures: o.fixtures, Dir: o.dir,
		ConformanceDefault: sc.Conformance.Default, ConformanceByFocus: sc.Conformance.ByFocus,
		ConformanceByTag: sc.Conformance.ByTag,
		PullDelays:       map[string]time.Duration{},
	}
	for host, r := range sc.Registries {
		programs.PullDelays[host] = time.Duration(r.PullSeconds) * time.Second
	}
	gitVersion := version.Get().GitVersion
	var agents []*node.Agent
	for i, n := range sc.Nodes {
		a, err := node.NewAgent(i, n, o.prefix, o.dir, gitVersion, controlplane.ServerURL(), files.CA, admin, programs)
		if err != nil {
			return fail("node %s: %v", n.Name, err)
		}
		a.VolumeRoot = o.dir
		if err := a.Start(ctx, files.CA); err != nil {
			return fail("node %s: %v", n.Name, err)
		}
		agents = append(agents, a)
	}
	stopAgents := func() {
		var wg sync.WaitGroup
		for _, a := range agents {
			wg.Add(1)
			go func() { defer wg.Done(); a.Stop() }()
		}
		wg.Wait()
	}
	defer stopAgents()

	// The per-node network components, as DaemonSets would run them.
	dp, err := dataplane.Start(ctx, dataplane.Config{
		Prefix: o.prefix, Dir: o.dir, Self: self, KubeRouter: o.kubeRouter,
		ServerURL: controlplane.ServerURL(), CA: files.CA, Network: sc.Network,
	}, admin, sc.Nodes)
	if err != nil {
		return fail("%v", err)
	}
	defer dp.Stop()
	go func() {
		if why := <-dp.Failed(); ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "testbed: error: %s (logs in %s/nodes)\n", why, o.dir)
			sigs <- syscall.SIGTERM
		}
	}()
	if err := waitNodesReady(readyCtx, admin, len(sc.Nodes)); err != nil {
		return fail("%v", err)
	}
	if err := dp.WaitReady(readyCtx); err != nil {
		return fail("%v", err)
	}
	// The client namespace reaches the API server on the node network, whose address the
	// serving certificate covers.
	clientKubeconfig := filepath.Join(o.dir, "client.kubeconfig")
	if err := os.WriteFile(clientKubeconfig, []byte(pki.Kubeconfig(controlplane.ServerURL(), files.CA.CertPEM, "kubernetes-admin", files.Admin)), 0o600); err != nil {
		return fail("%v", err)
	}
	fmt.Printf("testbed ready: kubeconfig=%s server=https://%s version=%s nodes=%d prefix=%s dir=%s client-netns=%s client-kubeconfig=%s seconds=%.1f\n",
		kubeconfig, hostLn.Addr(), gitVersion, len(sc.Nodes), o.prefix, o.dir, netsetup.Client(o.prefix), clientKubeconfig, time.Since(start).Seconds())
	<-sigs
	stopAgents()
	cancel()
	return 0
}

// waitNodesReady watches nodes until n are Ready without the not-ready taint (the node
// lifecycle controller removes it), then waits for the default ServiceAccount.
func waitNodesReady(ctx context.Context, c kubernetes.Interface, n int) error {
	ready := func(nd *corev1.Node) bool {
		for _, t := range nd.Spec.Taints {
			if t.Key == "node.kubernetes.io/not-ready" || t.Key == "node.kubernetes.io/unreachable" {
				return false
			}
		}
		for _, cond := range nd.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue
			}
		}
		return false
	}
	check := func() (string, bool, error) {
		list, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return "", false, err
		}
		count := 0
		for i := range list.Items {
			if ready(&list.Items[i]) {
				count++
			}
		}
		return list.ResourceVersion, count >= n, nil
	}
	for {
		rv, ok, err := check()
		if err != nil {
			return fmt.Errorf("nodes: %w", err)
		}
		if ok {
			break
		}
		w, err := c.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
		if err != nil {
			return fmt.Errorf("nodes did not become ready: %w", err)
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				break
			}
			if _, ok, _ := check(); ok {
				break
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return fmt.Errorf("nodes did not become ready in time")
		}
	}
	// Pods need their namespace's ServiceAccount; the serviceaccount controller makes it.
	sel := fields.OneTermEqualSelector("metadata.name", "default").String()
	for {
		list, err := c.CoreV1().ServiceAccounts("default").List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return err
		}
		if len(list.Items) > 0 {
			return nil
		}
		w, err := c.CoreV1().ServiceAccounts("default").Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: list.ResourceVersion})
		if err != nil {
			return err
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Added {
				break
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return fmt.Errorf("the default ServiceAccount was not created in time")
		}
	}
}

func forward(ln net.Listener, target string) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			up, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, conn); done <- struct{}{} }()
			go func() { _, _ = io.Copy(conn, up); done <- struct{}{} }()
			<-done
		}()
	}
}
