package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"scs-kaas-check/testbed/internal/netsetup"
)

type exitEvent struct {
	c    *containerRuntime
	code int32
	sig  bool
}

type containerRuntime struct {
	spec      corev1.Container
	init      bool
	image     *Image
	id        string
	restarts  int32
	state     corev1.ContainerState
	lastState corev1.ContainerState
	started   bool
	final     bool // terminated and will not restart
	proc      *os.Process
	logs      []*containerLog
	backoff   time.Duration
}

type podRuntime struct {
	a         *Agent
	uid       types.UID
	namespace string
	name      string
	dir       string

	mu         sync.Mutex
	pod        *corev1.Pod
	net        *netsetup.PodNet
	containers []*containerRuntime
	byName     map[string]*containerRuntime
	phase      corev1.PodPhase
	initDone   bool
	sandbox    bool
	volumes    map[string]string
	deleting   chan struct{}
	removedCh  chan struct{}
	delOnce    sync.Once
	remOnce    sync.Once
	exits      chan exitEvent
	startTime  *metav1.Time
	tornDown   bool
}

func newPodRuntime(a *Agent, p *corev1.Pod) *podRuntime {
	pr := &podRuntime{
		a: a, uid: p.UID, namespace: p.Namespace, name: p.Name, pod: p.DeepCopy(),
		dir:      filepath.Join(a.Dir, "pods", string(p.UID)),
		byName:   map[string]*containerRuntime{},
		phase:    corev1.PodPending,
		deleting: make(chan struct{}), removedCh: make(chan struct{}),
		exits: make(chan exitEvent, 16),
	}
	for _, c := range p.Spec.InitContainers {
		cr := &containerRuntime{spec: c, init: true}
		pr.containers = append(pr.containers, cr)
		pr.byName[c.Name] = cr
	}
	for _, c := range p.Spec.Containers {
		cr := &containerRuntime{spec: c}
		pr.containers = append(pr.containers, cr)
		pr.byName[c.Name] = cr
	}
	return pr
}

func (pr *podRuntime) update(p *corev1.Pod) {
	pr.mu.Lock()
	pr.pod = p.DeepCopy()
	pr.mu.Unlock()
	if p.DeletionTimestamp != nil {
		pr.delOnce.Do(func() { close(pr.deleting) })
	}
}

func (pr *podRuntime) removed() {
	pr.remOnce.Do(func() { close(pr.removedCh) })
	pr.delOnce.Do(func() { close(pr.deleting) })
}

func (pr *podRuntime) event(kind, reason, format string, args ...any) {
	pr.mu.Lock()
	p := pr.pod
	pr.mu.Unlock()
	pr.a.recorder.Eventf(p, kind, reason, format, args...)
}

func (pr *podRuntime) containerEvent(c *containerRuntime, kind, reason, format string, args ...any) {
	pr.mu.Lock()
	p := pr.pod.DeepCopy()
	pr.mu.Unlock()
	field := "spec.containers{" + c.spec.Name + "}"
	if c.init {
		field = "spec.initContainers{" + c.spec.Name + "}"
	}
	ref := &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID, APIVersion: "v1", ResourceVersion: p.ResourceVersion, FieldPath: field}
	pr.a.recorder.Eventf(ref, kind, reason, format, args...)
}

func (pr *podRuntime) isDeleting() bool {
	select {
	case <-pr.deleting:
		return true
	default:
		return false
	}
}

