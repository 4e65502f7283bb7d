// Package cloud is the test bed's cloud: a cloudprovider.Interface whose LoadBalancer the
// upstream service controller (k8s.io/cloud-provider/controllers/service, as a cloud
// controller manager runs it) drives. The controller adds the cleanup finalizer, picks
// the member nodes (not labelled node.kubernetes.io/exclude-from-external-load-balancers),
// writes status.loadBalancer and the events EnsuringLoadBalancer, EnsuredLoadBalancer,
// SyncLoadBalancerFailed, UpdatedLoadBalancer, DeletingLoadBalancer, DeletedLoadBalancer.
//
// The modes (scenario loadBalancer.mode): none (no controller at all), assign (addresses
// only), fail (every attempt fails), and the load balancers of balancers.go that really
// forward traffic in the load balancer namespace: proxy, l3 and unreachable.
package cloud

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	cloudprovider "k8s.io/cloud-provider"
	servicecontroller "k8s.io/cloud-provider/controllers/service"
	controllersmetrics "k8s.io/component-base/metrics/prometheus/controllers"
	"k8s.io/utils/ptr"

	"scs-kaas-check/testbed/internal/netsetup"
	"scs-kaas-check/testbed/internal/scenario"
)

// Config locates the load balancer namespace and the test bed's directory.
type Config struct {
	Prefix string
	Dir    string
}

// NewProvider returns the cloud for a scenario's load balancer mode; nil for "none" (no
// cloud controller at all: nothing happens, no events).
func NewProvider(lb scenario.LoadBalancer, cfg Config) (cloudprovider.Interface, error) {
	pool := lb.Pool
	switch {
	case pool != "":
	case lb.ForwardsTraffic():
		pool = netsetup.DataPlanePool
	default:
		pool = netsetup.LoadBalancerPool
	}
	_, n, err := net.ParseCIDR(pool)
	if err != nil {
		return nil, err
	}
	alloc := &allocator{pool: n, byService: map[types.UID]string{}}
	switch lb.Mode {
	case "", "none":
		return nil, nil
	case "fail":
		msg := lb.FailMessage
		if msg == "" {
			msg = "quota exceeded for resource loadbalancer"
		}
		return &provider{lb: failing{msg}}, nil
	case "assign":
		return &provider{lb: &assigning{alloc: alloc}}, nil
	case "proxy", "l3", "unreachable":
		return &provider{lb: newBalancers(lb, cfg, alloc)}, nil
	}
	return nil, fmt.Errorf("unknown load balancer mode %q", lb.Mode)
}

// Run starts the upstream service controller for the provider (no-op for nil).
func Run(ctx context.Context, c kubernetes.Interface, cloud cloudprovider.Interface) error {
	if cloud == nil {
		return nil
	}
	f := informers.NewSharedInformerFactory(c, 0)
	ctrl, err := servicecontroller.New(cloud, c, f.Core().V1().Services(), f.Core().V1().Nodes(), "testbed", utilfeature.DefaultFeatureGate)
	if err != nil {
		return err
	}
	f.Start(ctx.Done())
	go ctrl.Run(ctx, 1, controllersmetrics.NewControllerManagerMetrics("cloud-controller-manager"))
	return nil
}

// provider is the cloudprovider.Interface: only load balancers.
type provider struct{ lb cloudprovider.LoadBalancer }

func (p *provider) Initialize(cloudprovider.ControllerClientBuilder, <-chan struct{}) {}
func (p *provider) LoadBalancer() (cloudprovider.LoadBalancer, bool)                  { return p.lb, true }
func (p *provider) Instances() (cloudprovider.Instances, bool)                        { return nil, false }
func (p *provider) InstancesV2() (cloudprovider.InstancesV2, bool)                    { return nil, false }
func (p *provider) Zones() (cloudprovider.Zones, bool)                                { return nil, false }
func (p *provider) Clusters() (cloudprovider.Clusters, bool)                          { return nil, false }
func (p *provider) Routes() (cloudprovider.Routes, bool)                              { return nil, false }
func (p *provider) ProviderName() string                                              { return "testbed" }
func (p *provider) HasClusterID() bool                                                { return true }

