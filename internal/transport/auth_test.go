package transport

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// startAgent serves an in-process ssh-agent holding keys and points
// SSH_AUTH_SOCK at it.
func startAgent(t *testing.T, keys ...keyPair) {
	t.Helper()
	kr := agent.NewKeyring()
	for _, k := range keys {
		if err := kr.Add(agent.AddedKey{PrivateKey: k.priv}); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				agent.ServeAgent(kr, c)
			}()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
}

func TestAuthKeySelection(t *testing.T) {
	host := newKey(t, "ed25519")
	good, bad, agentOnly := newKey(t, "ed25519"), newKey(t, "ecdsa"), newKey(t, "ed25519")
	dir := t.TempDir()
	goodFile := writeKey(t, dir, "good", good, "")
	badFile := writeKey(t, dir, "bad", bad, "")
	encFile := writeKey(t, dir, "encrypted", good, "s3cret")

	tests := []struct {
		name       string
		agent      []keyPair
		authorized []ssh.PublicKey
		target     func(Target) Target
		passphrase func(string) ([]byte, error)
		wantKey    ssh.PublicKey // the key PublicKey() must report
		wantErr    []string      // or a login error containing these
	}{{
		name:       "second identity file is the accepted one",
		authorized: []ssh.PublicKey{good.pub()},
		target:     func(t Target) Target { t.IdentityFiles = []string{badFile, goodFile}; return t },
		wantKey:    good.pub(),
	}, {
		name:       "agent key",
		agent:      []keyPair{bad, agentOnly},
		authorized: []ssh.PublicKey{agentOnly.pub()},
		target:     func(t Target) Target { t.NoAgent = false; t.IdentityFiles = []string{badFile}; return t },
		wantKey:    agentOnly.pub(),
	}, {
		name:       "NoAgent leaves the agent alone",
		agent:      []keyPair{agentOnly},
		authorized: []ssh.PublicKey{agentOnly.pub()},
		target:     func(t Target) Target { t.IdentityFiles = []string{badFile}; return t },
		wantErr:    []string{"no key accepted for tester", badFile},
	}, {
		name:       "IdentitiesOnly offers no other agent key",
		agent:      []keyPair{agentOnly},
		authorized: []ssh.PublicKey{agentOnly.pub()},
		target: func(t Target) Target {
			t.NoAgent, t.IdentitiesOnly, t.IdentityFiles = false, true, []string{badFile}
			return t
		},
		wantErr: []string{"no key accepted"},
	}, {
		name:       "encrypted key without a way to ask: clear error",
		authorized: []ssh.PublicKey{good.pub()},
		target:     func(t Target) Target { t.IdentityFiles = []string{encFile}; return t },
		wantErr:    []string{"key " + encFile + " is encrypted: load it into ssh-agent or run on a terminal"},
	}, {
		name:       "encrypted key held by the agent needs no passphrase",
		agent:      []keyPair{good},
		authorized: []ssh.PublicKey{good.pub()},
		target:     func(t Target) Target { t.NoAgent, t.IdentityFiles = false, []string{encFile}; return t },
		passphrase: func(string) ([]byte, error) { return nil, errors.New("must not be asked") },
		wantKey:    good.pub(),
	}, {
		name:       "encrypted key with a passphrase",
		authorized: []ssh.PublicKey{good.pub()},
		target:     func(t Target) Target { t.IdentityFiles = []string{encFile}; return t },
		passphrase: func(string) ([]byte, error) { return []byte("s3cret"), nil },
		wantKey:    good.pub(),
	}, {
		name:       "wrong passphrase",
		authorized: []ssh.PublicKey{good.pub()},
		target:     func(t Target) Target { t.IdentityFiles = []string{encFile}; return t },
		passphrase: func(string) ([]byte, error) { return []byte("nope"), nil },
		wantErr:    []string{"decrypt " + encFile},
	}, {
		name:       "missing identity file is named",
		authorized: []ssh.PublicKey{good.pub()},
		target:     func(t Target) Target { t.IdentityFiles = []string{filepath.Join(dir, "absent"), badFile}; return t },
		wantErr:    []string{filepath.Join(dir, "absent")},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SSH_AUTH_SOCK", "")
			if tt.agent != nil {
				startAgent(t, tt.agent...)
			}
			srv := startFakeServer(t, []ssh.Signer{host.signer}, tt.authorized...)
			file := knownHostsFile(t, khLine(srv.addr(), host.pub()))
			var asked atomic.Int32
			cfg := Config{KnownHostsFile: file}
			if tt.passphrase != nil {
				cfg.Passphrase = func(f string) ([]byte, error) { asked.Add(1); return tt.passphrase(f) }
			}
			d, err := NewDialer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			target := tt.target(srv.target(""))
			for i := 0; i < 2; i++ { // twice: the key cache must give the same answer
				c, err := d.Dial(context.Background(), target)
				if tt.wantErr != nil {
					if err == nil {
						t.Fatal("dial succeeded, want a login error")
					}
					wantStage(t, err, StageAuth)
					for _, s := range tt.wantErr {
						if !strings.Contains(err.Error(), s) {
							t.Errorf("error %q lacks %q", err, s)
						}
					}
					continue
				}
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				if got := c.PublicKey(); got == nil || !bytes.Equal(got.Marshal(), tt.wantKey.Marshal()) {
					t.Errorf("PublicKey() = %v, want %s", got, ssh.FingerprintSHA256(tt.wantKey))
				}
				c.Close()
			}
			if asked.Load() > 1 {
				t.Errorf("passphrase asked %d times, want at most once per Dialer", asked.Load())
			}
		})
	}
}

// A server that accepts TCP and never speaks must not hold Dial beyond the
// connect timeout, nor beyond the caller's context.
func TestDialTimeouts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	target := Target{Name: "mute", Host: "127.0.0.1", Port: port, User: "x", NoAgent: true}
	file := knownHostsFile(t)

	d, _ := NewDialer(Config{KnownHostsFile: file, ConnectTimeout: 300 * time.Millisecond})
	start := time.Now()
	_, err = d.Dial(context.Background(), target)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Dial took %v with a 300ms connect timeout", took)
	}
	if err == nil || !strings.Contains(err.Error(), "no answer within 300ms") || !IsUnreachable(err) {
		t.Errorf("want an unreachable 'no answer within 300ms' error, got %v", err)
	}

	d, _ = NewDialer(Config{KnownHostsFile: file, ConnectTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = d.Dial(ctx, target)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Dial took %v with a 300ms context", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("want context.DeadlineExceeded, got %v", err)
	}

	ln.Close()
	_, err = d.Dial(context.Background(), target)
	wantStage(t, err, StageConnect)
}
