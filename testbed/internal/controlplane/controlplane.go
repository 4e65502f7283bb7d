// Package controlplane runs the upstream control plane in this process: embedded etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler, each from its upstream
// package and configured through its own command-line flags.
package controlplane

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"

	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	schedulerapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	scheduleroptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"

	"scs-kaas-check/testbed/internal/netsetup"
	"scs-kaas-check/testbed/internal/pki"
)

func init() {
	// Three components apply logging options in one process.
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged
}

// Files are the credentials and kubeconfigs of one control plane.
type Files struct {
	Dir              string
	CA               *pki.CA
	CACert           string
	AdminKubeconfig  string // server https://172.30.0.1:6443 (inside the world namespace)
	Admin            *pki.Pair
	SAKey            string
	kcmKubeconfig    string
	schedKubeconfig  string
	serverCert       string
	serverKey        string
	kubeletClientCrt string
	kubeletClientKey string
}

// ServerURL is the API server's URL on the node network.
func ServerURL() string {
	return fmt.Sprintf("https://%s:%d", netsetup.WorldIP, netsetup.APIServerPort)
}

// Prepare makes the CA, certificates, keys and kubeconfigs under dir.
func Prepare(dir string, extraIPs []net.IP) (*Files, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, err := pki.NewCA("testbed-ca")
	if err != nil {
		return nil, err
	}
	f := &Files{Dir: dir, CA: ca, CACert: filepath.Join(dir, "ca.crt"), SAKey: filepath.Join(dir, "sa.key")}
	if err := os.WriteFile(f.CACert, ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	if err := pki.ServiceAccountKey(f.SAKey); err != nil {
		return nil, err
	}
	ips := append([]net.IP{netsetup.ParseIP(netsetup.WorldIP), netsetup.ParseIP(netsetup.KubernetesServiceIP), netsetup.ParseIP("127.0.0.1")}, extraIPs...)
	dns := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	server, err := ca.Issue("kube-apiserver", nil, dns, ips, true)
	if err != nil {
		return nil, err
	}
	if f.serverCert, f.serverKey, err = server.Write(dir, "apiserver"); err != nil {
		return nil, err
	}
	kc, err := ca.Issue("kube-apiserver-kubelet-client", []string{"system:masters"}, nil, nil, false)
	if err != nil {
		return nil, err
	}
	if f.kubeletClientCrt, f.kubeletClientKey, err = kc.Write(dir, "apiserver-kubelet-client"); err != nil {
		return nil, err
	}
	write := func(name, user string, orgs []string) (string, *pki.Pair, error) {
		p, err := ca.Issue(user, orgs, nil, nil, false)
		if err != nil {
			return "", nil, err
		}
		path := filepath.Join(dir, name+".kubeconfig")
		return path, p, os.WriteFile(path, []byte(pki.Kubeconfig(ServerURL(), ca.CertPEM, user, p)), 0o600)
	}
	if f.AdminKubeconfig, f.Admin, err = write("admin-internal", "kubernetes-admin", []string{"system:masters"}); err != nil {
		return nil, err
	}
	if f.kcmKubeconfig, _, err = write("controller-manager", "system:kube-controller-manager", nil); err != nil {
		return nil, err
	}
	if f.schedKubeconfig, _, err = write("scheduler", "system:kube-scheduler", nil); err != nil {
		return nil, err
	}
	return f, nil
}

// StartEtcd runs embedded etcd on 127.0.0.1 of the world namespace.
func StartEtcd(dir string) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(dir, "etcd.log")}
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("etcd did not become ready within 60s")
	}
}

func parse(name string, sets map[string]*pflag.FlagSet, args []string) error {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	for _, s := range sets {
		fs.AddFlagSet(s)
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s flags: %w", name, err)
	}
	return nil
}

// APIServerArgs are the kube-apiserver flags of the test bed.
func (f *Files) APIServerArgs() []string {
	return []string{
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=" + netsetup.WorldIP,
		"--advertise-address=" + netsetup.WorldIP,
		fmt.Sprintf("--secure-port=%d", netsetup.APIServerPort),
		"--tls-cert-file=" + f.serverCert,
		"--tls-private-key-file=" + f.serverKey,
		"--client-ca-file=" + f.CACert,
		"--authorization-mode=Node,RBAC",
		// The default chain (PodSecurity included) plus what kubeadm adds.
		"--enable-admission-plugins=NodeRestriction",
		"--service-cluster-ip-range=" + netsetup.ServiceCIDR,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + f.SAKey,
		"--service-account-signing-key-file=" + f.SAKey,
		"--kubelet-client-certificate=" + f.kubeletClientCrt,
		"--kubelet-client-key=" + f.kubeletClientKey,
		"--kubelet-certificate-authority=" + f.CACert,
		"--kubelet-preferred-address-types=InternalIP",
		"--allow-privileged=true",
		"--cert-dir=" + filepath.Join(f.Dir, "apiserver-certs"),
		"--profiling=false",
		"--event-ttl=1h",
	}
}

// RunAPIServer runs kube-apiserver until ctx ends.
func RunAPIServer(ctx context.Context, args []string) error {
	s := apiserveroptions.NewServerRunOptions()
	if err := parse("kube-apiserver", s.Flags().FlagSets, args); err != nil {
		return err
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return utilerrors.NewAggregate(errs)
	}
	return apiserverapp.Run(ctx, completed)
}

// RunControllerManager runs kube-controller-manager until ctx ends.
func (f *Files) RunControllerManager(ctx context.Context) error {
	s, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	known, disabled, aliases := kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases()
	nfs := s.Flags(known, disabled, aliases)
	s.ParsedFlags = &nfs
	if err := parse("kube-controller-manager", nfs.FlagSets, []string{
		"--kubeconfig=" + f.kcmKubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + f.SAKey,
		"--root-ca-file=" + f.CACert,
		"--cluster-cidr=" + netsetup.ClusterCIDR,
		"--service-cluster-ip-range=" + netsetup.ServiceCIDR,
		"--controllers=*",
		"--profiling=false",
	}); err != nil {
		return err
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	c, err := s.Config(ctx, known, disabled, aliases)
	if err != nil {
		return err
	}
	return kcmapp.Run(ctx, c.Complete())
}

// RunScheduler runs kube-scheduler until ctx ends.
func (f *Files) RunScheduler(ctx context.Context) error {
	opts := scheduleroptions.NewOptions()
	if err := parse("kube-scheduler", opts.Flags.FlagSets, []string{
		"--kubeconfig=" + f.schedKubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--profiling=false",
	}); err != nil {
		return err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	cc, sched, err := schedulerapp.Setup(ctx, opts)
	if err != nil {
		return err
	}
	return schedulerapp.Run(ctx, cc, sched)
}

// AdminClient is a clientset with the admin credential.
func (f *Files) AdminClient() (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", f.AdminKubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 100, 200
	return kubernetes.NewForConfig(cfg)
}

// WaitReady waits until /readyz answers ok.
func WaitReady(ctx context.Context, client *kubernetes.Clientset) error {
	var last error
	for {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("API server not ready: %v", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Logf logs to the control plane log.
func Logf(format string, args ...any) { klog.Infof(format, args...) }
