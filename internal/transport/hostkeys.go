package transport

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeyDB checks server host keys against one known_hosts file, loaded
// once. Verification itself is x/crypto's knownhosts (hashed entries,
// patterns, [host]:port, @cert-authority, @revoked); on top of it this adds
// the host key algorithm preference per host, and accept-new: keys of hosts
// never seen are appended to the file and remembered for the rest of the run.
// Safe for concurrent use.
type hostKeyDB struct {
	file      string
	acceptNew bool
	hash      bool                // write new entries with hashed host names
	check     ssh.HostKeyCallback // nil when the file does not exist yet
	hints     []hintLine

	mu       sync.Mutex
	accepted map[string]*acceptedKey // by known_hosts host ("name" or "[name]:port")
	pending  []*acceptedKey          // accepted, not yet written

	writeMu sync.Mutex // one writer at a time; it writes every pending entry
}

// hintLine is what algorithm selection needs from a known_hosts line.
type hintLine struct {
	ca      bool
	hosts   string // the host pattern field, as in the file
	keyType string
}

type acceptedKey struct {
	host string
	key  ssh.PublicKey
	line string
	done chan struct{} // closed once the line is written (or failed to be)
	err  error
}

func loadHostKeyDB(file string, acceptNew, hash bool) (*hostKeyDB, error) {
	db := &hostKeyDB{file: file, acceptNew: acceptNew, hash: hash, accepted: map[string]*acceptedKey{}}
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return db, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read known hosts: %w", err)
	}
	db.check, err = knownhosts.New(file)
	if err != nil {
		return nil, fmt.Errorf("known hosts %s: %w", file, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		var l hintLine
		switch f[0] {
		case "@cert-authority":
			l.ca, f = true, f[1:]
		case "@revoked":
			continue
		}
		if len(f) < 2 {
			continue
		}
		l.hosts, l.keyType = f[0], f[1]
		db.hints = append(db.hints, l)
	}
	return db, nil
}

// verify is the host key callback: hostname is the "host:port" we dialled.
func (db *hostKeyDB) verify(hostname string, remote net.Addr, key ssh.PublicKey) error {
	var err error = &knownhosts.KeyError{}
	if db.check != nil {
		err = db.check(hostname, remote, key)
	}
	if err == nil {
		return nil
	}
	host := knownhosts.Normalize(hostname)
	var keyErr *knownhosts.KeyError
	var revoked *knownhosts.RevokedError
	switch {
	case errors.As(err, &keyErr) && len(keyErr.Want) > 0:
		changed := &HostKeyChangedError{Host: host, Got: ssh.FingerprintSHA256(key), GotType: key.Type(), KnownHosts: db.file}
		for _, w := range keyErr.Want {
			changed.Want = append(changed.Want, w.Key.Type()+" "+ssh.FingerprintSHA256(w.Key))
			changed.Lines = append(changed.Lines, fmt.Sprintf("%s:%d", w.Filename, w.Line))
		}
		return changed
	case errors.As(err, &keyErr):
		return db.acceptOrRefuse(host, key)
	case errors.As(err, &revoked):
		return fmt.Errorf("%w: %s offers %s %s, marked @revoked at %s:%d",
			ErrHostKeyRevoked, host, key.Type(), ssh.FingerprintSHA256(key), revoked.Revoked.Filename, revoked.Revoked.Line)
	default:
		// A certificate that no known @cert-authority signed, or that is
		// expired or not valid for this host name.
		return fmt.Errorf("host certificate of %s rejected (known hosts %s): %w", host, db.file, err)
	}
}

// acceptOrRefuse handles a host that the file does not know.
func (db *hostKeyDB) acceptOrRefuse(host string, key ssh.PublicKey) error {
	db.mu.Lock()
	if e, ok := db.accepted[host]; ok {
		db.mu.Unlock()
		<-e.done
		if e.err != nil {
			return e.err
		}
		if bytes.Equal(e.key.Marshal(), key.Marshal()) {
			return nil
		}
		return &HostKeyChangedError{
			Host: host, Got: ssh.FingerprintSHA256(key), GotType: key.Type(), KnownHosts: db.file,
			Want:  []string{e.key.Type() + " " + ssh.FingerprintSHA256(e.key)},
			Lines: []string{"accepted earlier in this run"},
		}
	}
	if !db.acceptNew {
		db.mu.Unlock()
		return fmt.Errorf("%w: %s offers %s %s and is not in %s; check the fingerprint and add the key, or use --accept-new",
			ErrHostKeyUnknown, host, key.Type(), ssh.FingerprintSHA256(key), db.file)
	}
	name := host
	if db.hash {
		name = knownhosts.HashHostname(host)
	}
	e := &acceptedKey{host: host, key: key, done: make(chan struct{}),
		line: name + " " + key.Type() + " " + base64.StdEncoding.EncodeToString(key.Marshal())}
	db.accepted[host] = e
	db.pending = append(db.pending, e)
	db.mu.Unlock()

	db.flush()
	<-e.done
	return e.err
}

