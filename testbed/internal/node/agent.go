// Package node emulates the node side of a cluster: Node objects with leases, a kubelet
// HTTPS endpoint for container logs, and pods whose containers run real programs in
// their own network namespaces.
package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"scs-kaas-check/testbed/internal/netsetup"
	"scs-kaas-check/testbed/internal/pki"
	"scs-kaas-check/testbed/internal/scenario"
)

// KubeletPort is the port of the emulated kubelet's HTTPS endpoint.
const KubeletPort = 10250

// Agent is one emulated node.
type Agent struct {
	Index    int
	Spec     scenario.Node
	Prefix   string
	Dir      string
	Version  string
	Programs *Programs
	// VolumeRoot is the test bed directory holding provisioned volumes.
	VolumeRoot string

	admin    kubernetes.Interface
	client   kubernetes.Interface
	recorder record.EventRecorder
	pods     *netsetup.Pods
	caPEM    []byte

	mu      sync.Mutex
	running map[types.UID]*podRuntime
	wg      sync.WaitGroup
	ctx     context.Context
	kubelet interface{ Close() error }
}

// NewAgent prepares node i: its credentials (system:node:<name>) and kubelet certificate.
func NewAgent(i int, spec scenario.Node, prefix, dir, version, serverURL string, ca *pki.CA, admin kubernetes.Interface, programs *Programs) (*Agent, error) {
	dir = filepath.Join(dir, "nodes", spec.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cred, err := ca.Issue("system:node:"+spec.Name, []string{"system:nodes"}, nil, nil, false)
	if err != nil {
		return nil, err
	}
	kcPath := filepath.Join(dir, "kubelet.kubeconfig")
	if err := os.WriteFile(kcPath, []byte(pki.Kubeconfig(serverURL, ca.CertPEM, "system:node:"+spec.Name, cred)), 0o600); err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kcPath)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Agent{
		Index: i, Spec: spec, Prefix: prefix, Dir: dir, Version: version, Programs: programs,
		admin: admin, client: client, pods: netsetup.NewPods(prefix, i), caPEM: ca.CertPEM,
		running: map[types.UID]*podRuntime{},
	}, nil
}

// IP is the node's InternalIP.
func (a *Agent) IP() string { return netsetup.NodeIP(a.Index) }

// Start registers the node, serves the kubelet endpoint, renews the lease and runs pods.
func (a *Agent) Start(ctx context.Context, ca *pki.CA) error {
	a.ctx = ctx
	serving, err := ca.Issue("system:node:"+a.Spec.Name, []string{"system:nodes"}, []string{a.Spec.Name}, []net.IP{netsetup.ParseIP(a.IP())}, true)
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(serving.CertPEM, serving.KeyPEM)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	ln, err := netsetup.ListenIn(netsetup.NodeNS(a.Prefix, a.Index), fmt.Sprintf("%s:%d", a.IP(), KubeletPort))
	if err != nil {
		return fmt.Errorf("kubelet endpoint of %s: %w", a.Spec.Name, err)
	}
	a.kubelet = serveKubelet(ln, a, cert, pool)

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.client.CoreV1().Events("")})
	a.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: a.Spec.Name})

	if err := a.register(ctx); err != nil {
		return err
	}
	go a.heartbeat(ctx)

	factory := informers.NewSharedInformerFactoryWithOptions(a.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.Spec.Name).String()
	}))
	inf := factory.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.sync(obj) },
		UpdateFunc: func(_, obj any) { a.sync(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				a.gone(p)
			}
		},
	})
	factory.Start(ctx.Done())
	return nil
}

// Stop kills every pod of the node and removes their namespaces.
func (a *Agent) Stop() {
	a.mu.Lock()
	prs := make([]*podRuntime, 0, len(a.running))
	for _, pr := range a.running {
		prs = append(prs, pr)
	}
	a.mu.Unlock()
	for _, pr := range prs {
		pr.kill(0)
		pr.teardown()
	}
	if a.kubelet != nil {
		_ = a.kubelet.Close()
	}
}

