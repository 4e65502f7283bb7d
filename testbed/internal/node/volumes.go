package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"scs-kaas-check/testbed/internal/netsetup"
)

// VolumeDir is where the provisioner emulation keeps a PV's data (shared by all nodes,
// like network storage; node-local PVs are pinned by their node affinity).
func VolumeDir(root, handle string) string { return filepath.Join(root, "volumes", handle) }

func (pr *podRuntime) volumeDir(name string) string { return filepath.Join(pr.dir, "volumes", name) }

func fsGroup(p *corev1.Pod) *int64 {
	if p.Spec.SecurityContext != nil {
		return p.Spec.SecurityContext.FSGroup
	}
	return nil
}

// prepareVolumes materialises every volume of the pod as a host directory.
func (pr *podRuntime) prepareVolumes() (map[string]string, error) {
	p := pr.current()
	ctx := pr.a.ctx
	out := map[string]string{}
	for _, v := range p.Spec.Volumes {
		dir := pr.volumeDir(v.Name)
		// What each kubelet volume plugin passes to SetVolumeOwnership: emptyDir is
		// read-write, the projections (configMap, secret, downwardAPI, projected) are
		// read-only (GetAttributes().ReadOnly), and both ignore fsGroupChangePolicy.
		own := ownership{apply: true}
		switch {
		case v.EmptyDir != nil:
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return nil, err
			}
			_ = os.Chmod(dir, 0o777)
		case v.ConfigMap != nil:
			own.readOnly = true
			if err := pr.writeConfigMap(ctx, dir, p.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.DefaultMode, v.ConfigMap.Optional); err != nil {
				return nil, fmt.Errorf("MountVolume.SetUp failed for volume %q : %v", v.Name, err)
			}
		case v.Secret != nil:
			own.readOnly = true
			if err := pr.writeSecret(ctx, dir, p.Namespace, v.Secret.SecretName, v.Secret.Items, v.Secret.DefaultMode, v.Secret.Optional); err != nil {
				return nil, fmt.Errorf("MountVolume.SetUp failed for volume %q : %v", v.Name, err)
			}
		case v.DownwardAPI != nil:
			own.readOnly = true
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
			for _, it := range v.DownwardAPI.Items {
				val, err := pr.downward(p, it.FieldRef, it.ResourceFieldRef)
				if err != nil {
					return nil, err
				}
				if err := writeFile(dir, it.Path, val, mode(it.Mode, v.DownwardAPI.DefaultMode)); err != nil {
					return nil, err
				}
			}
		case v.Projected != nil:
			own.readOnly = true
			if err := pr.writeProjected(ctx, p, dir, v.Projected); err != nil {
				return nil, fmt.Errorf("MountVolume.SetUp failed for volume %q : %v", v.Name, err)
			}
		case v.PersistentVolumeClaim != nil:
			src, o, err := pr.pvcSource(ctx, p, v.PersistentVolumeClaim.ClaimName, v.PersistentVolumeClaim.ReadOnly)
			if err != nil {
				return nil, fmt.Errorf("MountVolume.SetUp failed for volume %q : %v", v.Name, err)
			}
			dir, own = src, o
		default:
			return nil, fmt.Errorf("MountVolume.SetUp failed for volume %q : volume type not supported by the test bed's emulated kubelet", v.Name)
		}
		if g := fsGroup(p); g != nil && own.apply {
			onRootMismatch := own.podPolicy && p.Spec.SecurityContext.FSGroupChangePolicy != nil &&
				*p.Spec.SecurityContext.FSGroupChangePolicy == corev1.FSGroupChangeOnRootMismatch
			setOwnership(dir, *g, onRootMismatch, own.readOnly)
		}
		out[v.Name] = dir
	}
	return out, nil
}

func mode(item *int32, def *int32) os.FileMode {
	if item != nil {
		return os.FileMode(*item)
	}
	if def != nil {
		return os.FileMode(*def)
	}
	return 0o644
}

func writeFile(dir, rel, content string, m os.FileMode) error {
	path := filepath.Join(dir, filepath.Clean("/"+rel))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(content), m); err != nil {
		return err
	}
	return os.Chmod(path, m)
}

