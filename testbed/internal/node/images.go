package node

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Image is what the agent knows about an image: its config (entrypoint, cmd, env, user)
// and how to lay out its file system from programs on this machine.
type Image struct {
	Kind       string
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	// UID is the image's USER (used when the pod sets no runAsUser).
	UID    uint32
	Layout Layout
}

// Programs are the host paths of the programs that stand in for images.
type Programs struct {
	Agnhost string // built from k8s.io/kubernetes/test/images/agnhost
	Suite   string // the scs-kaas-check binary under test (image */scs-kaas-check:*)
	Self    string // this test bed binary (conformance image emulation)
	// Fixtures is tests/fixtures/e2e (the conformance emulation's fixtures).
	Fixtures string
	// ConformanceDefault and ConformanceByFocus choose the fixture per E2E_FOCUS;
	// ConformanceByTag per image tag, for every focus (scenario.Conformance).
	ConformanceDefault string
	ConformanceByFocus map[string]string
	ConformanceByTag   map[string]string
	// Dir holds generated image files (nginx.conf, passwd).
	Dir string
	// PullDelays: how long a pull from a registry host takes (scenario registries).
	PullDelays map[string]time.Duration
}

// registryHost is the registry of an image reference as the container runtime resolves
// it: the first path segment when it looks like a host (a dot, a port or localhost),
// else docker.io.
func registryHost(ref string) string {
	first, _, found := strings.Cut(ref, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return first
	}
	return "docker.io"
}

// PullDelay is how long pulling ref takes (0: at once).
func (p *Programs) PullDelay(ref string) time.Duration {
	return p.PullDelays[registryHost(ref)]
}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// debianUserland binds the host's read-only /usr and /etc: the Debian userland (curl,
// sh) that stands in for an image's base layer.
// /usr/local stays the image's own (a tmpfs directory), so that programs can be placed
// under /usr/local/bin.
func debianUserland() Layout {
	l := Layout{
		Dirs:     []string{"/usr/local/bin"},
		Symlinks: map[string]string{"/bin": "usr/bin", "/sbin": "usr/sbin", "/lib": "usr/lib", "/lib64": "usr/lib64"},
		Binds:    []Mount{{Source: "/etc", Target: "/etc", ReadOnly: true}},
	}
	entries, _ := os.ReadDir("/usr")
	for _, e := range entries {
		if e.Name() != "local" && e.IsDir() {
			l.Binds = append(l.Binds, Mount{Source: "/usr/" + e.Name(), Target: "/usr/" + e.Name(), ReadOnly: true})
		}
	}
	return l
}

// repository returns an image reference without tag or digest.
func repository(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

// tag returns an image reference's tag ("" without one).
func tag(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[i+1:]
	}
	return ""
}

func matches(repo string, known ...string) bool {
	for _, k := range known {
		if repo == k || strings.HasSuffix(repo, "/"+k) {
			return true
		}
	}
	return false
}

var (
	busyboxOnce    sync.Once
	busyboxApplets []string
	nginxOnce      sync.Once
	nginxErr       error
)

