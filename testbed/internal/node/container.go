package node

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ContainerSpec is what `testbed container-init` needs to start one container. The agent
// writes it as JSON and runs `ip netns exec <pod netns> testbed container-init <file>`:
// ip netns exec enters the pod's network namespace and a fresh mount namespace (slave of
// the host's), container-init builds the root filesystem on a tmpfs, mounts the volumes,
// sets the hostname in a new UTS namespace, chroots, drops to the pod's user and execs.
type ContainerSpec struct {
	Root         string   `json:"root"`
	Hostname     string   `json:"hostname"`
	Argv         []string `json:"argv"`
	Env          []string `json:"env"`
	WorkingDir   string   `json:"workingDir"`
	UID          uint32   `json:"uid"`
	GID          uint32   `json:"gid"`
	Groups       []uint32 `json:"groups"`
	ReadOnlyRoot bool     `json:"readOnlyRoot"`
	NoNewPrivs   bool     `json:"noNewPrivs"`
	Layout       Layout   `json:"layout"`
	Mounts       []Mount  `json:"mounts"`
}

// Layout is an image's file system: directories, symlinks, files and host paths bound in.
type Layout struct {
	Dirs     []string          `json:"dirs,omitempty"`
	Symlinks map[string]string `json:"symlinks,omitempty"`
	Files    map[string]string `json:"files,omitempty"`
	Binds    []Mount           `json:"binds,omitempty"`
}

// Mount binds Source (a host path) at Target inside the container.
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

func init() {
	// container-init must unshare the UTS namespace and exec on the same OS thread.
	if len(os.Args) > 1 && os.Args[1] == "container-init" {
		runtime.LockOSThread()
	}
}

// ContainerInit is the `container-init` subcommand; it only returns on error.
func ContainerInit(specPath string) error {
	data, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	var s ContainerSpec
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	if err := unix.Unshare(unix.CLONE_NEWUTS); err != nil {
		return fmt.Errorf("unshare uts: %w", err)
	}
	if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	r := s.Root
	if err := os.MkdirAll(r, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", r, "tmpfs", 0, "mode=0755,size=64m"); err != nil {
		return fmt.Errorf("rootfs tmpfs: %w", err)
	}
	for _, d := range append([]string{"/proc", "/dev", "/sys", "/tmp", "/etc", "/var/tmp", "/run"}, s.Layout.Dirs...) {
		if err := os.MkdirAll(filepath.Join(r, d), 0o755); err != nil {
			return err
		}
	}
	_ = os.Chmod(filepath.Join(r, "tmp"), 0o1777|os.ModeSticky)
	_ = os.Chmod(filepath.Join(r, "var/tmp"), 0o1777|os.ModeSticky)
	for p, target := range s.Layout.Symlinks {
		_ = os.MkdirAll(filepath.Dir(filepath.Join(r, p)), 0o755)
		if err := os.Symlink(target, filepath.Join(r, p)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	for p, content := range s.Layout.Files {
		_ = os.MkdirAll(filepath.Dir(filepath.Join(r, p)), 0o755)
		if err := os.WriteFile(filepath.Join(r, p), []byte(content), 0o644); err != nil {
			return err
		}
	}
	for _, m := range []Mount{{Source: "/proc", Target: "/proc"}, {Source: "/dev", Target: "/dev"}, {Source: "/sys", Target: "/sys", ReadOnly: true}} {
		if err := unix.Mount(m.Source, filepath.Join(r, m.Target), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", m.Source, err)
		}
	}
	for _, m := range append(append([]Mount{}, s.Layout.Binds...), s.Mounts...) {
		if err := bind(r, m); err != nil {
			return err
		}
	}
	if s.ReadOnlyRoot {
		if err := unix.Mount("", r, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("read-only root: %w", err)
		}
	}
	if err := unix.Chroot(r); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	wd := s.WorkingDir
	if wd == "" {
		wd = "/"
	}
	if err := os.Chdir(wd); err != nil {
		return fmt.Errorf("working directory %s: %w", wd, err)
	}
	groups := make([]int, 0, len(s.Groups))
	for _, g := range s.Groups {
		groups = append(groups, int(g))
	}
	// As runc's fixStdioPermissions: the container's user owns its stdio pipes, so that
	// reopening /dev/stdout or /dev/stderr works (nginx logs to /dev/stderr).
	for fd := 0; fd <= 2; fd++ {
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT != unix.S_IFCHR {
			_ = unix.Fchown(fd, int(s.UID), int(s.GID))
		}
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(int(s.GID)); err != nil {
		return fmt.Errorf("setgid: %w", err)
	}
	if err := syscall.Setuid(int(s.UID)); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	if s.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("no_new_privs: %w", err)
		}
	}
	if len(s.Argv) == 0 {
		return fmt.Errorf("no command: the image has no entrypoint and the container sets none")
	}
	path := s.Argv[0]
	if !strings.Contains(path, "/") {
		for _, e := range s.Env {
			if strings.HasPrefix(e, "PATH=") {
				_ = os.Setenv("PATH", strings.TrimPrefix(e, "PATH="))
			}
		}
		lp, err := exec.LookPath(path)
		if err != nil {
			return fmt.Errorf("exec: %q: executable file not found in $PATH", path)
		}
		path = lp
	}
	if err := syscall.Exec(path, s.Argv, s.Env); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}

func bind(root string, m Mount) error {
	target := filepath.Join(root, m.Target)
	st, err := os.Stat(m.Source)
	if err != nil {
		return fmt.Errorf("mount source %s: %w", m.Source, err)
	}
	if st.IsDir() {
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
	} else {
		_ = os.MkdirAll(filepath.Dir(target), 0o755)
		if _, err := os.Lstat(target); os.IsNotExist(err) {
			if err := os.WriteFile(target, nil, 0o644); err != nil {
				return err
			}
		}
	}
	if err := unix.Mount(m.Source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s at %s: %w", m.Source, m.Target, err)
	}
	if m.ReadOnly {
		if err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("read-only %s: %w", m.Target, err)
		}
	}
	return nil
}