func (pr *podRuntime) writeConfigMap(ctx context.Context, dir, ns, name string, items []corev1.KeyToPath, def *int32, optional *bool) error {
	cm, err := pr.a.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if optional != nil && *optional {
			return os.MkdirAll(dir, 0o755)
		}
		return fmt.Errorf("configmap %q not found", name)
	}
	data := map[string]string{}
	for k, v := range cm.Data {
		data[k] = v
	}
	for k, v := range cm.BinaryData {
		data[k] = string(v)
	}
	return writeKeys(dir, data, items, def, "configmap", name)
}

func (pr *podRuntime) writeSecret(ctx context.Context, dir, ns, name string, items []corev1.KeyToPath, def *int32, optional *bool) error {
	s, err := pr.a.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if optional != nil && *optional {
			return os.MkdirAll(dir, 0o755)
		}
		return fmt.Errorf("secret %q not found", name)
	}
	data := map[string]string{}
	for k, v := range s.Data {
		data[k] = string(v)
	}
	return writeKeys(dir, data, items, def, "secret", name)
}

func writeKeys(dir string, data map[string]string, items []corev1.KeyToPath, def *int32, kind, name string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if len(items) == 0 {
		for k, v := range data {
			if err := writeFile(dir, k, v, mode(nil, def)); err != nil {
				return err
			}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return fmt.Errorf("configuration error: %s %q has no key %q", kind, name, it.Key)
		}
		if err := writeFile(dir, it.Path, v, mode(it.Mode, def)); err != nil {
			return err
		}
	}
	return nil
}

func (pr *podRuntime) writeProjected(ctx context.Context, p *corev1.Pod, dir string, v *corev1.ProjectedVolumeSource) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, src := range v.Sources {
		switch {
		case src.ServiceAccountToken != nil:
			t := src.ServiceAccountToken
			exp := int64(3600)
			if t.ExpirationSeconds != nil {
				exp = *t.ExpirationSeconds
			}
			var aud []string
			if t.Audience != "" {
				aud = []string{t.Audience}
			}
			tr, err := pr.a.client.CoreV1().ServiceAccounts(p.Namespace).CreateToken(ctx, p.Spec.ServiceAccountName, &authenticationv1.TokenRequest{
				Spec: authenticationv1.TokenRequestSpec{
					Audiences: aud, ExpirationSeconds: &exp,
					BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.UID},
				},
			}, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("failed to fetch token: %v", err)
			}
			m := mode(nil, v.DefaultMode)
			if err := writeFile(dir, t.Path, tr.Status.Token, m); err != nil {
				return err
			}
			// The kubelet gives the token file to the pod's user when one is set.
			if p.Spec.SecurityContext != nil && p.Spec.SecurityContext.RunAsUser != nil {
				_ = os.Chown(filepath.Join(dir, t.Path), int(*p.Spec.SecurityContext.RunAsUser), -1)
			}
		case src.ConfigMap != nil:
			if err := pr.writeConfigMap(ctx, dir, p.Namespace, src.ConfigMap.Name, src.ConfigMap.Items, v.DefaultMode, src.ConfigMap.Optional); err != nil {
				return err
			}
		case src.Secret != nil:
			if err := pr.writeSecret(ctx, dir, p.Namespace, src.Secret.Name, src.Secret.Items, v.DefaultMode, src.Secret.Optional); err != nil {
				return err
			}
		case src.DownwardAPI != nil:
			for _, it := range src.DownwardAPI.Items {
				val, err := pr.downward(p, it.FieldRef, it.ResourceFieldRef)
				if err != nil {
					return err
				}
				if err := writeFile(dir, it.Path, val, mode(it.Mode, v.DefaultMode)); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("projected source not supported by the test bed's emulated kubelet")
		}
	}
	return nil
}

// ownership is what a kubelet volume plugin does with the pod's fsGroup: whether it calls
// SetVolumeOwnership at all, with its mounter's ReadOnly attribute (r-- instead of rw-
// masks), and whether it passes the pod's fsGroupChangePolicy (CSI and local volumes) or
// nil (emptyDir and the projections: always the recursive change).
type ownership struct {
	apply, readOnly, podPolicy bool
}

