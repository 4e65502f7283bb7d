// Package storage emulates external CSI provisioners: it watches claims of classes whose
// provisioner the scenario declares, provisions PersistentVolumes (a directory under the
// test bed) as the external-provisioner sidecar does, and deletes them per reclaim policy.
package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"scs-kaas-check/testbed/internal/node"
	"scs-kaas-check/testbed/internal/scenario"
)

const (
	annSelectedNode      = "volume.kubernetes.io/selected-node"
	annStorageProv       = "volume.kubernetes.io/storage-provisioner"
	annBetaStorageProv   = "volume.beta.kubernetes.io/storage-provisioner"
	annProvisionedBy     = "pv.kubernetes.io/provisioned-by"
	provisionerFinalizer = "external-provisioner.volume.kubernetes.io/finalizer"
)

// Setup creates the scenario's CSIDriver and StorageClass objects.
func Setup(ctx context.Context, c kubernetes.Interface, s scenario.Storage) error {
	for _, p := range s.Provisioners {
		if p.CSIDriver == nil {
			continue
		}
		d := &storagev1.CSIDriver{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name},
			Spec:       storagev1.CSIDriverSpec{AttachRequired: ptr.To(false), PodInfoOnMount: ptr.To(false)},
		}
		if p.CSIDriver.FSGroupPolicy != "" {
			d.Spec.FSGroupPolicy = ptr.To(storagev1.FSGroupPolicy(p.CSIDriver.FSGroupPolicy))
		}
		if _, err := c.StorageV1().CSIDrivers().Create(ctx, d, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("CSIDriver %s: %w", p.Name, err)
		}
	}
	for _, sc := range s.Classes {
		obj := &storagev1.StorageClass{
			ObjectMeta:           metav1.ObjectMeta{Name: sc.Name, Annotations: map[string]string{}},
			Provisioner:          sc.Provisioner,
			Parameters:           sc.Parameters,
			AllowVolumeExpansion: ptr.To(sc.AllowExpansion),
		}
		if sc.Default {
			obj.Annotations["storageclass.kubernetes.io/is-default-class"] = "true"
		}
		if sc.BetaDefault {
			obj.Annotations["storageclass.beta.kubernetes.io/is-default-class"] = "true"
		}
		if sc.VolumeBindingMode != "" {
			obj.VolumeBindingMode = ptr.To(storagev1.VolumeBindingMode(sc.VolumeBindingMode))
		}
		if sc.ReclaimPolicy != "" {
			obj.ReclaimPolicy = ptr.To(corev1.PersistentVolumeReclaimPolicy(sc.ReclaimPolicy))
		}
		if _, err := c.StorageV1().StorageClasses().Create(ctx, obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("StorageClass %s: %w", sc.Name, err)
		}
	}
	return nil
}

// Provisioner serves every provisioner the scenario declares.
type Provisioner struct {
	client   kubernetes.Interface
	root     string
	byName   map[string]scenario.Provisioner
	factory  informers.SharedInformerFactory
	recorder record.EventRecorder
	claims   workqueue.TypedRateLimitingInterface[string]
	volumes  workqueue.TypedRateLimitingInterface[string]
}

// Run starts the provisioner emulation.
func Run(ctx context.Context, c kubernetes.Interface, root string, s scenario.Storage) {
	p := &Provisioner{client: c, root: root, byName: map[string]scenario.Provisioner{}}
	for _, pr := range s.Provisioners {
		p.byName[pr.Name] = pr
	}
	if len(p.byName) == 0 {
		return
	}
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.CoreV1().Events("")})
	p.recorder = b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "testbed-csi-provisioner"})
	p.claims = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	p.volumes = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	p.factory = informers.NewSharedInformerFactory(c, 0)
	enqueue := func(q workqueue.TypedRateLimitingInterface[string]) func(any) {
		return func(obj any) {
			if k, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
				q.Add(k)
			}
		}
	}
	_, _ = p.factory.Core().V1().PersistentVolumeClaims().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue(p.claims), UpdateFunc: func(_, o any) { enqueue(p.claims)(o) },
	})
	_, _ = p.factory.Core().V1().PersistentVolumes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue(p.volumes), UpdateFunc: func(_, o any) { enqueue(p.volumes)(o) },
	})
	p.factory.Storage().V1().StorageClasses().Informer()
	p.factory.Core().V1().Nodes().Informer()
	p.factory.Start(ctx.Done())
	p.factory.WaitForCacheSync(ctx.Done())
	go p.loop(ctx, p.claims, p.syncClaim)
	go p.loop(ctx, p.volumes, p.syncVolume)
	go func() { <-ctx.Done(); p.claims.ShutDown(); p.volumes.ShutDown() }()
}