// wait sleeps d unless the pod is deleted meanwhile (then it returns false).
func (pr *podRuntime) wait(d time.Duration) bool {
	select {
	case <-pr.deleting:
		return false
	case <-pr.a.ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func (pr *podRuntime) run() {
	defer pr.a.forget(pr.uid)
	if pr.pod.DeletionTimestamp != nil {
		pr.delOnce.Do(func() { close(pr.deleting) })
	}
	if err := os.MkdirAll(pr.dir, 0o755); err != nil {
		klog.Errorf("pod %s/%s: %v", pr.namespace, pr.name, err)
	}
	now := metav1.Now()
	pr.startTime = &now
	for _, c := range pr.containers {
		reason := "ContainerCreating"
		if !c.init && len(pr.pod.Spec.InitContainers) > 0 {
			reason = "PodInitializing"
		}
		c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}
	}
	// The sandbox: a network namespace with an address.
	for pr.net == nil {
		n, err := pr.a.pods.Create()
		if err == nil {
			pr.mu.Lock()
			pr.net, pr.sandbox = n, true
			pr.mu.Unlock()
			break
		}
		pr.event(corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
		if !pr.wait(5 * time.Second) {
			pr.finishDeletion()
			return
		}
	}
	pr.writeStatus()
	// Volumes.
	for {
		vols, err := pr.prepareVolumes()
		if err == nil {
			pr.volumes = vols
			break
		}
		pr.event(corev1.EventTypeWarning, "FailedMount", "%v", err)
		if !pr.wait(2 * time.Second) {
			pr.finishDeletion()
			return
		}
	}
	// Init containers, one after another.
	for _, c := range pr.containers {
		if !c.init {
			continue
		}
		for {
			if !pr.startContainer(c) {
				pr.finishDeletion()
				return
			}
			ev, ok := pr.nextExit()
			if !ok {
				pr.finishDeletion()
				return
			}
			pr.recordExit(ev)
			if ev.code == 0 {
				c.final = true
				break
			}
			if pr.pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
				c.final = true
				pr.setPhase(corev1.PodFailed)
				pr.terminal()
				return
			}
			if !pr.backoff(c) {
				pr.finishDeletion()
				return
			}
		}
	}
	pr.mu.Lock()
	pr.initDone = true
	pr.mu.Unlock()
	// Regular containers.
	for _, c := range pr.containers {
		if !c.init {
			go pr.startWithRetries(c)
		}
	}
	for {
		ev, ok := pr.nextExit()
		if !ok {
			pr.finishDeletion()
			return
		}
		pr.recordExit(ev)
		c := ev.c
		restart := pr.pod.Spec.RestartPolicy == corev1.RestartPolicyAlways ||
			(pr.pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure && ev.code != 0)
		if restart {
			go func() {
				if pr.backoff(c) {
					pr.startWithRetries(c)
				}
			}()
			continue
		}
		pr.mu.Lock()
		c.final = true
		all, failed := true, false
		for _, x := range pr.containers {
			if x.init {
				continue
			}
			if !x.final {
				all = false
			}
			if x.state.Terminated != nil && x.state.Terminated.ExitCode != 0 {
				failed = true
			}
		}
		pr.mu.Unlock()
		if all {
			if failed {
				pr.setPhase(corev1.PodFailed)
			} else {
				pr.setPhase(corev1.PodSucceeded)
			}
			pr.terminal()
			return
		}
		pr.writeStatus()
	}
}

// nextExit waits for a container to exit; false when the pod is being deleted.
func (pr *podRuntime) nextExit() (exitEvent, bool) {
	select {
	case ev := <-pr.exits:
		return ev, true
	case <-pr.deleting:
		return exitEvent{}, false
	case <-pr.a.ctx.Done():
		return exitEvent{}, false
	}
}

func (pr *podRuntime) setPhase(p corev1.PodPhase) {
	pr.mu.Lock()
	pr.phase = p
	pr.mu.Unlock()
}

// terminal: every container is done; the sandbox goes, the pod object stays until deleted.
func (pr *podRuntime) terminal() {
	pr.teardown()
	pr.writeStatus()
	select {
	case <-pr.deleting:
	case <-pr.a.ctx.Done():
		return
	}
	select {
	case <-pr.removedCh:
	default:
		pr.a.confirmDeletion(pr.current())
	}
}

func (pr *podRuntime) current() *corev1.Pod {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.pod.DeepCopy()
}

// finishDeletion stops the containers within the grace period, removes the sandbox and
// confirms the deletion with grace period 0.
func (pr *podRuntime) finishDeletion() {
	if pr.a.ctx.Err() != nil {
		return
	}
	p := pr.current()
	grace := int64(30)
	if p.DeletionGracePeriodSeconds != nil {
		grace = *p.DeletionGracePeriodSeconds
	} else if p.Spec.TerminationGracePeriodSeconds != nil {
		grace = *p.Spec.TerminationGracePeriodSeconds
	}
	select {
	case <-pr.removedCh:
		grace = 0
	default:
	}
	pr.kill(time.Duration(grace) * time.Second)
	pr.teardown()
	select {
	case <-pr.removedCh:
	default:
		// As the kubelet: the final status (terminated containers), then deletion.
		pr.drainExits()
		pr.writeStatus()
		pr.a.confirmDeletion(p)
	}
}

// drainExits records the exits of containers stopped for deletion.
func (pr *podRuntime) drainExits() {
	deadline := time.After(2 * time.Second)
	for {
		pr.mu.Lock()
		running := 0
		for _, c := range pr.containers {
			if c.state.Running != nil {
				running++
			}
		}
		pr.mu.Unlock()
		if running == 0 {
			return
		}
		select {
		case ev := <-pr.exits:
			pr.recordExitOnly(ev)
		case <-deadline:
			return
		}
	}
}

// kill sends SIGTERM to every running container, and SIGKILL after grace.
func (pr *podRuntime) kill(grace time.Duration) {
	pr.mu.Lock()
	var procs []*os.Process
	for _, c := range pr.containers {
		if c.proc != nil && c.state.Running != nil {
			procs = append(procs, c.proc)
			if grace > 0 {
				go pr.containerEvent(c, corev1.EventTypeNormal, "Killing", "Stopping container %s", c.spec.Name)
			}
		}
	}
	pr.mu.Unlock()
	if len(procs) == 0 {
		return
	}
	sig := syscall.SIGTERM
	if grace == 0 {
		sig = syscall.SIGKILL
	}
	for _, p := range procs {
		_ = syscall.Kill(-p.Pid, sig)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		alive := false
		for _, p := range procs {
			if syscall.Kill(p.Pid, 0) == nil && !zombie(p.Pid) {
				alive = true
			}
		}
		if !alive {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range procs {
		_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
	}
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndex(s, ")")
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

func (pr *podRuntime) teardown() {
	pr.mu.Lock()
	n := pr.net
	done := pr.tornDown
	pr.tornDown = true
	pr.sandbox = false
	pr.mu.Unlock()
	if done || n == nil {
		return
	}
	if err := pr.a.pods.Delete(n); err != nil {
		klog.Warningf("pod %s/%s: remove sandbox: %v", pr.namespace, pr.name, err)
	}
}

func (pr *podRuntime) backoff(c *containerRuntime) bool {
	if c.backoff == 0 {
		c.backoff = 10 * time.Second
	} else if c.backoff < 5*time.Minute {
		c.backoff *= 2
	}
	pr.mu.Lock()
	if c.state.Terminated != nil {
		c.lastState = c.state
	}
	c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
		Reason:  "CrashLoopBackOff",
		Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", c.backoff, c.spec.Name, pr.name, pr.namespace, pr.uid),
	}}
	pr.mu.Unlock()
	pr.writeStatus()
	pr.containerEvent(c, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s_%s(%s)", c.spec.Name, pr.name, pr.namespace, pr.uid)
	return pr.wait(c.backoff)
}

// startWithRetries starts a regular container, retrying image pulls and configuration
// errors with the kubelet's back-off.
func (pr *podRuntime) startWithRetries(c *containerRuntime) {
	pr.startContainer(c)
}

// startContainer resolves the image (reporting pull errors with back-off until the pod is
// deleted), builds the container and starts it. False: the pod is being deleted.
func (pr *podRuntime) startContainer(c *containerRuntime) bool {
	pullBackoff := 10 * time.Second
	for {
		img, ok := pr.a.Programs.Resolve(c.spec.Image)
		if ok {
			c.image = img
			if c.restarts == 0 && c.id == "" {
				if d := pr.a.Programs.PullDelay(c.spec.Image); d > 0 {
					// A slow registry: the container waits in ContainerCreating.
					pr.containerEvent(c, corev1.EventTypeNormal, "Pulling", "Pulling image %q", c.spec.Image)
					if !pr.wait(d) {
						return false
					}
					pr.containerEvent(c, corev1.EventTypeNormal, "Pulled", "Successfully pulled image %q in %s (%s including waiting)", c.spec.Image, d, d)
				} else {
					pr.containerEvent(c, corev1.EventTypeNormal, "Pulled", "Container image %q already present on machine", c.spec.Image)
				}
			}
			break
		}
		pr.containerEvent(c, corev1.EventTypeNormal, "Pulling", "Pulling image %q", c.spec.Image)
		msg := fmt.Sprintf("failed to pull and unpack image %q: failed to resolve reference %q: %s: not found (the test bed knows no such image)", c.spec.Image, c.spec.Image, repository(c.spec.Image))
		pr.setWaiting(c, "ErrImagePull", msg)
		pr.containerEvent(c, corev1.EventTypeWarning, "Failed", "Failed to pull image %q: %s", c.spec.Image, msg)
		pr.containerEvent(c, corev1.EventTypeWarning, "Failed", "Error: ErrImagePull")
		if !pr.wait(time.Second) {
			return false
		}
		pr.setWaiting(c, "ImagePullBackOff", fmt.Sprintf("Back-off pulling image %q: ErrImagePull: %s", c.spec.Image, msg))
		pr.containerEvent(c, corev1.EventTypeNormal, "BackOff", "Back-off pulling image %q", c.spec.Image)
		pr.containerEvent(c, corev1.EventTypeWarning, "Failed", "Error: ImagePullBackOff")
		if !pr.wait(pullBackoff) {
			return false
		}
		if pullBackoff < 5*time.Minute {
			pullBackoff *= 2
		}
	}
	for {
		spec, err := pr.containerSpec(c)
		if err == nil {
			if err = pr.launch(c, spec); err == nil {
				return true
			}
		}
		reason := "CreateContainerConfigError"
		var ce *createError
		if errors.As(err, &ce) {
			reason = "CreateContainerError"
		}
		pr.setWaiting(c, reason, err.Error())
		pr.containerEvent(c, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		if !pr.wait(10 * time.Second) {
			return false
		}
	}
}

type createError struct{ err error }

func (e *createError) Error() string { return e.err.Error() }

func (pr *podRuntime) setWaiting(c *containerRuntime, reason, msg string) {
	pr.mu.Lock()
	c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
	pr.mu.Unlock()
	pr.writeStatus()
}

func randomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// launch starts the container's process: `ip netns exec <pod ns> testbed container-init`.
func (pr *podRuntime) launch(c *containerRuntime, spec *ContainerSpec) error {
	cdir := filepath.Join(pr.dir, "containers", fmt.Sprintf("%s-%d", c.spec.Name, c.restarts))
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		return err
	}
	spec.Root = filepath.Join(cdir, "root")
	data, _ := json.Marshal(spec)
	specPath := filepath.Join(cdir, "spec.json")
	if err := os.WriteFile(specPath, data, 0o600); err != nil {
		return err
	}
	log, err := newContainerLog(filepath.Join(cdir, "log"))
	if err != nil {
		return err
	}
	self, _ := os.Executable()
	cmd := exec.Command("ip", "netns", "exec", pr.net.NS, self, "container-init", specPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		log.close()
		return &createError{err}
	}
	id := randomID()
	now := metav1.Now()
	pr.mu.Lock()
	c.id = "testbed://" + id
	c.proc = cmd.Process
	c.started = true
	if c.state.Terminated != nil {
		c.lastState = c.state
	}
	c.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}
	c.logs = append(c.logs, log)
	pr.mu.Unlock()
	pr.containerEvent(c, corev1.EventTypeNormal, "Created", "Created container: %s", c.spec.Name)
	pr.containerEvent(c, corev1.EventTypeNormal, "Started", "Started container %s", c.spec.Name)
	pr.writeStatus()
	var wg sync.WaitGroup
	wg.Add(2)
	go log.copyFrom("stdout", stdout, &wg)
	go log.copyFrom("stderr", stderr, &wg)
	go func() {
		wg.Wait()
		err := cmd.Wait()
		// Whatever is left in the process group (e.g. children of a shell) goes too.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		log.close()
		code, sig := int32(0), false
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					code, sig = 128+int32(ws.Signal()), true
				} else {
					code = int32(ee.ExitCode())
				}
			} else {
				code = 128
			}
		}
		pr.exits <- exitEvent{c: c, code: code, sig: sig}
	}()
	return nil
}

