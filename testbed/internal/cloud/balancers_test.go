package cloud

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"scs-kaas-check/testbed/internal/scenario"
)

func service(annotations map[string]string, policy corev1.ServiceExternalTrafficPolicy) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "echo", UID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", Annotations: annotations},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeLoadBalancer,
			Ports:                 []corev1.ServicePort{{Port: 80, NodePort: 31234, Protocol: corev1.ProtocolTCP}},
			ExternalTrafficPolicy: policy,
			HealthCheckNodePort:   map[bool]int32{true: 32100}[policy == corev1.ServiceExternalTrafficPolicyLocal],
		},
	}
}

func node(name, ip string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}},
	}
}

func balancersFor(mode string, monitor bool) *balancers {
	return newBalancers(scenario.LoadBalancer{Mode: mode, HealthMonitor: monitor}, Config{Prefix: "tbtest"}, nil)
}

func TestProxyProtocolMeansIPModeProxyAndSendProxy(t *testing.T) {
	b := balancersFor("proxy", false)
	nodes := []*corev1.Node{node("worker-1", "172.30.0.12"), node("worker-0", "172.30.0.11")}
	for value, send := range map[string]string{"true": " send-proxy\n", "v1": " send-proxy\n", "v2": " send-proxy-v2\n"} {
		lb, err := b.desired(service(map[string]string{annotationProxyProtocol: value}, corev1.ServiceExternalTrafficPolicyCluster), nodes)
		if err != nil {
			t.Fatal(err)
		}
		if lb.ipMode != corev1.LoadBalancerIPModeProxy {
			t.Errorf("%s: ipMode %s, want Proxy", value, lb.ipMode)
		}
		lb.vip = "203.0.113.10"
		conf := b.haproxyConfig(lb)
		for _, want := range []string{
			"bind 203.0.113.10:80\n", "mode tcp\n", "balance roundrobin\n",
			"server worker-0 172.30.0.11:31234 weight 1" + send,
			"server worker-1 172.30.0.12:31234 weight 1" + send,
		} {
			if !strings.Contains(conf, want) {
				t.Errorf("%s: config lacks %q:\n%s", value, want, conf)
			}
		}
	}
	lb, err := b.desired(service(nil, corev1.ServiceExternalTrafficPolicyCluster), nodes)
	if err != nil {
		t.Fatal(err)
	}
	lb.vip = "203.0.113.10"
	if lb.ipMode != corev1.LoadBalancerIPModeVIP || strings.Contains(b.haproxyConfig(lb), "send-proxy") {
		t.Errorf("without the annotation: ipMode %s, config:\n%s", lb.ipMode, b.haproxyConfig(lb))
	}
	if _, err := b.desired(service(map[string]string{annotationProxyProtocol: "v3"}, ""), nodes); err == nil {
		t.Error("an unknown PROXY protocol version was accepted")
	}
}

func TestOVNRefusesProxyProtocol(t *testing.T) {
	_, err := balancersFor("l3", false).desired(service(map[string]string{annotationProxyProtocol: "true"}, ""), nil)
	if err == nil || !strings.Contains(err.Error(), "OVN provider does not support PROXY protocol") {
		t.Errorf("error %v", err)
	}
}

func TestHealthMonitorFollowsTheOpenStackCloudController(t *testing.T) {
	nodes := []*corev1.Node{node("worker-0", "172.30.0.11")}
	// Default off (create-monitor false), on by annotation, TCP for Cluster.
	lb, _ := balancersFor("proxy", false).desired(service(nil, corev1.ServiceExternalTrafficPolicyCluster), nodes)
	if lb.monitor != nil {
		t.Errorf("monitor without create-monitor or annotation: %+v", lb.monitor)
	}
	b := balancersFor("proxy", false)
	lb, _ = b.desired(service(map[string]string{annotationMonitor: "true"}, corev1.ServiceExternalTrafficPolicyCluster), nodes)
	want := monitorSpec{delay: 5 * time.Second, timeout: 3 * time.Second, rise: 1, fall: 3}
	if lb.monitor == nil || *lb.monitor != want {
		t.Errorf("monitor %+v, want %+v", lb.monitor, want)
	}
	lb.vip = "203.0.113.10"
	conf := b.haproxyConfig(lb)
	if !strings.Contains(conf, "timeout check 3s\n") || !strings.Contains(conf, " check inter 5s fall 3 rise 1\n") || strings.Contains(conf, "httpchk") {
		t.Errorf("TCP monitor config:\n%s", conf)
	}
	// Local: HTTP GET /healthz on the health check node port; annotations override.
	b = balancersFor("proxy", true)
	lb, _ = b.desired(service(map[string]string{annotationMonitorDelay: "2", annotationMonitorFall: "2"}, corev1.ServiceExternalTrafficPolicyLocal), nodes)
	want = monitorSpec{delay: 2 * time.Second, timeout: 3 * time.Second, rise: 1, fall: 2, httpPort: 32100}
	if lb.monitor == nil || *lb.monitor != want {
		t.Errorf("monitor %+v, want %+v", lb.monitor, want)
	}
	lb.vip = "203.0.113.10"
	conf = b.haproxyConfig(lb)
	for _, s := range []string{"option httpchk GET /healthz\n", "http-check expect rstatus 200\n", " check inter 2s fall 2 rise 1 port 32100\n"} {
		if !strings.Contains(conf, s) {
			t.Errorf("HTTP monitor config lacks %q:\n%s", s, conf)
		}
	}
	lb, _ = balancersFor("l3", true).desired(service(map[string]string{annotationMonitor: "false"}, ""), nodes)
	if lb.monitor != nil {
		t.Errorf("the annotation did not disable the monitor: %+v", lb.monitor)
	}
}

func TestOnlyTCPListeners(t *testing.T) {
	svc := service(nil, "")
	svc.Spec.Ports[0].Protocol = corev1.ProtocolUDP
	if _, err := balancersFor("l3", false).desired(svc, nil); err == nil || !strings.Contains(err.Error(), "TCP listeners only") {
		t.Errorf("error %v", err)
	}
}