// allocator hands out the pool's addresses .10 to .249, one per Service.
type allocator struct {
	mu        sync.Mutex
	pool      *net.IPNet
	byService map[types.UID]string
}

func (a *allocator) get(uid types.UID) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ip, ok := a.byService[uid]; ok {
		return ip, nil
	}
	used := map[string]bool{}
	for _, v := range a.byService {
		used[v] = true
	}
	base := a.pool.IP.To4()
	for i := 10; i < 250; i++ {
		cand := net.IPv4(base[0], base[1], base[2], byte(i)).String()
		if !used[cand] && a.pool.Contains(net.ParseIP(cand)) {
			a.byService[uid] = cand
			return cand, nil
		}
	}
	return "", fmt.Errorf("no free address in %s", a.pool)
}

func (a *allocator) lookup(uid types.UID) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ip, ok := a.byService[uid]
	return ip, ok
}

func (a *allocator) release(uid types.UID) {
	a.mu.Lock()
	delete(a.byService, uid)
	a.mu.Unlock()
}

func status(ip string, mode corev1.LoadBalancerIPMode) *corev1.LoadBalancerStatus {
	return &corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: ip, IPMode: ptr.To(mode)}}}
}

// loadBalancerName is cloudprovider.DefaultLoadBalancerName: "a" + the UID without dashes,
// at most 32 characters.
func loadBalancerName(svc *corev1.Service) string {
	name := "a" + strings.ReplaceAll(string(svc.UID), "-", "")
	if len(name) > 32 {
		name = name[:32]
	}
	return name
}

// failing fails every attempt with its message.
type failing struct{ msg string }

func (f failing) GetLoadBalancer(context.Context, string, *corev1.Service) (*corev1.LoadBalancerStatus, bool, error) {
	return nil, false, nil
}
func (f failing) GetLoadBalancerName(_ context.Context, _ string, svc *corev1.Service) string {
	return loadBalancerName(svc)
}
func (f failing) EnsureLoadBalancer(context.Context, string, *corev1.Service, []*corev1.Node) (*corev1.LoadBalancerStatus, error) {
	return nil, fmt.Errorf("%s", f.msg)
}
func (f failing) UpdateLoadBalancer(context.Context, string, *corev1.Service, []*corev1.Node) error {
	return fmt.Errorf("%s", f.msg)
}
func (f failing) EnsureLoadBalancerDeleted(context.Context, string, *corev1.Service) error {
	return nil
}

// assigning hands out loopback addresses; nothing answers on them.
type assigning struct{ alloc *allocator }

func (a *assigning) GetLoadBalancer(_ context.Context, _ string, svc *corev1.Service) (*corev1.LoadBalancerStatus, bool, error) {
	ip, ok := a.alloc.lookup(svc.UID)
	if !ok {
		return nil, false, nil
	}
	return status(ip, corev1.LoadBalancerIPModeVIP), true, nil
}
func (a *assigning) GetLoadBalancerName(_ context.Context, _ string, svc *corev1.Service) string {
	return loadBalancerName(svc)
}
func (a *assigning) EnsureLoadBalancer(_ context.Context, _ string, svc *corev1.Service, _ []*corev1.Node) (*corev1.LoadBalancerStatus, error) {
	ip, err := a.alloc.get(svc.UID)
	if err != nil {
		return nil, err
	}
	return status(ip, corev1.LoadBalancerIPModeVIP), nil
}
func (a *assigning) UpdateLoadBalancer(context.Context, string, *corev1.Service, []*corev1.Node) error {
	return nil
}
func (a *assigning) EnsureLoadBalancerDeleted(_ context.Context, _ string, svc *corev1.Service) error {
	a.alloc.release(svc.UID)
	return nil
}
