package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// keyCache parses each private key file once per Dialer, however many hosts
// use it.
type keyCache struct {
	passphrase func(keyFile string) ([]byte, error)
	promptMu   sync.Mutex // one passphrase prompt at a time

	mu   sync.Mutex
	keys map[string]*cachedKey
}

type cachedKey struct {
	path string

	loadOnce  sync.Once
	signer    ssh.Signer       // nil while encrypted
	pub       ssh.PublicKey    // known for encrypted keys too, when the file or its .pub says
	cert      *ssh.Certificate // from <path>-cert.pub, as ssh loads it
	encrypted []byte           // the file, when it needs a passphrase
	err       error            // the file could not be read or parsed

	decryptOnce sync.Once
	decrypted   ssh.Signer
	decryptErr  error
}

func (c *keyCache) get(path string) *cachedKey {
	c.mu.Lock()
	if c.keys == nil {
		c.keys = map[string]*cachedKey{}
	}
	k, ok := c.keys[path]
	if !ok {
		k = &cachedKey{path: path}
		c.keys[path] = k
	}
	c.mu.Unlock()
	k.loadOnce.Do(k.load)
	return k
}

func (k *cachedKey) load() {
	data, err := os.ReadFile(k.path)
	if err != nil {
		k.err = err
		return
	}
	signer, err := ssh.ParsePrivateKey(data)
	var missing *ssh.PassphraseMissingError
	switch {
	case err == nil:
		k.signer, k.pub = signer, signer.PublicKey()
	case errors.As(err, &missing):
		k.encrypted, k.pub = data, missing.PublicKey
		if k.pub == nil {
			k.pub = readPublicKey(k.path + ".pub")
		}
	default:
		k.err = fmt.Errorf("parse private key %s: %w", k.path, err)
		return
	}
	if c, ok := readPublicKey(k.path + "-cert.pub").(*ssh.Certificate); ok && k.pub != nil &&
		bytes.Equal(c.Key.Marshal(), k.pub.Marshal()) {
		k.cert = c
	}
}

func readPublicKey(path string) ssh.PublicKey {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil
	}
	return pub
}

// decrypt asks for the key's passphrase once per Dialer.
func (c *keyCache) decrypt(k *cachedKey) (ssh.Signer, error) {
	k.decryptOnce.Do(func() {
		c.promptMu.Lock()
		defer c.promptMu.Unlock()
		pass, err := c.passphrase(k.path)
		if err != nil {
			k.decryptErr = fmt.Errorf("passphrase for %s: %w", k.path, err)
			return
		}
		k.decrypted, err = ssh.ParsePrivateKeyWithPassphrase(k.encrypted, pass)
		clear(pass)
		if err != nil {
			k.decryptErr = fmt.Errorf("decrypt %s: %w", k.path, err)
		}
	})
	return k.decrypted, k.decryptErr
}

// defaultIdentityFiles are the keys ssh tries when none is configured.
func defaultIdentityFiles() []string {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil
	}
	var files []string
	for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		files = append(files, filepath.Join(home, ".ssh", n))
	}
	return files
}

// authState is one handshake's view of authentication: the keys offered,
// why others were not, and which one the server accepted.
type authState struct {
	deadline time.Time // for talking to the agent, which knows no context

	mu       sync.Mutex
	called   bool
	offered  []string
	notes    []string
	lastSign ssh.PublicKey
	closers  []io.Closer
}

func (a *authState) signed(k ssh.PublicKey) {
	a.mu.Lock()
	a.lastSign = k
	a.mu.Unlock()
}

func (a *authState) wasCalled() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.called
}

func (a *authState) accepted() ssh.PublicKey {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastSign
}

func (a *authState) close() {
	for _, c := range a.closers {
		c.Close()
	}
}

