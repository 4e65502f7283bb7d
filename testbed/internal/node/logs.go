package node

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// containerLog is one container instance's log in the CRI format the kubelet reads
// ("<RFC3339Nano> stdout|stderr F <line>"), with a broadcast for followers.
type containerLog struct {
	path   string
	mu     sync.Mutex
	file   *os.File
	closed bool
	notify chan struct{}
}

func newContainerLog(path string) (*containerLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &containerLog{path: path, file: f, notify: make(chan struct{})}, nil
}

func (l *containerLog) write(stream, line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	fmt.Fprintf(l.file, "%s %s F %s\n", time.Now().UTC().Format(time.RFC3339Nano), stream, line)
	close(l.notify)
	l.notify = make(chan struct{})
}

// copyFrom reads lines of one stream until EOF.
func (l *containerLog) copyFrom(stream string, r io.Reader, done *sync.WaitGroup) {
	defer done.Done()
	br := bufio.NewReaderSize(r, 64*1024)
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			l.write(stream, strings.TrimSuffix(line, "\n"))
		}
		if err != nil {
			return
		}
	}
}

func (l *containerLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		l.file.Close()
		close(l.notify)
	}
}

// state returns the current channel to wait on and whether the log is finished.
func (l *containerLog) state() (<-chan struct{}, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.notify, l.closed
}

type logLine struct {
	ts      time.Time
	stamp   string
	content string
}

func parseLines(data []byte) ([]logLine, int) {
	var out []logLine
	consumed := 0
	for {
		i := bytes.IndexByte(data[consumed:], '\n')
		if i < 0 {
			return out, consumed
		}
		raw := string(data[consumed : consumed+i])
		consumed += i + 1
		parts := strings.SplitN(raw, " ", 4)
		if len(parts) < 4 {
			continue
		}
		ts, _ := time.Parse(time.RFC3339Nano, parts[0])
		out = append(out, logLine{ts: ts, stamp: parts[0], content: parts[3]})
	}
}

// logOptions are the kubelet's /containerLogs query parameters.
type logOptions struct {
	follow     bool
	timestamps bool
	tail       int64 // -1: all
	since      time.Time
	limit      int64 // 0: none
	previous   bool
}

func parseLogOptions(q map[string][]string) (logOptions, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	o := logOptions{tail: -1}
	o.follow = get("follow") == "true" || get("follow") == "1"
	o.timestamps = get("timestamps") == "true" || get("timestamps") == "1"
	o.previous = get("previous") == "true" || get("previous") == "1"
	if v := get("tailLines"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return o, fmt.Errorf("invalid tailLines %q", v)
		}
		o.tail = n
	}
	if v := get("limitBytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return o, fmt.Errorf("invalid limitBytes %q", v)
		}
		o.limit = n
	}
	if v := get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return o, fmt.Errorf("invalid sinceTime %q", v)
		}
		o.since = t
	}
	if v := get("sinceSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return o, fmt.Errorf("invalid sinceSeconds %q", v)
		}
		o.since = time.Now().Add(-time.Duration(n) * time.Second)
	}
	return o, nil
}

// serve writes the log per the options, following it while the container runs, as
// the kubelet's ReadLogs does.
func (l *containerLog) serve(w http.ResponseWriter, o logOptions) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	written := int64(0)
	emit := func(lines []logLine) bool {
		for _, ln := range lines {
			if !o.since.IsZero() && ln.ts.Before(o.since) {
				continue
			}
			s := ln.content + "\n"
			if o.timestamps {
				s = ln.stamp + " " + s
			}
			if o.limit > 0 && written+int64(len(s)) > o.limit {
				s = s[:o.limit-written]
			}
			n, err := io.WriteString(w, s)
			written += int64(n)
			if err != nil || (o.limit > 0 && written >= o.limit) {
				return false
			}
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	f, err := os.Open(l.path)
	if err != nil {
		return
	}
	defer f.Close()
	var pending []byte
	first := true
	for {
		wait, closed := l.state()
		chunk, _ := io.ReadAll(f)
		pending = append(pending, chunk...)
		lines, used := parseLines(pending)
		pending = pending[used:]
		if first {
			first = false
			if o.tail >= 0 && int64(len(lines)) > o.tail {
				lines = lines[int64(len(lines))-o.tail:]
			}
		}
		if !emit(lines) {
			return
		}
		if !o.follow || closed {
			return
		}
		select {
		case <-wait:
		case <-time.After(30 * time.Second):
		}
	}
}

// kubeletServer is the node's HTTPS endpoint (port 10250) for the API server.
type kubeletServer struct {
	agent *Agent
}

func (k *kubeletServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.URL.Path == "/healthz":
		_, _ = io.WriteString(w, "ok")
	case len(parts) == 4 && parts[0] == "containerLogs":
		o, err := parseLogOptions(r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		l, err := k.agent.findLog(parts[1], parts[2], parts[3], o.previous)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		l.serve(w, o)
	default:
		// exec, attach, port-forward, metrics: this emulated kubelet does not offer them.
		http.Error(w, "not supported by the test bed's emulated kubelet", http.StatusNotImplemented)
	}
}

// serveKubelet serves HTTPS on the listener, requiring client certificates of the CA.
func serveKubelet(ln net.Listener, agent *Agent, cert tls.Certificate, ca *x509.CertPool) *http.Server {
	srv := &http.Server{
		Handler: &kubeletServer{agent: agent},
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientCAs:    ca,
			ClientAuth:   tls.RequireAndVerifyClientCert,
			MinVersion:   tls.VersionTLS12,
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	return srv
}
