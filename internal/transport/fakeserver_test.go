package transport

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// This file holds an in-process SSH server (x/crypto's) for unit tests of
// our own logic: host key checks, accept-new, key selection. Everything
// about running commands is tested against the real sshd.

type keyPair struct {
	priv   crypto.Signer
	signer ssh.Signer
}

func (k keyPair) pub() ssh.PublicKey { return k.signer.PublicKey() }

func newKey(t testing.TB, kind string) keyPair {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch kind {
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "ecdsa":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{priv: priv, signer: s}
}

// writeKey writes k as an OpenSSH private key file (encrypted when
// passphrase is not empty) and its .pub beside it.
func writeKey(t testing.TB, dir, name string, k keyPair, passphrase string) string {
	t.Helper()
	var block *pem.Block
	var err error
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(k.priv, "test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(k.priv, "test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+".pub", ssh.MarshalAuthorizedKey(k.pub()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type fakeServer struct {
	host string
	port int
	mu   sync.Mutex
	auth []string // user + " " + fingerprint of each key that logged in
	stop func()
}

func (s *fakeServer) addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

func (s *fakeServer) target(keyFile string) Target {
	return Target{Name: "fake", Host: s.host, Port: s.port, User: "tester", IdentityFiles: []string{keyFile}, NoAgent: true}
}

// startFakeServer serves SSH on 127.0.0.1 with the given host keys,
// accepting logins with the authorized keys. Sessions run nothing and exit 0.
func startFakeServer(t testing.TB, hostKeys []ssh.Signer, authorized ...ssh.PublicKey) *fakeServer {
	t.Helper()
	return startFakeServerOn(t, "127.0.0.1:0", hostKeys, authorized...)
}

// startFakeServerOn is startFakeServer on a given address; stop it with the
// returned server's stop.
func startFakeServerOn(t testing.TB, addr string, hostKeys []ssh.Signer, authorized ...ssh.PublicKey) *fakeServer {
	t.Helper()
	srv := &fakeServer{host: "127.0.0.1"}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(c ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			for _, a := range authorized {
				if bytes.Equal(a.Marshal(), k.Marshal()) {
					srv.mu.Lock()
					srv.auth = append(srv.auth, c.User()+" "+ssh.FingerprintSHA256(k))
					srv.mu.Unlock()
					return nil, nil
				}
			}
			return nil, errors.New("not authorized")
		},
	}
	for _, k := range hostKeys {
		cfg.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv.port = ln.Addr().(*net.TCPAddr).Port
	var conns sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	var once sync.Once
	srv.stop = func() {
		once.Do(func() {
			ln.Close()
			mu.Lock()
			for _, c := range open {
				c.Close()
			}
			mu.Unlock()
			conns.Wait()
		})
	}
	t.Cleanup(srv.stop)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			conns.Add(1)
			go func() {
				defer conns.Done()
				serveFake(c, cfg)
			}()
		}
	}()
	return srv
}

func serveFake(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.Prohibited, "only sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go func() {
			for r := range creqs {
				if r.Type != "exec" {
					r.Reply(false, nil)
					continue
				}
				r.Reply(true, nil)
				ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
				ch.Close()
			}
		}()
	}
}

// knownHostsFile writes lines to a new known_hosts file.
func knownHostsFile(t testing.TB, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	text := ""
	if len(lines) > 0 {
		text = strings.Join(lines, "\n") + "\n"
	}
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// khLine is the known_hosts line for addr ("host:port") and key.
func khLine(addr string, key ssh.PublicKey) string { return knownhosts.Line([]string{addr}, key) }

// khHashed is the same line with the host name hashed.
func khHashed(addr string, key ssh.PublicKey) string {
	return knownhosts.HashHostname(knownhosts.Normalize(addr)) + " " + key.Type() + " " +
		base64.StdEncoding.EncodeToString(key.Marshal())
}