func (pr *podRuntime) recordExit(ev exitEvent) {
	pr.recordExitOnly(ev)
	pr.writeStatus()
}

func (pr *podRuntime) recordExitOnly(ev exitEvent) {
	c := ev.c
	now := metav1.Now()
	pr.mu.Lock()
	started := now
	if c.state.Running != nil {
		started = c.state.Running.StartedAt
	}
	reason := "Completed"
	if ev.code != 0 {
		reason = "Error"
	}
	c.state = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: ev.code, Reason: reason, StartedAt: started, FinishedAt: now, ContainerID: c.id,
	}}
	c.proc = nil
	restart := pr.pod.Spec.RestartPolicy == corev1.RestartPolicyAlways ||
		(pr.pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure && ev.code != 0)
	if restart && !pr.isDeleting() {
		c.restarts++
	}
	pr.mu.Unlock()
}

func (pr *podRuntime) log(container string, previous bool) (*containerLog, error) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	c := pr.byName[container]
	if c == nil {
		return nil, fmt.Errorf("container %q in pod %q is not available", container, pr.name)
	}
	n := len(c.logs)
	if previous {
		n--
	}
	if n < 1 {
		if previous {
			return nil, fmt.Errorf("previous terminated container %q in pod %q not found", container, pr.name)
		}
		return nil, fmt.Errorf("container %q in pod %q is waiting to start: %s", container, pr.name, waitingReason(c))
	}
	return c.logs[n-1], nil
}

