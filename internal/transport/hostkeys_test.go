package transport

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func dialOnce(t *testing.T, cfg Config, target Target) (*Client, error) {
	t.Helper()
	d, err := NewDialer(cfg)
	if err != nil {
		t.Fatalf("NewDialer: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.Dial(ctx, target)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func signCert(t *testing.T, ca keyPair, host ssh.PublicKey, principals ...string) *ssh.Certificate {
	t.Helper()
	cert := &ssh.Certificate{
		Key: host, CertType: ssh.HostCert, KeyId: "test host", ValidPrincipals: principals,
		ValidAfter: uint64(time.Now().Add(-time.Hour).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix()),
	}
	if err := cert.SignCert(rand.Reader, ca.signer); err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestHostKeyChecks(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	client := newKey(t, "ed25519")
	keyFile := writeKey(t, dir, "id", client, "")
	ed, rsaKey, ec, other := newKey(t, "ed25519"), newKey(t, "rsa"), newKey(t, "ecdsa"), newKey(t, "ed25519")
	ca, otherCA := newKey(t, "ed25519"), newKey(t, "ed25519")

	certSigner := func(ca keyPair, principals ...string) ssh.Signer {
		s, err := ssh.NewCertSigner(signCert(t, ca, ed.pub(), principals...), ed.signer)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	tests := []struct {
		name     string
		hostKeys []ssh.Signer
		lines    func(addr string) []string
		wantType string // type of the host key the dial must end up with
		check    func(t *testing.T, err error, file string)
	}{{
		name:     "[host]:port entry",
		hostKeys: []ssh.Signer{ed.signer},
		lines:    func(a string) []string { return []string{khLine(a, ed.pub())} },
		wantType: ssh.KeyAlgoED25519,
	}, {
		name:     "hashed entry",
		hostKeys: []ssh.Signer{ed.signer},
		lines: func(a string) []string {
			return []string{"# comment", khHashed("other.example.com:22", other.pub()), khHashed(a, ed.pub())}
		},
		wantType: ssh.KeyAlgoED25519,
	}, {
		name:     "wildcard pattern with port",
		hostKeys: []ssh.Signer{ed.signer},
		lines: func(a string) []string {
			return []string{strings.Replace(khLine(a, ed.pub()), "[127.0.0.1]", "[127.0.0.*]", 1)}
		},
		wantType: ssh.KeyAlgoED25519,
	}, {
		name:     "entry without port is for port 22 only",
		hostKeys: []ssh.Signer{ed.signer},
		lines:    func(a string) []string { return []string{khLine("127.0.0.1:22", ed.pub())} },
		check:    wantUnknown,
	}, {
		name:     "negated pattern",
		hostKeys: []ssh.Signer{ed.signer},
		lines: func(a string) []string {
			l := khLine(a, ed.pub())
			host := strings.Fields(l)[0]
			return []string{strings.Replace(host, "127.0.0.1", "127.0.0.*", 1) + ",!" + host + " " + strings.SplitN(l, " ", 2)[1]}
		},
		check: wantUnknown,
	}, {
		name:     "ed25519 known, server offers RSA and ECDSA too",
		hostKeys: []ssh.Signer{rsaKey.signer, ec.signer, ed.signer},
		lines:    func(a string) []string { return []string{khLine(a, ed.pub())} },
		wantType: ssh.KeyAlgoED25519,
	}, {
		name:     "RSA known, server offers ed25519 too",
		hostKeys: []ssh.Signer{ed.signer, rsaKey.signer},
		lines:    func(a string) []string { return []string{khLine(a, rsaKey.pub())} },
		wantType: ssh.KeyAlgoRSA,
	}, {
		name:     "@cert-authority and a CA-signed host certificate",
		hostKeys: []ssh.Signer{certSigner(ca, "127.0.0.1")},
		lines: func(a string) []string {
			return []string{"@cert-authority *.example.com " + authorizedKey(otherCA.pub()), "@cert-authority 127.0.0.1," + caHost(a) + " " + authorizedKey(ca.pub())}
		},
		wantType: ssh.CertAlgoED25519v01,
	}, {
		name:     "certificate from an unknown authority",
		hostKeys: []ssh.Signer{certSigner(otherCA, "127.0.0.1")},
		lines: func(a string) []string {
			return []string{"@cert-authority " + caHost(a) + " " + authorizedKey(ca.pub())}
		},
		check: func(t *testing.T, err error, file string) {
			wantStage(t, err, StageHostKey)
			if !strings.Contains(err.Error(), "host certificate") {
				t.Errorf("error %q should say the certificate was rejected", err)
			}
		},
	}, {
		name:     "certificate not valid for this host name",
		hostKeys: []ssh.Signer{certSigner(ca, "other.example.com")},
		lines: func(a string) []string {
			return []string{"@cert-authority " + caHost(a) + " " + authorizedKey(ca.pub())}
		},
		check: func(t *testing.T, err error, file string) { wantStage(t, err, StageHostKey) },
	}, {
		name:     "changed key",
		hostKeys: []ssh.Signer{ed.signer},
		lines:    func(a string) []string { return []string{khLine("other:22", other.pub()), khLine(a, other.pub())} },
		check: func(t *testing.T, err error, file string) {
			wantChanged(t, err, file, ssh.FingerprintSHA256(other.pub()), ssh.FingerprintSHA256(ed.pub()))
			if !strings.Contains(err.Error(), file+":2") {
				t.Errorf("error %q should point at line 2 of %s", err, file)
			}
		},
	}, {
		name:     "key of another type known: refused as changed",
		hostKeys: []ssh.Signer{ed.signer},
		lines:    func(a string) []string { return []string{khLine(a, rsaKey.pub())} },
		check: func(t *testing.T, err error, file string) {
			wantChanged(t, err, file, ssh.FingerprintSHA256(rsaKey.pub()), ssh.FingerprintSHA256(ed.pub()))
		},
	}, {
		name:     "@revoked",
		hostKeys: []ssh.Signer{ed.signer},
		lines:    func(a string) []string { return []string{khLine(a, ed.pub()), "@revoked * " + authorizedKey(ed.pub())} },
		check: func(t *testing.T, err error, file string) {
			wantStage(t, err, StageHostKey)
			if !errors.Is(err, ErrHostKeyRevoked) {
				t.Errorf("want ErrHostKeyRevoked, got %v", err)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startFakeServer(t, tt.hostKeys, client.pub())
			file := knownHostsFile(t, tt.lines(srv.addr())...)
			before, _ := os.ReadFile(file)
			c, err := dialOnce(t, Config{KnownHostsFile: file}, srv.target(keyFile))
			if tt.check != nil {
				if err == nil {
					t.Fatalf("dial succeeded, want an error")
				}
				if !IsUnreachable(err) {
					t.Errorf("IsUnreachable(%v) = false", err)
				}
				tt.check(t, err, file)
			} else {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				if got := c.HostKey().Type(); got != tt.wantType {
					t.Errorf("host key type %s, want %s", got, tt.wantType)
				}
			}
			if after, _ := os.ReadFile(file); string(after) != string(before) {
				t.Errorf("known_hosts changed without AcceptNew:\n%s", after)
			}
		})
	}
}

// caHost is the host pattern for addr. x/crypto's knownhosts matches ports
// exactly ("[host]:*" is no wildcard there), so the port is spelled out.
func caHost(addr string) string { return knownhosts.Normalize(addr) }

func authorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func wantStage(t *testing.T, err error, stage string) {
	t.Helper()
	var de *DialError
	if !errors.As(err, &de) {
		t.Fatalf("want a *DialError, got %T: %v", err, err)
	}
	if de.Stage != stage {
		t.Errorf("stage %q, want %q (%v)", de.Stage, stage, err)
	}
}

func wantUnknown(t *testing.T, err error, file string) {
	t.Helper()
	wantStage(t, err, StageHostKey)
	if !errors.Is(err, ErrHostKeyUnknown) {
		t.Errorf("want ErrHostKeyUnknown, got %v", err)
	}
	if !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "SHA256:") {
		t.Errorf("error %q should name %s and the offered fingerprint", err, file)
	}
}

func wantChanged(t *testing.T, err error, file, want, got string) {
	t.Helper()
	wantStage(t, err, StageHostKey)
	var ch *HostKeyChangedError
	if !errors.As(err, &ch) {
		t.Fatalf("want *HostKeyChangedError, got %v", err)
	}
	if ch.Got != got || len(ch.Want) != 1 || !strings.HasSuffix(ch.Want[0], want) {
		t.Errorf("changed error Want=%q Got=%q, want Want=[%s] Got=%s", ch.Want, ch.Got, want, got)
	}
	for _, s := range []string{want, got, file} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q lacks %q", err, s)
		}
	}
}

// -o StrictHostKeyChecking=no in the inventory must not let an unknown host
// through.
func TestStrictHostKeyCheckingNoIsIgnored(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	client, host := newKey(t, "ed25519"), newKey(t, "ed25519")
	keyFile := writeKey(t, t.TempDir(), "id", client, "")
	srv := startFakeServer(t, []ssh.Signer{host.signer}, client.pub())
	target, err := Resolve("web", map[string]any{
		"ansible_host": srv.host, "ansible_port": srv.port, "ansible_user": "tester",
		"ansible_ssh_private_key_file": keyFile,
		"ansible_ssh_common_args":      "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = dialOnce(t, Config{KnownHostsFile: knownHostsFile(t)}, target)
	wantUnknown(t, err, "known_hosts")
}

func TestAcceptNew(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	client, host := newKey(t, "ed25519"), newKey(t, "ed25519")
	keyFile := writeKey(t, t.TempDir(), "id", client, "")
	srv := startFakeServer(t, []ssh.Signer{host.signer}, client.pub())

	// No ~/.ssh yet: it is created 0700, the file 0600.
	sshDir := filepath.Join(t.TempDir(), ".ssh")
	file := filepath.Join(sshDir, "known_hosts")
	d, err := NewDialer(Config{KnownHostsFile: file, AcceptNew: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := d.Dial(ctx, srv.target(keyFile))
	if err != nil {
		t.Fatalf("first dial with AcceptNew: %v", err)
	}
	c.Close()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if want := khLine(srv.addr(), host.pub()) + "\n"; string(data) != want {
		t.Errorf("known_hosts is %q, want %q", data, want)
	}
	for p, mode := range map[string]os.FileMode{sshDir: 0o700 | os.ModeDir, file: 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v (%v)", p, fi.Mode(), mode, err)
		}
	}

	// The same Dialer knows the host from now on, without the file.
	os.Remove(file)
	c, err = d.Dial(ctx, srv.target(keyFile))
	if err != nil {
		t.Fatalf("second dial: %v", err)
	}
	c.Close()
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("second dial wrote the file again")
	}

	// A host that comes back with another key on the same address is
	// refused, even with AcceptNew.
	srv.stop()
	impostor := newKey(t, "ed25519")
	srv2 := startFakeServerOn(t, srv.addr(), []ssh.Signer{impostor.signer}, client.pub())
	_, err = d.Dial(ctx, srv2.target(keyFile))
	wantChanged(t, err, file, ssh.FingerprintSHA256(host.pub()), ssh.FingerprintSHA256(impostor.pub()))

	// And so it is when the old key is in the file.
	file2 := knownHostsFile(t, khLine(srv.addr(), host.pub()))
	before, _ := os.ReadFile(file2)
	_, err = dialOnce(t, Config{KnownHostsFile: file2, AcceptNew: true}, srv2.target(keyFile))
	wantChanged(t, err, file2, ssh.FingerprintSHA256(host.pub()), ssh.FingerprintSHA256(impostor.pub()))
	if after, _ := os.ReadFile(file2); string(after) != string(before) {
		t.Errorf("a changed key was written to known_hosts")
	}
}

func TestAcceptNewKeepsFileAndFollowsSymlink(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	client, host := newKey(t, "ed25519"), newKey(t, "ecdsa")
	keyFile := writeKey(t, t.TempDir(), "id", client, "")
	srv := startFakeServer(t, []ssh.Signer{host.signer}, client.pub())

	dir := t.TempDir()
	real := filepath.Join(dir, "real_known_hosts")
	old := "# managed elsewhere\nold.example.com " + authorizedKey(newKey(t, "ed25519").pub()) // no final newline
	os.WriteFile(real, []byte(old), 0o644)
	os.Chmod(real, 0o644)
	link := filepath.Join(dir, "known_hosts")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if _, err := dialOnce(t, Config{KnownHostsFile: link, AcceptNew: true, HashKnownHosts: true}, srv.target(keyFile)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced")
	}
	fi, _ := os.Stat(real)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644 kept", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(real)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 3 || lines[0]+"\n"+lines[1] != old || !strings.HasPrefix(lines[2], "|1|") {
		t.Fatalf("known_hosts is\n%s\nwant the old content and one hashed line", data)
	}
	// A fresh Dialer without AcceptNew accepts the host from the file.
	if _, err := dialOnce(t, Config{KnownHostsFile: link}, srv.target(keyFile)); err != nil {
		t.Fatalf("dial with the recorded key: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".known_hosts.*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// Fifty goroutines accepting fifty new hosts at once, and fifty more
// dialling one new host, leave a valid file with each host exactly once.
func TestAcceptNewConcurrent(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	client := newKey(t, "ed25519")
	keyFile := writeKey(t, t.TempDir(), "id", client, "")
	const n = 50
	servers := make([]*fakeServer, n)
	keys := make([]keyPair, n)
	for i := range servers {
		keys[i] = newKey(t, "ed25519")
		servers[i] = startFakeServer(t, []ssh.Signer{keys[i].signer}, client.pub())
	}
	shared := startFakeServer(t, []ssh.Signer{newKey(t, "ed25519").signer}, client.pub())

	pre := khLine("preexisting.example.com:22", newKey(t, "ed25519").pub())
	file := knownHostsFile(t, pre)
	d, err := NewDialer(Config{KnownHostsFile: file, AcceptNew: true})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := 0; i < n; i++ {
		for _, srv := range []*fakeServer{servers[i], shared} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := d.Dial(context.Background(), srv.target(keyFile))
				if err != nil {
					errs <- err
					return
				}
				c.Close()
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("dial: %v", err)
	}

	data, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != n+2 || lines[0] != pre {
		t.Errorf("known_hosts has %d lines (want %d, the pre-existing one first):\n%s", len(lines), n+2, data)
	}
	if _, err := knownhosts.New(file); err != nil {
		t.Fatalf("known_hosts no longer parses: %v", err)
	}
	fresh, err := NewDialer(Config{KnownHostsFile: file})
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range append(servers, shared) {
		c, err := fresh.Dial(context.Background(), srv.target(keyFile))
		if err != nil {
			t.Errorf("dial %s with the recorded keys: %v", srv.addr(), err)
			continue
		}
		c.Close()
	}
}

func TestAlgorithmsOrder(t *testing.T) {
	ed, rsaKey := newKey(t, "ed25519"), newKey(t, "rsa")
	file := knownHostsFile(t,
		khLine("a.example.com:22", rsaKey.pub()),
		khHashed("b.example.com:2222", ed.pub()),
		"@cert-authority *.ca.example.com "+authorizedKey(ed.pub()),
	)
	db, err := loadHostKeyDB(file, false, false)
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string][]string{
		"a.example.com:22":   {ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoED25519},
		"a.example.com:23":   {ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256},
		"b.example.com:2222": {ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256},
		"x.ca.example.com:22": {ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01,
			ssh.CertAlgoECDSA521v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.KeyAlgoED25519},
	} {
		got := db.algorithms(addr)
		if len(got) < len(want) || fmt.Sprint(got[:len(want)]) != fmt.Sprint(want) {
			t.Errorf("algorithms(%s) = %v, want it to start with %v", addr, got, want)
		}
		if !strings.Contains(addr, ".ca.") {
			for _, a := range got {
				if strings.Contains(a, "-cert-") {
					t.Errorf("algorithms(%s) offers %s with no @cert-authority for the host", addr, a)
				}
			}
		}
	}
}