// pvcSource finds the directory behind a claim and what the kubelet's volume plugin does
// with fsGroup on it: pkg/volume/csi (csiMountMgr.SetUpAt, supportsFSGroup: per the
// CSIDriver's fsGroupPolicy), pkg/volume/local (unless read-only), pkg/volume/hostpath
// (never). readOnly is the pod's persistentVolumeClaim.readOnly (volume.Spec.ReadOnly).
func (pr *podRuntime) pvcSource(ctx context.Context, p *corev1.Pod, claim string, readOnly bool) (string, ownership, error) {
	none := ownership{}
	c := pr.a.client
	pvc, err := c.CoreV1().PersistentVolumeClaims(p.Namespace).Get(ctx, claim, metav1.GetOptions{})
	if err != nil {
		return "", none, fmt.Errorf("persistentvolumeclaim %q not found", claim)
	}
	if pvc.Spec.VolumeName == "" || pvc.Status.Phase != corev1.ClaimBound {
		return "", none, fmt.Errorf("persistentvolumeclaim %q is not bound", claim)
	}
	pv, err := c.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return "", none, fmt.Errorf("persistentvolume %q: %v", pvc.Spec.VolumeName, err)
	}
	switch {
	case pv.Spec.CSI != nil:
		dir := VolumeDir(pr.a.VolumeRoot, pv.Spec.CSI.VolumeHandle)
		if _, err := os.Stat(dir); err != nil {
			return "", none, fmt.Errorf("MountVolume.MountDevice failed: volume %s: %v", pv.Spec.CSI.VolumeHandle, err)
		}
		if pv.Spec.CSI.VolumeAttributes[LosesDataAttribute] == "true" {
			reformat(dir)
		}
		// getFSGroupPolicy: no CSIDriver object means the default policy.
		policy := storagev1.ReadWriteOnceWithFSTypeFSGroupPolicy
		if d, err := c.StorageV1().CSIDrivers().Get(ctx, pv.Spec.CSI.Driver, metav1.GetOptions{}); err == nil && d.Spec.FSGroupPolicy != nil {
			policy = *d.Spec.FSGroupPolicy
		}
		return dir, ownership{apply: csiSupportsFSGroup(policy, pv, readOnly), readOnly: readOnly, podPolicy: true}, nil
	case pv.Spec.Local != nil:
		return pv.Spec.Local.Path, ownership{apply: !readOnly, readOnly: readOnly, podPolicy: true}, nil
	case pv.Spec.HostPath != nil:
		return pv.Spec.HostPath.Path, none, nil
	}
	return "", none, fmt.Errorf("persistentvolume %q: source not supported by the test bed", pv.Name)
}

// csiSupportsFSGroup is csiMountMgr.supportsFSGroup (pkg/volume/csi/csi_mounter.go) for a
// PV source and a pod that sets fsGroup: never for fsGroupPolicy None or a read-only
// mount, always for File, and for ReadWriteOnceWithFSType only when the PV has an fsType
// and a ReadWriteOnce or ReadWriteOncePod access mode (hasReadWriteOnce). The emulated
// drivers lack the VOLUME_MOUNT_GROUP node capability, so the kubelet applies it itself.
func csiSupportsFSGroup(policy storagev1.FSGroupPolicy, pv *corev1.PersistentVolume, readOnly bool) bool {
	switch {
	case policy == storagev1.NoneFSGroupPolicy || readOnly:
		return false
	case policy == storagev1.FileFSGroupPolicy:
		return true
	case pv.Spec.CSI.FSType == "":
		return false
	}
	for _, m := range pv.Spec.AccessModes {
		if m == corev1.ReadWriteOnce || m == corev1.ReadWriteOncePod {
			return true
		}
	}
	return false
}

// LosesDataAttribute in a PV's CSI volumeAttributes makes the emulated node stage the
// volume like a broken driver that formats it on every mount: what a pod wrote is gone
// for the next pod (scenario provisioner field losesData).
const LosesDataAttribute = "testbed.scs.community/loses-data"

// reformat empties a volume's directory and leaves its root as a fresh file system's:
// root:root 0755.
func reformat(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
	_ = os.Lchown(dir, 0, 0)
	_ = os.Chmod(dir, 0o755)
}

// The masks of pkg/volume/volume_linux.go.
const (
	rwMask   = os.FileMode(0o660)
	roMask   = os.FileMode(0o440)
	execMask = os.FileMode(0o110)
)

