package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// launch says how to start one berth process; every e2e launcher goes
// through start.
type launch struct {
	// IP to listen on (default 127.0.0.1); the port is picked free.
	IP string
	// Args are serve flags beyond --addr and --data-dir.
	Args []string
	// Env is added to the environment, from which the caller's BERTH_*
	// variables are removed.
	Env []string
	// DataDir and LogPath default to fresh paths in a temp directory; a
	// given DataDir is reused as is (restarts on the same data).
	DataDir, LogPath string
	// TLS serves HTTPS; Client is then used for the health check.
	TLS    bool
	Client *http.Client
	// Kill stops the process with SIGKILL at cleanup instead of checking
	// a graceful SIGTERM shutdown.
	Kill bool
}

// proc is a started berth.
type proc struct {
	*server
	cmd *exec.Cmd
	// done is closed when the process has exited, with its status in err.
	done chan struct{}
	err  error
}

// start starts berth as l says, retrying when it loses the race for its
// port, waits for /healthz and registers a cleanup that stops it (showing
// the end of its log when the test failed).
func start(t *testing.T, l launch) *proc {
	t.Helper()
	skipIfShort(t)
	if berthBuildErr != nil {
		t.Fatalf("berth binary is not available: %v", berthBuildErr)
	}
	root := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		a := l
		if a.DataDir == "" {
			a.DataDir = filepath.Join(root, fmt.Sprintf("data%d", attempt))
		}
		if a.LogPath == "" {
			a.LogPath = filepath.Join(root, fmt.Sprintf("berth%d.log", attempt))
		}
		p, err := tryStart(t, a)
		if err == nil {
			return p
		}
		lastErr = err
		if !errors.Is(err, errPortInUse) {
			break
		}
	}
	t.Fatalf("starting berth %s: %v", strings.Join(l.Args, " "), lastErr)
	return nil
}

// errPortInUse marks a start that lost the race for its port.
var errPortInUse = errors.New("address already in use")

func tryStart(t *testing.T, l launch) (*proc, error) {
	t.Helper()
	ip := l.IP
	if ip == "" {
		ip = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return nil, err
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	scheme := "http"
	if l.TLS {
		scheme = "https"
	}
	s := &server{Addr: net.JoinHostPort(ip, port), DataDir: l.DataDir, LogPath: l.LogPath}
	s.URL = scheme + "://" + s.Addr
	if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(berthBin, append([]string{"serve", "--addr", s.Addr, "--data-dir", s.DataDir}, l.Args...)...)
	cmd.Env = append(envWithout(os.Environ(), "BERTH_"), l.Env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	p := &proc{server: s, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); logFile.Close(); close(p.done) }()
	client := l.Client
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second}
	}
	if err := waitHealthy(s, client, p); err != nil {
		p.kill()
		logTail := tailFile(s.LogPath, 40)
		if strings.Contains(logTail, "address already in use") {
			return nil, fmt.Errorf("%w: %v", errPortInUse, err)
		}
		return nil, fmt.Errorf("%v; berth log:\n%s", err, logTail)
	}
	t.Logf("berth %s listening on %s (data %s, log %s)", strings.Join(l.Args, " "), s.Addr, s.DataDir, s.LogPath)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last lines of the berth log (%s):\n%s", s.LogPath, tailFile(s.LogPath, 80))
			if audit := filepath.Join(s.DataDir, "audit.log"); fileExists(audit) {
				t.Logf("last lines of the audit log (%s):\n%s", audit, tailFile(audit, 40))
			}
		}
		if l.Kill {
			p.kill()
			return
		}
		p.stop(t)
	})
	return p, nil
}

// stop stops the process with SIGTERM and reports an unclean or slow exit
// as a test error; stopping a stopped process does nothing.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("berth did not exit cleanly after SIGTERM: %v; log:\n%s", p.err, tailFile(p.LogPath, 20))
		}
	case <-time.After(stopTimeout):
		p.kill()
		t.Errorf("berth did not stop within %s after SIGTERM; killed it", stopTimeout)
	}
}

// kill stops the process with SIGKILL and waits for it to end.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// waitHealthy polls GET /healthz until it answers 200, the process exits,
// or startTimeout passes.
func waitHealthy(s *server, client *http.Client, p *proc) error {
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("berth exited before becoming healthy: %v", p.err)
		default:
		}
		resp, err := client.Get(s.URL + "/healthz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if strings.Contains(fmt.Sprint(err), "server gave HTTP response to HTTPS client") {
			return fmt.Errorf("berth serves plain HTTP despite --tls-cert: %v", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("berth not healthy after %s: %v", startTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