func (p *Provisioner) loop(ctx context.Context, q workqueue.TypedRateLimitingInterface[string], f func(context.Context, string) error) {
	for {
		key, quit := q.Get()
		if quit {
			return
		}
		if err := f(ctx, key); err != nil {
			if ctx.Err() == nil {
				klog.V(2).Infof("provisioner: %s: %v", key, err)
			}
			q.AddRateLimited(key)
		} else {
			q.Forget(key)
		}
		q.Done(key)
	}
}

func (p *Provisioner) syncClaim(ctx context.Context, key string) error {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	claim, err := p.factory.Core().V1().PersistentVolumeClaims().Lister().PersistentVolumeClaims(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || claim.Spec.VolumeName != "" || claim.DeletionTimestamp != nil {
		return err
	}
	// The PV controller marks claims that need an external provisioner.
	provName := claim.Annotations[annStorageProv]
	if provName == "" {
		provName = claim.Annotations[annBetaStorageProv]
	}
	prov, ok := p.byName[provName]
	if !ok || claim.Spec.StorageClassName == nil {
		return nil
	}
	class, err := p.factory.Storage().V1().StorageClasses().Lister().Get(*claim.Spec.StorageClassName)
	if err != nil {
		return err
	}
	selected := claim.Annotations[annSelectedNode]
	if class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer && selected == "" {
		return nil // the scheduler has not picked a node yet
	}
	pvName := "pvc-" + string(claim.UID)
	if _, err := p.factory.Core().V1().PersistentVolumes().Lister().Get(pvName); err == nil {
		return nil
	}
	p.recorder.Eventf(claim, corev1.EventTypeNormal, "Provisioning", "External provisioner is provisioning volume for claim %q", key)
	if prov.Fail != "" {
		p.recorder.Eventf(claim, corev1.EventTypeWarning, "ProvisioningFailed", "failed to provision volume with StorageClass %q: %s", class.Name, prov.Fail)
		return fmt.Errorf("provisioning fails by scenario")
	}
	size := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	if size.IsZero() {
		size = resource.MustParse("1Gi")
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	if class.ReclaimPolicy != nil {
		reclaim = *class.ReclaimPolicy
	}
	dir := node.VolumeDir(p.root, pvName)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rootMode := os.FileMode(0o755) // a fresh file system: root:root 0755
	if prov.Source == "hostPath" || prov.Source == "local" {
		rootMode = 0o777 // local-path-provisioner's setup: mkdir -m 0777
	}
	if prov.RootMode != "" {
		m, _ := strconv.ParseUint(prov.RootMode, 8, 32) // checked by scenario.Load
		rootMode = os.FileMode(m)
	}
	_ = os.Chmod(dir, rootMode)
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        pvName,
			Annotations: map[string]string{annProvisionedBy: prov.Name, "volume.kubernetes.io/provisioner-deletion-secret-name": "", "volume.kubernetes.io/provisioner-deletion-secret-namespace": ""},
			Finalizers:  []string{provisionerFinalizer},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   claim.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              class.Name,
			VolumeMode:                    claim.Spec.VolumeMode,
			MountOptions:                  class.MountOptions,
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: claim.Namespace, Name: claim.Name, UID: claim.UID, ResourceVersion: claim.ResourceVersion,
			},
		},
	}
	switch prov.Source {
	case "hostPath":
		pv.Spec.HostPath = &corev1.HostPathVolumeSource{Path: dir, Type: ptr.To(corev1.HostPathDirectoryOrCreate)}
	case "local":
		pv.Spec.Local = &corev1.LocalVolumeSource{Path: dir}
	default:
		fsType := prov.FSType
		if fsType == "" {
			fsType = "ext4"
		} else if fsType == "-" {
			fsType = ""
		}
		pv.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: prov.Name, VolumeHandle: pvName, FSType: fsType,
			VolumeAttributes: map[string]string{"storage.kubernetes.io/csiProvisionerIdentity": "testbed-" + prov.Name}}
		if prov.LosesData {
			pv.Spec.CSI.VolumeAttributes[node.LosesDataAttribute] = "true"
		}
	}
	affinity := prov.NodeAffinity
	if prov.Source == "local" && (affinity == "" || affinity == "none") {
		affinity = "node" // a local PV must name its node
	}
	if affinity == "node" || affinity == "zone" {
		if selected == "" {
			p.recorder.Eventf(claim, corev1.EventTypeWarning, "ProvisioningFailed", "failed to provision volume with StorageClass %q: topology required but no node selected (the class does not use WaitForFirstConsumer)", class.Name)
			return fmt.Errorf("no selected node")
		}
		key, value := "kubernetes.io/hostname", selected
		if affinity == "zone" {
			n, err := p.factory.Core().V1().Nodes().Lister().Get(selected)
			if err != nil {
				return err
			}
			key, value = "topology.kubernetes.io/zone", n.Labels["topology.kubernetes.io/zone"]
		}
		pv.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: corev1.NodeSelectorOpIn, Values: []string{value}}},
		}}}}
	}
	if _, err := p.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		p.recorder.Eventf(claim, corev1.EventTypeWarning, "ProvisioningFailed", "failed to provision volume with StorageClass %q: %v", class.Name, err)
		return err
	}
	p.recorder.Eventf(claim, corev1.EventTypeNormal, "ProvisioningSucceeded", "Successfully provisioned volume %s", pvName)
	return nil
}