// signers lists the keys to offer for t, in ssh's order: agent keys that
// are also identity files, then the agent's other keys (unless
// IdentitiesOnly), then identity files the agent does not hold. Each signer
// records its use, so that the key the server accepted is known afterwards.
func (d *Dialer) signers(t Target, st *authState) []ssh.Signer {
	st.mu.Lock()
	st.called = true
	st.mu.Unlock()

	var agentSigners []ssh.Signer
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" && !t.NoAgent {
		conn, err := net.DialTimeout("unix", sock, 5*time.Second)
		if err == nil {
			st.closers = append(st.closers, conn)
			conn.SetDeadline(st.deadline)
			agentSigners, err = agent.NewClient(conn).Signers()
		}
		if err != nil {
			st.notes = append(st.notes, fmt.Sprintf("ssh-agent: %v", err))
		}
	}

	files, explicit := t.IdentityFiles, true
	if len(files) == 0 {
		files, explicit = d.defaultKeys, false
	}
	var first, last []ssh.Signer
	usedAgent := map[int]bool{}
	for _, f := range files {
		k := d.keys.get(f)
		if k.err != nil {
			var pe *os.PathError
			switch {
			case !explicit && errors.Is(k.err, os.ErrNotExist):
			case errors.As(k.err, &pe):
				st.notes = append(st.notes, fmt.Sprintf("identity file %s: %v", f, pe.Err))
			default:
				st.notes = append(st.notes, k.err.Error())
			}
			continue
		}
		agentIdx := -1
		for i, s := range agentSigners {
			if k.pub != nil && bytes.Equal(s.PublicKey().Marshal(), k.pub.Marshal()) {
				agentIdx = i
				break
			}
		}
		var s ssh.Signer
		switch {
		case agentIdx >= 0:
			s = agentSigners[agentIdx]
			usedAgent[agentIdx] = true
		case k.signer != nil:
			s = k.signer
		case d.keys.passphrase == nil:
			st.notes = append(st.notes, fmt.Sprintf("key %s is encrypted: load it into ssh-agent or run on a terminal", f))
			continue
		default:
			var err error
			if s, err = d.keys.decrypt(k); err != nil {
				st.notes = append(st.notes, err.Error())
				continue
			}
		}
		var group []ssh.Signer
		if k.cert != nil {
			if cs, err := ssh.NewCertSigner(k.cert, s); err == nil {
				group = append(group, cs)
			}
		}
		group = append(group, s)
		for _, g := range group {
			st.offered = append(st.offered, fmt.Sprintf("%s %s", f, ssh.FingerprintSHA256(g.PublicKey())))
		}
		if agentIdx >= 0 {
			first = append(first, group...)
		} else {
			last = append(last, group...)
		}
	}
	var all []ssh.Signer
	all = append(all, first...)
	if !t.IdentitiesOnly {
		for i, s := range agentSigners {
			if !usedAgent[i] {
				all = append(all, s)
				st.offered = append(st.offered, "agent key "+ssh.FingerprintSHA256(s.PublicKey()))
			}
		}
	}
	all = append(all, last...)
	for i, s := range all {
		all[i] = recordUse(s, st)
	}
	return all
}

// authError explains a failed login.
func (st *authState) authError(user string, err error) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	var b strings.Builder
	if len(st.offered) == 0 {
		fmt.Fprintf(&b, "no key to offer as %s", user)
	} else {
		fmt.Fprintf(&b, "no key accepted for %s (offered: %s)", user, strings.Join(st.offered, ", "))
	}
	for _, n := range st.notes {
		b.WriteString("; " + n)
	}
	return fmt.Errorf("%s: %w", b.String(), err)
}

// recordUse wraps a signer so that st learns which key signed last: x/crypto
// asks the server whether it would accept a key before signing with it, so
// the last key to sign in a successful login is the one accepted. The
// wrapper keeps the signer's algorithm capabilities (rsa-sha2-*).
func recordUse(s ssh.Signer, st *authState) ssh.Signer {
	r := &recSigner{Signer: s, st: st}
	switch s := s.(type) {
	case ssh.MultiAlgorithmSigner:
		return &recMultiSigner{recAlgSigner{r, s}, s}
	case ssh.AlgorithmSigner:
		return &recAlgSigner{r, s}
	default:
		return r
	}
}

type recSigner struct {
	ssh.Signer
	st *authState
}

func (r *recSigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	r.st.signed(r.PublicKey())
	return r.Signer.Sign(rand, data)
}

type recAlgSigner struct {
	*recSigner
	alg ssh.AlgorithmSigner
}

func (r *recAlgSigner) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	r.st.signed(r.PublicKey())
	return r.alg.SignWithAlgorithm(rand, data, algorithm)
}

type recMultiSigner struct {
	recAlgSigner
	multi ssh.MultiAlgorithmSigner
}

func (r *recMultiSigner) Algorithms() []string { return r.multi.Algorithms() }