func (a *Agent) nodeObject() *corev1.Node {
	var taints []corev1.Taint
	for _, t := range a.Spec.Taints {
		taints = append(taints, corev1.Taint{Key: t.Key, Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   a.Spec.Name,
			Labels: a.Spec.AllLabels(),
			Annotations: map[string]string{
				"node.alpha.kubernetes.io/ttl": "0",
				"testbed.scs.community/netns":  netsetup.NodeNS(a.Prefix, a.Index),
			},
		},
		Spec: corev1.NodeSpec{
			PodCIDR:       netsetup.PodCIDR(a.Index),
			PodCIDRs:      []string{netsetup.PodCIDR(a.Index)},
			Taints:        taints,
			Unschedulable: a.Spec.Unschedulable,
		},
		Status: a.nodeStatus(),
	}
}

func (a *Agent) nodeStatus() corev1.NodeStatus {
	now := metav1.Now()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("4"),
		corev1.ResourceMemory:           resource.MustParse("16Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	}
	addresses := []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: a.IP()}, {Type: corev1.NodeHostName, Address: a.Spec.Name}}
	if a.Spec.ExternalIP != "" {
		addresses = append(addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: a.Spec.ExternalIP})
	}
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	return corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"),
		},
		Addresses:       addresses,
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: KubeletPort}},
		NodeInfo: corev1.NodeSystemInfo{
			MachineID:               fmt.Sprintf("%032x", a.Index+1),
			SystemUUID:              fmt.Sprintf("00000000-0000-0000-0000-%012x", a.Index+1),
			BootID:                  fmt.Sprintf("b0000000-0000-0000-0000-%012x", a.Index+1),
			KernelVersion:           kernelVersion(),
			OSImage:                 "scs-kaas-check test bed (emulated node)",
			ContainerRuntimeVersion: "testbed://0.1.0",
			KubeletVersion:          a.Version,
			OperatingSystem:         "linux",
			Architecture:            "amd64",
		},
	}
}

func kernelVersion() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return string(b[:len(b)-1])
}

// register creates the Node (as a provisioning tool would, with the admin credential, so
// that role labels are allowed) and posts its status with the node's own credential.
func (a *Agent) register(ctx context.Context) error {
	n := a.nodeObject()
	if _, err := a.admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node %s: %w", n.Name, err)
	}
	return a.postStatus(ctx)
}

func (a *Agent) postStatus(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		cur, err := a.client.CoreV1().Nodes().Get(ctx, a.Spec.Name, metav1.GetOptions{})
		if err == nil {
			cur.Status = a.nodeStatus()
			_, err = a.client.CoreV1().Nodes().UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		}
		if err == nil || attempt > 5 || ctx.Err() != nil {
			return err
		}
	}
}

// heartbeat renews the node's Lease every 10 s (the kubelet's default) and reposts the
// status every minute.
func (a *Agent) heartbeat(ctx context.Context) {
	leases := a.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	n := 0
	for {
		now := metav1.NewMicroTime(time.Now())
		l, err := leases.Get(ctx, a.Spec.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			node, nerr := a.client.CoreV1().Nodes().Get(ctx, a.Spec.Name, metav1.GetOptions{})
			l = &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: a.Spec.Name, Namespace: corev1.NamespaceNodeLease},
				Spec: coordinationv1.LeaseSpec{
					HolderIdentity: ptr.To(a.Spec.Name), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &now,
				},
			}
			if nerr == nil {
				l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}
			}
			_, err = leases.Create(ctx, l, metav1.CreateOptions{})
		} else if err == nil {
			l.Spec.RenewTime = &now
			_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		}
		if err != nil && ctx.Err() == nil {
			klog.Warningf("node %s: lease: %v", a.Spec.Name, err)
		}
		if n++; n%6 == 0 {
			if err := a.postStatus(ctx); err != nil && ctx.Err() == nil {
				klog.Warningf("node %s: status: %v", a.Spec.Name, err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// sync reacts to a pod bound to this node.
func (a *Agent) sync(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok || a.ctx.Err() != nil {
		return
	}
	a.mu.Lock()
	pr := a.running[p.UID]
	if pr == nil {
		if p.DeletionTimestamp != nil && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || p.Status.StartTime == nil) {
			// Nothing of ours runs for it (terminal or never started): confirm deletion.
			a.mu.Unlock()
			go a.confirmDeletion(p)
			return
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			a.mu.Unlock()
			return
		}
		pr = newPodRuntime(a, p)
		a.running[p.UID] = pr
		a.mu.Unlock()
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			pr.run()
		}()
		return
	}
	a.mu.Unlock()
	pr.update(p)
}

func (a *Agent) gone(p *corev1.Pod) {
	a.mu.Lock()
	pr := a.running[p.UID]
	a.mu.Unlock()
	if pr != nil {
		pr.removed()
	}
}

func (a *Agent) forget(uid types.UID) {
	a.mu.Lock()
	delete(a.running, uid)
	a.mu.Unlock()
}

// confirmDeletion deletes the pod with grace period 0, as the kubelet does once its
// containers are gone.
func (a *Agent) confirmDeletion(p *corev1.Pod) {
	err := a.client.CoreV1().Pods(p.Namespace).Delete(context.Background(), p.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &p.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		klog.Warningf("node %s: confirm deletion of %s/%s: %v", a.Spec.Name, p.Namespace, p.Name, err)
	}
}

// findLog returns the log of a container of a pod on this node.
func (a *Agent) findLog(namespace, name, container string, previous bool) (*containerLog, error) {
	a.mu.Lock()
	var found *podRuntime
	for _, pr := range a.running {
		if pr.namespace == namespace && pr.name == name {
			found = pr
		}
	}
	a.mu.Unlock()
	if found == nil {
		// A finished pod whose runtime is gone still has its logs on disk.
		return a.logOnDisk(namespace, name, container, previous)
	}
	return found.log(container, previous)
}