func waitingReason(c *containerRuntime) string {
	if c.state.Waiting != nil && c.state.Waiting.Reason != "" {
		return c.state.Waiting.Reason
	}
	return "ContainerCreating"
}

func (a *Agent) logOnDisk(namespace, name, container string, _ bool) (*containerLog, error) {
	return nil, fmt.Errorf("pod %s/%s (container %s) is not known on node %s", namespace, name, container, a.Spec.Name)
}

// status computes the pod status as the kubelet reports it.
func (pr *podRuntime) status(old corev1.PodStatus) corev1.PodStatus {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	st := corev1.PodStatus{
		Phase:     pr.phase,
		HostIP:    pr.a.IP(),
		HostIPs:   []corev1.HostIP{{IP: pr.a.IP()}},
		StartTime: pr.startTime,
		QOSClass:  old.QOSClass,
	}
	if pr.net != nil {
		st.PodIP = pr.net.IP
		st.PodIPs = []corev1.PodIP{{IP: pr.net.IP}}
	}
	allReady, anyRunning := true, false
	var unready []string
	for _, c := range pr.containers {
		cs := corev1.ContainerStatus{
			Name: c.spec.Name, Image: c.spec.Image, ImageID: imageID(c.spec.Image), ContainerID: c.id,
			RestartCount: c.restarts, State: c.state, LastTerminationState: c.lastState,
			Started: boolPtr(c.state.Running != nil), Ready: c.state.Running != nil && !c.init,
		}
		if c.id == "" {
			cs.ImageID = ""
		}
		if c.init {
			cs.Ready = c.state.Terminated != nil && c.state.Terminated.ExitCode == 0
			st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
			continue
		}
		if c.state.Running != nil {
			anyRunning = true
		}
		if !cs.Ready {
			allReady = false
			unready = append(unready, c.spec.Name)
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	_ = anyRunning
	if pr.phase == corev1.PodPending && pr.initDone {
		for _, c := range pr.containers {
			if !c.init && (c.state.Running != nil || c.state.Terminated != nil) {
				st.Phase = corev1.PodRunning
			}
		}
	}
	pr.phase = st.Phase
	cond := func(t corev1.PodConditionType, ok bool, reason, msg string) corev1.PodCondition {
		s := corev1.ConditionFalse
		if ok {
			s, reason, msg = corev1.ConditionTrue, "", ""
		}
		c := corev1.PodCondition{Type: t, Status: s, Reason: reason, Message: msg, LastTransitionTime: metav1.Now()}
		for _, o := range old.Conditions {
			if o.Type == t && o.Status == s {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		return c
	}
	var uninit []string
	for _, c := range pr.containers {
		if c.init && !(c.state.Terminated != nil && c.state.Terminated.ExitCode == 0) {
			uninit = append(uninit, c.spec.Name)
		}
	}
	readyReason, readyMsg := "ContainersNotReady", fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
		readyReason, readyMsg = "PodCompleted", ""
		if st.Phase == corev1.PodFailed {
			readyReason = "PodFailed"
		}
		allReady = false
	}
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, pr.sandbox, "", ""),
		cond(corev1.PodInitialized, len(uninit) == 0, "ContainersNotInitialized", fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(uninit, " "))),
		cond(corev1.PodReady, allReady, readyReason, readyMsg),
		cond(corev1.ContainersReady, allReady, readyReason, readyMsg),
	}
	for _, o := range old.Conditions {
		if o.Type == corev1.PodScheduled {
			st.Conditions = append(st.Conditions, o)
		}
	}
	return st
}

func boolPtr(v bool) *bool { return &v }

func imageID(ref string) string {
	return repository(ref) + "@sha256:" + strings.Repeat("0", 64)
}

// writeStatus writes the computed status (retrying on conflicts).
func (pr *podRuntime) writeStatus() {
	pods := pr.a.client.CoreV1().Pods(pr.namespace)
	ctx, cancel := context.WithTimeout(pr.a.ctx, 30*time.Second)
	defer cancel()
	for attempt := 0; attempt < 10; attempt++ {
		cur, err := pods.Get(ctx, pr.name, metav1.GetOptions{})
		if err != nil {
			return
		}
		if cur.UID != pr.uid {
			return
		}
		cur.Status = pr.status(cur.Status)
		updated, err := pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if err == nil {
			pr.mu.Lock()
			if updated.DeletionTimestamp == nil || pr.pod.DeletionTimestamp == nil {
				pr.pod = updated
			}
			pr.mu.Unlock()
			return
		}
		if !apierrors.IsConflict(err) {
			if ctx.Err() == nil && !apierrors.IsNotFound(err) {
				klog.Warningf("pod %s/%s: status: %v", pr.namespace, pr.name, err)
			}
			return
		}
	}
}