// syncVolume deletes released volumes with reclaim policy Delete.
func (p *Provisioner) syncVolume(ctx context.Context, name string) error {
	pv, err := p.factory.Core().V1().PersistentVolumes().Lister().Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, ours := p.byName[pv.Annotations[annProvisionedBy]]; !ours {
		return nil
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		// external-provisioner keeps its finalizer only on Delete volumes: it removes it from
		// Retain and Recycle ones (sig-storage-lib-external-provisioner, the volume sync's
		// finalizer update), so that an administrator can delete them.
		return p.dropFinalizer(ctx, pv.Name)
	}
	if pv.Status.Phase != corev1.VolumeReleased && pv.DeletionTimestamp == nil {
		return nil
	}
	if pv.Status.Phase == corev1.VolumeBound {
		return nil
	}
	_ = os.RemoveAll(filepath.Clean(node.VolumeDir(p.root, pv.Name)))
	if pv.DeletionTimestamp == nil {
		if err := p.client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	// Drop our finalizer so that the PV goes.
	return p.dropFinalizer(ctx, pv.Name)
}

// dropFinalizer removes the provisioner's finalizer from PV name, if it has it.
func (p *Provisioner) dropFinalizer(ctx context.Context, name string) error {
	for attempt := 0; attempt < 5; attempt++ {
		cur, err := p.client.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		var keep []string
		for _, f := range cur.Finalizers {
			if f != provisionerFinalizer {
				keep = append(keep, f)
			}
		}
		if len(keep) == len(cur.Finalizers) {
			return nil
		}
		cur.Finalizers = keep
		if _, err = p.client.CoreV1().PersistentVolumes().Update(ctx, cur, metav1.UpdateOptions{}); err == nil || apierrors.IsNotFound(err) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("could not remove finalizer of %s", name)
}
