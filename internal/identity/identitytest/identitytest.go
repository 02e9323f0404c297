// Package identitytest owns the real directory servers the identity tests
// talk to: an OpenLDAP slapd and an MIT Kerberos KDC, each started on a free
// loopback port with a configuration generated in a temporary directory, and
// killed in t.Cleanup. Tests stop and restart them to prove that egress fails
// closed while they are down and recovers when they are back.
//
// The binaries come from Debian packages (slapd ldap-utils krb5-kdc
// krb5-admin-server krb5-user; .ci/run installs them). When one is missing the
// test is skipped with a loud reason, never passed silently.
package identitytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test directory: three users, two groups.
//
//	alice  password alice-pw  groups communication, staff
//	bob    password bob-pw    groups staff
//	carol  password carol-pw  no group
//
// The same users exist in the LDAP directory and in the Kerberos realm, with
// the same passwords.
const (
	AlicePassword = "alice-pw"
	BobPassword   = "bob-pw"
	CarolPassword = "carol-pw"
)

// Passwords maps each test user to its password.
var Passwords = map[string]string{"alice": AlicePassword, "bob": BobPassword, "carol": CarolPassword}

// startTimeout bounds how long a server may take to accept connections.
const startTimeout = 15 * time.Second

// need skips t loudly when a binary is missing.
func need(t testing.TB, pkg string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("SKIPPED: %s not found (apt-get install %s; .ci/run does): this test needs a real server and did NOT run", p, pkg)
		}
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// run runs a setup command and fails the test with its output on error.
func run(t testing.TB, env []string, stdin string, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = bytes.NewBufferString(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// daemon is one foreground server process that can be stopped and started
// again with the same command line (same port, same data).
type daemon struct {
	name string
	env  []string
	args []string
	addr string // TCP address polled for readiness
	log  string // file receiving its stdout and stderr

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// start launches the process and waits (bounded) until addr accepts.
func (d *daemon) start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(d.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(d.name, d.args...)
	cmd.Env = append(os.Environ(), d.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", d.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			out, _ := os.ReadFile(d.log)
			return fmt.Errorf("%s exited before listening on %s:\n%s", d.name, d.addr, out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			out, _ := os.ReadFile(d.log)
			return fmt.Errorf("%s not listening on %s after %v:\n%s", d.name, d.addr, startTimeout, out)
		}
	}
	d.cmd, d.done = cmd, done
	return nil
}

// stop kills the process group and waits (bounded) until the port is closed.
func (d *daemon) stop() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return nil
	}
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-d.done:
	case <-time.After(startTimeout):
		return fmt.Errorf("%s (pid %d) did not exit", d.name, d.cmd.Process.Pid)
	}
	d.cmd, d.done = nil, nil
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", d.addr, 200*time.Millisecond)
		if err != nil {
			return nil
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New(d.name + " still listening after stop")
}

// writeFile writes a setup file or fails the test.
func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tempDir is t.TempDir with a short path: slapd and the KDC put socket and
// lock names under it.
func tempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Clean(dir)
}
