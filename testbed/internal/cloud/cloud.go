// Package cloud emulates a cloud controller manager's service controller for Services of
// type LoadBalancer: it adds the cleanup finalizer, asks a Provider for an address and
// writes status.loadBalancer and the events a real cloud controller writes.
package cloud

import (
	"context"
	"fmt"
	"net"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"

	"scs-kaas-check/testbed/internal/netsetup"
	"scs-kaas-check/testbed/internal/scenario"
)

const finalizer = "service.kubernetes.io/load-balancer-cleanup"

// Provider is the seam for load balancer implementations. The data-plane issue adds
// providers that really forward traffic (proxy, l3, unreachable).
type Provider interface {
	// Ensure provisions (or updates) the load balancer and returns its ingress.
	Ensure(ctx context.Context, svc *corev1.Service) ([]corev1.LoadBalancerIngress, error)
	// Delete removes it.
	Delete(ctx context.Context, svc *corev1.Service) error
}

// NewProvider returns the provider for a scenario's mode; nil for "none" (no cloud
// controller at all: nothing happens, no events).
func NewProvider(lb scenario.LoadBalancer) (Provider, error) {
	switch lb.Mode {
	case "", "none":
		return nil, nil
	case "fail":
		msg := lb.FailMessage
		if msg == "" {
			msg = "quota exceeded for resource loadbalancer"
		}
		return failing{msg}, nil
	case "assign":
		pool := lb.Pool
		if pool == "" {
			pool = netsetup.LoadBalancerPool
		}
		_, n, err := net.ParseCIDR(pool)
		if err != nil {
			return nil, err
		}
		return &assigning{pool: n, byService: map[string]string{}}, nil
	}
	return nil, fmt.Errorf("unknown load balancer mode %q", lb.Mode)
}

type failing struct{ msg string }

func (f failing) Ensure(context.Context, *corev1.Service) ([]corev1.LoadBalancerIngress, error) {
	return nil, fmt.Errorf("%s", f.msg)
}
func (f failing) Delete(context.Context, *corev1.Service) error { return nil }

// assigning hands out addresses from a pool; nothing answers on them yet (no data plane).
type assigning struct {
	mu        sync.Mutex
	pool      *net.IPNet
	byService map[string]string
}

func (a *assigning) Ensure(_ context.Context, svc *corev1.Service) ([]corev1.LoadBalancerIngress, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := string(svc.UID)
	ip, ok := a.byService[key]
	if !ok {
		used := map[string]bool{}
		for _, v := range a.byService {
			used[v] = true
		}
		base := a.pool.IP.To4()
		for i := 10; i < 250; i++ {
			cand := net.IPv4(base[0], base[1], base[2], byte(i)).String()
			if !used[cand] && a.pool.Contains(net.ParseIP(cand)) {
				ip = cand
				break
			}
		}
		if ip == "" {
			return nil, fmt.Errorf("no free address in %s", a.pool)
		}
		a.byService[key] = ip
	}
	return []corev1.LoadBalancerIngress{{IP: ip, IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}, nil
}

func (a *assigning) Delete(_ context.Context, svc *corev1.Service) error {
	a.mu.Lock()
	delete(a.byService, string(svc.UID))
	a.mu.Unlock()
	return nil
}

// Run starts the service controller emulation (no-op for a nil provider).
func Run(ctx context.Context, c kubernetes.Interface, provider Provider) {
	if provider == nil {
		return
	}
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.CoreV1().Events("")})
	rec := b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "service-controller"})
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	f := informers.NewSharedInformerFactory(c, 0)
	inf := f.Core().V1().Services().Informer()
	add := func(obj any) {
		if k, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			q.Add(k)
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, o any) { add(o) }})
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	go func() { <-ctx.Done(); q.ShutDown() }()
	go func() {
		for {
			key, quit := q.Get()
			if quit {
				return
			}
			err := sync1(ctx, c, rec, provider, key)
			if err != nil {
				q.AddRateLimited(key)
			} else {
				q.Forget(key)
			}
			q.Done(key)
		}
	}()
}

func sync1(ctx context.Context, c kubernetes.Interface, rec record.EventRecorder, provider Provider, key string) error {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	svc, err := c.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	wants := svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil && svc.DeletionTimestamp == nil
	has := hasFinalizer(svc)
	if !wants {
		if !has {
			return nil
		}
		rec.Event(svc, corev1.EventTypeNormal, "DeletingLoadBalancer", "Deleting load balancer")
		if err := provider.Delete(ctx, svc); err != nil {
			rec.Eventf(svc, corev1.EventTypeWarning, "SyncLoadBalancerFailed", "Error deleting load balancer (will retry): %v", err)
			return err
		}
		rec.Event(svc, corev1.EventTypeNormal, "DeletedLoadBalancer", "Deleted load balancer")
		svc.Finalizers = without(svc.Finalizers, finalizer)
		if _, err := c.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if svc.DeletionTimestamp == nil && len(svc.Status.LoadBalancer.Ingress) > 0 {
			svc.Status.LoadBalancer = corev1.LoadBalancerStatus{}
			_, _ = c.CoreV1().Services(ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{})
		}
		return nil
	}
	if !has {
		svc.Finalizers = append(svc.Finalizers, finalizer)
		if svc, err = c.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	if len(svc.Status.LoadBalancer.Ingress) > 0 {
		return nil
	}
	rec.Event(svc, corev1.EventTypeNormal, "EnsuringLoadBalancer", "Ensuring load balancer")
	ingress, err := provider.Ensure(ctx, svc)
	if err != nil {
		rec.Eventf(svc, corev1.EventTypeWarning, "SyncLoadBalancerFailed", "Error syncing load balancer: failed to ensure load balancer: %v", err)
		return err
	}
	svc.Status.LoadBalancer.Ingress = ingress
	if _, err := c.CoreV1().Services(ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		return err
	}
	rec.Event(svc, corev1.EventTypeNormal, "EnsuredLoadBalancer", "Ensured load balancer")
	return nil
}

func hasFinalizer(s *corev1.Service) bool {
	for _, f := range s.Finalizers {
		if f == finalizer {
			return true
		}
	}
	return false
}

func without(list []string, x string) []string {
	var out []string
	for _, s := range list {
		if s != x {
			out = append(out, s)
		}
	}
	return out
}