// setOwnership is the kubelet's SetVolumeOwnership (pkg/volume/volume_linux.go): unless
// fsGroupChangePolicy OnRootMismatch finds the root already right (requiresPermissionChange),
// every file and directory gets group gid (Lchown) and its mode OR rw-rw---- (r--r----- for
// read-only volumes), directories also the exec bits and setgid; symlinks are not chmodded.
func setOwnership(dir string, gid int64, onRootMismatch, readOnly bool) {
	mask := rwMask
	if readOnly {
		mask = roMask
	}
	if onRootMismatch && !requiresPermissionChange(dir, gid, mask) {
		return
	}
	_ = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		_ = os.Lchown(path, -1, int(gid))
		if info.Mode()&os.ModeSymlink != 0 {
			return nil
		}
		m := mask
		if info.IsDir() {
			m |= os.ModeSetgid | execMask
		}
		_ = os.Chmod(path, info.Mode()|m)
		return nil
	})
}

// requiresPermissionChange: the root's group is not gid, it is not a directory, its
// permissions lack a bit of mask|exec, or it lacks setgid.
func requiresPermissionChange(dir string, gid int64, mask os.FileMode) bool {
	st, err := os.Stat(dir)
	if err != nil {
		return true
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || int64(sys.Gid) != gid || !st.IsDir() {
		return true
	}
	want := mask | execMask
	return st.Mode().Perm()&want != want || st.Mode()&os.ModeSetgid == 0
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$`)

// expand does the kubelet's $(VAR) expansion ($$ escapes).
func expand(s string, env map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		name := m[2 : len(m)-1]
		if v, ok := env[name]; ok {
			return v
		}
		return m
	})
}

// downward resolves a fieldRef or resourceFieldRef.
func (pr *podRuntime) downward(p *corev1.Pod, f *corev1.ObjectFieldSelector, r *corev1.ResourceFieldSelector) (string, error) {
	if f != nil {
		path := f.FieldPath
		switch {
		case path == "metadata.name":
			return p.Name, nil
		case path == "metadata.namespace":
			return p.Namespace, nil
		case path == "metadata.uid":
			return string(p.UID), nil
		case path == "spec.nodeName":
			return p.Spec.NodeName, nil
		case path == "spec.serviceAccountName":
			return p.Spec.ServiceAccountName, nil
		case path == "status.hostIP", path == "status.hostIPs":
			return pr.a.IP(), nil
		case path == "status.podIP", path == "status.podIPs":
			if pr.net != nil {
				return pr.net.IP, nil
			}
			return "", nil
		case path == "metadata.labels":
			return formatMap(p.Labels), nil
		case path == "metadata.annotations":
			return formatMap(p.Annotations), nil
		case strings.HasPrefix(path, "metadata.labels['"):
			return p.Labels[strings.TrimSuffix(strings.TrimPrefix(path, "metadata.labels['"), "']")], nil
		case strings.HasPrefix(path, "metadata.annotations['"):
			return p.Annotations[strings.TrimSuffix(strings.TrimPrefix(path, "metadata.annotations['"), "']")], nil
		}
		return "", fmt.Errorf("unsupported fieldPath %q", path)
	}
	if r != nil {
		// Without limits the node's allocatable applies (4 CPUs, 16Gi).
		switch r.Resource {
		case "limits.cpu", "requests.cpu":
			return "4", nil
		case "limits.memory", "requests.memory":
			return strconv.FormatInt(16<<30, 10), nil
		}
		return "0", nil
	}
	return "", fmt.Errorf("empty downward API reference")
}

func formatMap(m map[string]string) string {
	var lines []string
	for k, v := range m {
		lines = append(lines, fmt.Sprintf("%s=%q", k, v))
	}
	return strings.Join(lines, "\n")
}

// containerSpec builds what container-init needs: argv, env, user, mounts.
func (pr *podRuntime) containerSpec(c *containerRuntime) (*ContainerSpec, error) {
	p := pr.current()
	img := c.image
	ctx := pr.a.ctx
	env := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	for _, e := range img.Env {
		if k, v, ok := strings.Cut(e, "="); ok {
			set(k, v)
		}
	}
	set("HOSTNAME", p.Name)
	// Service links as the kubelet sets them: always the master service, and the pod
	// namespace's services unless enableServiceLinks is false.
	svcEnv := map[string]string{}
	host := netsetup.KubernetesServiceIP
	for k, v := range map[string]string{
		"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": "443", "KUBERNETES_SERVICE_PORT_HTTPS": "443",
		"KUBERNETES_PORT": "tcp://" + host + ":443", "KUBERNETES_PORT_443_TCP": "tcp://" + host + ":443",
		"KUBERNETES_PORT_443_TCP_PROTO": "tcp", "KUBERNETES_PORT_443_TCP_PORT": "443", "KUBERNETES_PORT_443_TCP_ADDR": host,
	} {
		svcEnv[k] = v
	}
	if p.Spec.EnableServiceLinks == nil || *p.Spec.EnableServiceLinks {
		if svcs, err := pr.a.client.CoreV1().Services(p.Namespace).List(ctx, metav1.ListOptions{}); err == nil {
			for _, s := range svcs.Items {
				if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == "None" || len(s.Spec.Ports) == 0 || (p.Namespace == "default" && s.Name == "kubernetes") {
					continue
				}
				name := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
				port := s.Spec.Ports[0]
				proto := strings.ToLower(string(port.Protocol))
				svcEnv[name+"_SERVICE_HOST"] = s.Spec.ClusterIP
				svcEnv[name+"_SERVICE_PORT"] = strconv.Itoa(int(port.Port))
				svcEnv[name+"_PORT"] = fmt.Sprintf("%s://%s:%d", proto, s.Spec.ClusterIP, port.Port)
				for _, sp := range s.Spec.Ports {
					pn := fmt.Sprintf("%s_PORT_%d_%s", name, sp.Port, strings.ToUpper(string(sp.Protocol)))
					svcEnv[pn] = fmt.Sprintf("%s://%s:%d", strings.ToLower(string(sp.Protocol)), s.Spec.ClusterIP, sp.Port)
					svcEnv[pn+"_PROTO"] = strings.ToLower(string(sp.Protocol))
					svcEnv[pn+"_PORT"] = strconv.Itoa(int(sp.Port))
					svcEnv[pn+"_ADDR"] = s.Spec.ClusterIP
				}
			}
		}
	}
	for k, v := range svcEnv {
		set(k, v)
	}
	for _, ef := range c.spec.EnvFrom {
		data := map[string]string{}
		switch {
		case ef.ConfigMapRef != nil:
			cm, err := pr.a.client.CoreV1().ConfigMaps(p.Namespace).Get(ctx, ef.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				if ef.ConfigMapRef.Optional != nil && *ef.ConfigMapRef.Optional {
					continue
				}
				return nil, fmt.Errorf("configmap %q not found", ef.ConfigMapRef.Name)
			}
			data = cm.Data
		case ef.SecretRef != nil:
			s, err := pr.a.client.CoreV1().Secrets(p.Namespace).Get(ctx, ef.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				if ef.SecretRef.Optional != nil && *ef.SecretRef.Optional {
					continue
				}
				return nil, fmt.Errorf("secret %q not found", ef.SecretRef.Name)
			}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		for k, v := range data {
			set(ef.Prefix+k, v)
		}
	}
	for _, e := range c.spec.Env {
		switch {
		case e.ValueFrom == nil:
			set(e.Name, expand(e.Value, env))
		case e.ValueFrom.FieldRef != nil || e.ValueFrom.ResourceFieldRef != nil:
			v, err := pr.downward(p, e.ValueFrom.FieldRef, e.ValueFrom.ResourceFieldRef)
			if err != nil {
				return nil, err
			}
			set(e.Name, v)
		case e.ValueFrom.ConfigMapKeyRef != nil:
			r := e.ValueFrom.ConfigMapKeyRef
			cm, err := pr.a.client.CoreV1().ConfigMaps(p.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
			v, ok := "", false
			if err == nil {
				v, ok = cm.Data[r.Key]
			}
			if !ok && !(r.Optional != nil && *r.Optional) {
				return nil, fmt.Errorf("couldn't find key %s in ConfigMap %s/%s", r.Key, p.Namespace, r.Name)
			}
			set(e.Name, v)
		case e.ValueFrom.SecretKeyRef != nil:
			r := e.ValueFrom.SecretKeyRef
			s, err := pr.a.client.CoreV1().Secrets(p.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
			var v []byte
			ok := false
			if err == nil {
				v, ok = s.Data[r.Key]
			}
			if !ok && !(r.Optional != nil && *r.Optional) {
				return nil, fmt.Errorf("couldn't find key %s in Secret %s/%s", r.Key, p.Namespace, r.Name)
			}
			set(e.Name, string(v))
		}
	}
	var envList []string
	for _, k := range order {
		envList = append(envList, k+"="+env[k])
	}
	var argv []string
	switch {
	case len(c.spec.Command) > 0:
		for _, a := range append(append([]string{}, c.spec.Command...), c.spec.Args...) {
			argv = append(argv, expand(a, env))
		}
	case len(c.spec.Args) > 0:
		argv = append(argv, img.Entrypoint...)
		for _, a := range c.spec.Args {
			argv = append(argv, expand(a, env))
		}
	default:
		argv = append(append(argv, img.Entrypoint...), img.Cmd...)
	}
	// User and groups: container securityContext over pod securityContext over image.
	uid, gid := int64(img.UID), int64(img.UID)
	var runAsNonRoot *bool
	var groups []uint32
	if psc := p.Spec.SecurityContext; psc != nil {
		if psc.RunAsUser != nil {
			uid = *psc.RunAsUser
		}
		if psc.RunAsGroup != nil {
			gid = *psc.RunAsGroup
		}
		runAsNonRoot = psc.RunAsNonRoot
		for _, g := range psc.SupplementalGroups {
			groups = append(groups, uint32(g))
		}
		if psc.FSGroup != nil {
			groups = append(groups, uint32(*psc.FSGroup))
		}
	}
	readOnlyRoot, noNewPrivs := false, false
	if sc := c.spec.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = *sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = *sc.RunAsGroup
		}
		if sc.RunAsNonRoot != nil {
			runAsNonRoot = sc.RunAsNonRoot
		}
		readOnlyRoot = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
		noNewPrivs = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
	}
	if runAsNonRoot != nil && *runAsNonRoot && uid == 0 {
		return nil, fmt.Errorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", p.Name+"_"+p.Namespace+"("+string(p.UID)+")", c.spec.Name)
	}
	// Files the kubelet manages: /etc/hosts, /etc/hostname, /etc/resolv.conf.
	etc := filepath.Join(pr.dir, "etc")
	_ = os.MkdirAll(etc, 0o755)
	ip := ""
	if pr.net != nil {
		ip = pr.net.IP
	}
	_ = os.WriteFile(filepath.Join(etc, "hosts"), []byte(fmt.Sprintf("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n", ip, p.Name)), 0o644)
	_ = os.WriteFile(filepath.Join(etc, "hostname"), []byte(p.Name+"\n"), 0o644)
	_ = os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte(fmt.Sprintf("search %s.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n", p.Namespace)), 0o644)
	mounts := []Mount{
		{Source: filepath.Join(etc, "hosts"), Target: "/etc/hosts"},
		{Source: filepath.Join(etc, "hostname"), Target: "/etc/hostname"},
		{Source: filepath.Join(etc, "resolv.conf"), Target: "/etc/resolv.conf"},
	}
	for _, vm := range c.spec.VolumeMounts {
		src, ok := pr.volumes[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volume %q not found for mount %s", vm.Name, vm.MountPath)
		}
		target := filepath.Clean("/" + vm.MountPath)
		for _, forbidden := range []string{"/proc", "/sys", "/dev"} {
			if target == forbidden || strings.HasPrefix(target, forbidden+"/") {
				return nil, fmt.Errorf("mount path %s is not supported by the test bed (host %s)", target, forbidden)
			}
		}
		sub := vm.SubPath
		if vm.SubPathExpr != "" {
			sub = expand(vm.SubPathExpr, env)
		}
		if sub != "" {
			src = filepath.Join(src, filepath.Clean("/"+sub))
			if _, err := os.Stat(src); os.IsNotExist(err) {
				_ = os.MkdirAll(src, 0o755)
			}
		}
		mounts = append(mounts, Mount{Source: src, Target: target, ReadOnly: vm.ReadOnly})
	}
	wd := c.spec.WorkingDir
	if wd == "" {
		wd = img.WorkingDir
	}
	return &ContainerSpec{
		Hostname: p.Name, Argv: argv, Env: envList, WorkingDir: wd,
		UID: uint32(uid), GID: uint32(gid), Groups: groups,
		ReadOnlyRoot: readOnlyRoot, NoNewPrivs: noNewPrivs,
		Layout: img.Layout, Mounts: mounts,
	}, nil
}