// Resolve maps an image reference to an Image; ok is false for images this machine
// does not have (the agent reports ErrImagePull/ImagePullBackOff for them). A mirror
// keeps the repository path (mirror.example/m/registry.k8s.io/pause matches pause).
func (p *Programs) Resolve(ref string) (*Image, bool) {
	repo := repository(ref)
	switch {
	case matches(repo, "registry.k8s.io/e2e-test-images/agnhost", "e2e-test-images/agnhost") && p.Agnhost != "":
		l := debianUserland()
		l.Binds = append(l.Binds, Mount{Source: p.Agnhost, Target: "/agnhost", ReadOnly: true})
		return &Image{Kind: "agnhost", Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}, Env: []string{defaultPath}, Layout: l}, true
	case matches(repo, "registry.k8s.io/pause", "k8s.gcr.io/pause") && p.Agnhost != "":
		// The pause image's /pause: agnhost's pause subcommand does the same (wait for a signal).
		l := debianUserland() // agnhost is linked dynamically against the host's libc
		l.Binds = append(l.Binds, Mount{Source: p.Agnhost, Target: "/agnhost", ReadOnly: true})
		return &Image{Kind: "pause", Entrypoint: []string{"/agnhost", "pause"}, Env: []string{defaultPath}, UID: 65535, Layout: l}, true
	case matches(repo, "docker.io/library/busybox", "library/busybox", "busybox"):
		bb, err := exec.LookPath("busybox")
		if err != nil {
			return nil, false
		}
		// Debian's busybox-static needs nothing else; the dynamic busybox package needs
		// the host's libc, so /usr/lib is bound in read-only as well.
		l := Layout{Dirs: []string{"/bin", "/root", "/home"}, Symlinks: map[string]string{"/lib": "usr/lib", "/lib64": "usr/lib64"},
			Binds: []Mount{{Source: bb, Target: "/bin/busybox", ReadOnly: true}, {Source: "/usr/lib", Target: "/usr/lib", ReadOnly: true}},
			Files: map[string]string{
				"/etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
				"/etc/group":  "root:x:0:\nnogroup:x:65534:\n",
			}}
		busyboxOnce.Do(func() {
			out, _ := exec.Command(bb, "--list").Output()
			busyboxApplets = strings.Fields(string(out))
		})
		for _, a := range busyboxApplets {
			if a != "busybox" {
				l.Symlinks["/bin/"+a] = "busybox"
			}
		}
		return &Image{Kind: "busybox", Cmd: []string{"sh"}, Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, Layout: l}, true
	case matches(repo, "docker.io/nginxinc/nginx-unprivileged", "nginxinc/nginx-unprivileged", "docker.io/library/nginx", "library/nginx", "nginx"):
		nginx, err := exec.LookPath("nginx")
		if err != nil {
			return nil, false
		}
		etc := filepath.Join(p.Dir, "nginx-etc")
		nginxOnce.Do(func() { nginxErr = writeNginxEtc(etc) })
		if nginxErr != nil {
			return nil, false
		}
		l := debianUserland()
		l.Binds = append(l.Binds, Mount{Source: etc, Target: "/etc/nginx", ReadOnly: true})
		// nginx-unprivileged: USER 101, listens on 8080, pid and temp files in /tmp.
		return &Image{Kind: "nginx", Cmd: []string{nginx, "-g", "daemon off;"}, Env: []string{defaultPath}, UID: 101, Layout: l}, true
	case matches(repo, "ghcr.io/sovereigncloudstack/scs-kaas-check", "sovereigncloudstack/scs-kaas-check", "scs-kaas-check") && p.Suite != "":
		// The real image is a static musl binary on distroless; a cargo-built test binary
		// is linked against glibc, so the host's /usr (loader, libc) is bound in too.
		l := debianUserland()
		l.Binds = append(l.Binds, Mount{Source: p.Suite, Target: "/usr/local/bin/scs-kaas-check", ReadOnly: true})
		return &Image{Kind: "suite", Entrypoint: []string{"/usr/local/bin/scs-kaas-check"}, Cmd: []string{"--help"}, Env: []string{defaultPath}, UID: 65532, Layout: l}, true
	case matches(repo, "registry.k8s.io/conformance") && p.Self != "":
		// EMULATION: the real conformance image runs go-runner with ginkgo and e2e.test,
		// which cannot run here; `testbed go-runner` plays recorded fixtures instead.
		env := []string{defaultPath, "RESULTS_DIR=/tmp/results", `E2E_FOCUS=\[Conformance\]`, "E2E_PARALLEL=false", "E2E_PROVIDER=local", "E2E_USE_GO_RUNNER=true", "TESTBED_FIXTURES=/fixtures"}
		fixture, byFocus := p.ConformanceDefault, p.ConformanceByFocus
		if f, ok := p.ConformanceByTag[tag(ref)]; ok {
			fixture, byFocus = f, nil
		}
		if fixture != "" {
			env = append(env, "TESTBED_FIXTURE_DEFAULT="+fixture)
		}
		if len(byFocus) > 0 {
			b, _ := json.Marshal(byFocus)
			env = append(env, "TESTBED_FIXTURES_BY_FOCUS="+string(b))
		}
		l := debianUserland()
		l.Dirs = append(l.Dirs, "/fixtures")
		l.Binds = append(l.Binds, Mount{Source: p.Self, Target: "/go-runner", ReadOnly: true})
		if p.Fixtures != "" {
			l.Binds = append(l.Binds, Mount{Source: p.Fixtures, Target: "/fixtures", ReadOnly: true})
		}
		return &Image{Kind: "conformance", Entrypoint: []string{"/go-runner", "go-runner"}, Env: env, Layout: l}, true
	}
	return nil, false
}

const nginxConf = `# nginx-unprivileged's layout: no user switch, pid and temp files in /tmp, port 8080.
worker_processes 1;
error_log /dev/stderr notice;
pid /tmp/nginx.pid;
events { worker_connections 256; }
http {
    proxy_temp_path /tmp/proxy_temp;
    client_body_temp_path /tmp/client_temp;
    fastcgi_temp_path /tmp/fastcgi_temp;
    uwsgi_temp_path /tmp/uwsgi_temp;
    scgi_temp_path /tmp/scgi_temp;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    include /etc/nginx/conf.d/*.conf;
}
`

const nginxDefault = `server {
    listen 8080;
    location / { return 200 "nginx\n"; }
}
`

func writeNginxEtc(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(nginxConf), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "conf.d", "default.conf"), []byte(nginxDefault), 0o644); err != nil {
		return err
	}
	mime, err := os.ReadFile("/etc/nginx/mime.types")
	if err != nil {
		mime = []byte("types { text/html html; }\n")
	}
	return os.WriteFile(filepath.Join(dir, "mime.types"), mime, 0o644)
}