// flush writes every pending entry in one rewrite of the file, so that a
// first run against a thousand new hosts does not rewrite it a thousand
// times: while one goroutine writes, the others queue up for the next batch.
func (db *hostKeyDB) flush() {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	db.mu.Lock()
	batch := db.pending
	db.pending = nil
	db.mu.Unlock()
	if len(batch) == 0 {
		return // an earlier writer took ours
	}
	lines := make([]string, len(batch))
	for i, e := range batch {
		lines[i] = e.line
	}
	err := appendKnownHosts(db.file, lines)
	if err != nil {
		err = fmt.Errorf("record new host key in %s: %w", db.file, err)
	}
	for _, e := range batch {
		e.err = err
		close(e.done)
	}
}

// appendKnownHosts adds lines to a known_hosts file so that no crash or
// concurrent writer can leave it truncated: under a lock on its directory,
// the current content plus the new lines go to a temporary file in the same
// directory, which is synced and renamed over the file. A symlinked file is
// updated where it points. Lines already present are not added twice.
func appendKnownHosts(path string, lines []string) error {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return fmt.Errorf("lock %s: %w", dir, err)
	}
	defer unlock()

	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	mode := os.FileMode(0o600)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	var buf bytes.Buffer
	buf.Write(old)
	if len(old) > 0 && old[len(old)-1] != '\n' {
		buf.WriteByte('\n')
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(old), "\n") {
		have[strings.TrimSpace(l)] = true
	}
	for _, l := range lines {
		if !have[l] {
			buf.WriteString(l + "\n")
			have[l] = true
		}
	}

	tmp, err := os.CreateTemp(dir, ".known_hosts.*.tmp")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync() // make the rename itself durable; best effort
		d.Close()
	}
	return nil
}

// Host key algorithms, best first.
var (
	certHostKeyAlgos = []string{
		ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01,
		ssh.CertAlgoECDSA521v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
	}
	plainHostKeyAlgos = []string{
		ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384,
		ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
	}
)

// algorithms returns the host key algorithms to offer when dialling
// hostname ("host:port"): the ones of keys known for that host first, so
// the server presents a key we can check, then the rest. Certificate
// algorithms are offered only when an @cert-authority line matches the
// host, as a certificate from an unknown authority could never be accepted.
func (db *hostKeyDB) algorithms(hostname string) []string {
	host, port, err := net.SplitHostPort(hostname)
	if err != nil {
		return plainHostKeyAlgos
	}
	var known []string
	ca := false
	for _, l := range db.hints {
		if !matchKnownHost(l.hosts, host, port) {
			continue
		}
		if l.ca {
			ca = true
		} else {
			known = append(known, l.keyType)
		}
	}
	db.mu.Lock()
	if e, ok := db.accepted[knownhosts.Normalize(hostname)]; ok {
		known = append(known, e.key.Type())
	}
	db.mu.Unlock()

	supported := ssh.SupportedAlgorithms().HostKeys
	var algos []string
	add := func(a string) {
		if slices.Contains(supported, a) && !slices.Contains(algos, a) {
			algos = append(algos, a)
		}
	}
	if ca {
		for _, a := range certHostKeyAlgos {
			add(a)
		}
	}
	for _, t := range known {
		if t == ssh.KeyAlgoRSA {
			add(ssh.KeyAlgoRSASHA512)
			add(ssh.KeyAlgoRSASHA256)
			continue
		}
		add(t)
	}
	for _, a := range plainHostKeyAlgos {
		add(a)
	}
	return algos
}

// matchKnownHost reports whether a known_hosts host field matches host and
// port, with the rules of x/crypto's knownhosts: hashed names, comma
// separated patterns with * and ?, negation with !, [host]:port.
func matchKnownHost(field, host, port string) bool {
	if strings.HasPrefix(field, "|") {
		parts := strings.Split(field, "|")
		if len(parts) != 4 || parts[1] != "1" {
			return false
		}
		salt, err1 := base64.StdEncoding.DecodeString(parts[2])
		want, err2 := base64.StdEncoding.DecodeString(parts[3])
		if err1 != nil || err2 != nil {
			return false
		}
		mac := hmac.New(sha1.New, salt)
		mac.Write([]byte(knownhosts.Normalize(net.JoinHostPort(host, port))))
		return hmac.Equal(mac.Sum(nil), want)
	}
	matched := false
	for _, p := range strings.Split(field, ",") {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		if p == "" {
			continue
		}
		ph, pp, err := net.SplitHostPort(p)
		if err != nil {
			ph, pp = p, "22"
		}
		if pp == port && wildcardMatch(ph, host) {
			if neg {
				return false
			}
			matched = true
		}
	}
	return matched
}

func wildcardMatch(pat, s string) bool {
	for len(pat) > 0 {
		switch pat[0] {
		case '*':
			for i := 0; i <= len(s); i++ {
				if wildcardMatch(pat[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || pat[0] != s[0] {
				return false
			}
		}
		pat, s = pat[1:], s[1:]
	}
	return s == ""
}
