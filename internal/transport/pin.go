package transport

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// PortPin is what PinPort found, and did, for one extra SSH port of a host
// (the emergency sshd of secondary_sshd).
type PortPin struct {
	Host       string // the known_hosts name: "[127.0.0.5]:2222"
	KnownHosts string // the file
	Key        string // "ssh-ed25519 SHA256:…": the key the port presents
	Present    bool   // the file already listed that key for Host
	Recorded   bool   // this call added it
}

// ErrPortKeyMismatch means an extra port of a host presents a key other
// than the one verified on the host's own connection: it is never recorded.
var ErrPortKeyMismatch = errors.New("host key mismatch")

// errScanned ends a handshake once the host key is seen: a scan never
// authenticates.
var errScanned = errors.New("host key read")

// PinPort reads the host key that host:port presents (through t's jump
// hosts; the handshake stops at the host key, nothing authenticates) and
// checks it against want, the host key verified on t's own connection (nil:
// whatever known_hosts accepts for t's address). A different key is
// ErrPortKeyMismatch and is never recorded. When it matches and the
// known_hosts file does not list it for [host]:port yet, record adds that
// line (hashed when the file's entries are hashed, or HashKnownHosts is set)
// and the rest of the run trusts it; a file that lists another key for
// [host]:port is an error naming the line, and is left as it is.
func (d *Dialer) PinPort(ctx context.Context, t Target, host string, port int, want ssh.PublicKey, record bool) (PortPin, error) {
	hp := net.JoinHostPort(host, strconv.Itoa(port))
	pin := PortPin{Host: knownhosts.Normalize(hp), KnownHosts: d.cfg.KnownHostsFile}
	algos := d.hostKeys.algorithms(t.addr())
	if want != nil {
		algos = append(algorithmsOf(want.Type()), algos...)
	}
	key, remote, err := d.scanHostKey(ctx, t, hp, algos)
	if err != nil {
		return pin, err
	}
	pin.Key = key.Type() + " " + ssh.FingerprintSHA256(key)
	if want != nil {
		if !bytes.Equal(key.Marshal(), want.Marshal()) {
			return pin, fmt.Errorf("%w: %s presents %s, but the key verified on %s is %s %s; not recorded in %s",
				ErrPortKeyMismatch, pin.Host, pin.Key, t.addr(), want.Type(), ssh.FingerprintSHA256(want), d.cfg.KnownHostsFile)
		}
	} else if err := d.hostKeys.known(t.addr(), remote, key); err != nil {
		return pin, fmt.Errorf("%w: %s presents %s, which %s does not list for %s (%v); not recorded",
			ErrPortKeyMismatch, pin.Host, pin.Key, d.cfg.KnownHostsFile, t.addr(), err)
	}
	switch err := d.hostKeys.known(hp, remote, key); {
	case err == nil:
		pin.Present = true
		return pin, nil
	case errors.Is(err, ErrHostKeyUnknown):
	default:
		return pin, err
	}
	if !record {
		return pin, nil
	}
	if err := d.hostKeys.record(pin.Host, key); err != nil {
		return pin, err
	}
	pin.Recorded = true
	return pin, nil
}

// algorithmsOf lists the host key algorithms that make a server present a
// key of type keyType.
func algorithmsOf(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	return []string{keyType}
}

// known checks key against the file and what this run accepted, without
// ever accepting: nil when listed, an error wrapping ErrHostKeyUnknown when
// the host is not listed, *HostKeyChangedError when another key is.
func (db *hostKeyDB) known(hostname string, remote net.Addr, key ssh.PublicKey) error {
	host := knownhosts.Normalize(hostname)
	db.mu.Lock()
	e, ok := db.accepted[host]
	db.mu.Unlock()
	if ok {
		<-e.done
		if e.err == nil && bytes.Equal(e.key.Marshal(), key.Marshal()) {
			return nil
		}
	}
	if db.check == nil {
		return fmt.Errorf("%w: %s is not in %s", ErrHostKeyUnknown, host, db.file)
	}
	err := db.check(hostname, remote, key)
	var keyErr *knownhosts.KeyError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &keyErr) && len(keyErr.Want) == 0:
		return fmt.Errorf("%w: %s is not in %s", ErrHostKeyUnknown, host, db.file)
	case errors.As(err, &keyErr):
		changed := &HostKeyChangedError{Host: host, Got: ssh.FingerprintSHA256(key), GotType: key.Type(), KnownHosts: db.file}
		for _, w := range keyErr.Want {
			changed.Want = append(changed.Want, w.Key.Type()+" "+ssh.FingerprintSHA256(w.Key))
			changed.Lines = append(changed.Lines, fmt.Sprintf("%s:%d", w.Filename, w.Line))
		}
		return changed
	}
	return fmt.Errorf("%s: %w", host, err)
}

// hashed reports whether new entries should be written hashed: when asked
// to, or when every host entry of the file is hashed (the user ran
// HashKnownHosts, and a plain line would give away a host name).
func (db *hostKeyDB) hashed() bool {
	if db.hash {
		return true
	}
	n := 0
	for _, l := range db.hints {
		if l.ca {
			continue
		}
		if !strings.HasPrefix(l.hosts, "|1|") {
			return false
		}
		n++
	}
	return n > 0
}

// record appends host (a known_hosts name) with key to the file and trusts
// it for the rest of the run.
func (db *hostKeyDB) record(host string, key ssh.PublicKey) error {
	name := host
	if db.hashed() {
		name = knownhosts.HashHostname(host)
	}
	line := name + " " + key.Type() + " " + base64.StdEncoding.EncodeToString(key.Marshal())
	db.writeMu.Lock()
	err := appendKnownHosts(db.file, []string{line})
	db.writeMu.Unlock()
	if err != nil {
		return fmt.Errorf("record %s in %s: %w", host, db.file, err)
	}
	e := &acceptedKey{host: host, key: key, line: line, done: make(chan struct{})}
	close(e.done)
	db.mu.Lock()
	db.accepted[host] = e
	db.mu.Unlock()
	return nil
}

// scanHostKey runs an SSH handshake with hostport, through t's jump hosts
// when it has any, until the server presents its host key, and returns it.
func (d *Dialer) scanHostKey(ctx context.Context, t Target, hostport string, algos []string) (ssh.PublicKey, net.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.ConnectTimeout)
	defer cancel()
	var conn net.Conn
	var err error
	hops := flattenJumps(t)
	if len(hops) > 1 {
		last := hops[len(hops)-2]
		last.Jumps = hops[:len(hops)-2]
		jc, err := d.Dial(ctx, last)
		if err != nil {
			return nil, nil, fmt.Errorf("read the host key of %s: %w", hostport, err)
		}
		defer jc.Close()
		conn, err = jc.ssh.DialContext(ctx, "tcp", hostport)
		if err != nil {
			return nil, nil, fmt.Errorf("read the host key of %s through %s: %w", hostport, last.label(), err)
		}
	} else {
		var nd net.Dialer
		if conn, err = nd.DialContext(ctx, "tcp", hostport); err != nil {
			return nil, nil, fmt.Errorf("read the host key of %s: %w", hostport, err)
		}
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var mu sync.Mutex
	var key ssh.PublicKey
	cfg := &ssh.ClientConfig{
		Config: ssh.Config{KeyExchanges: kexAlgos, Ciphers: cipherAlgos},
		User:   "breakglass-hostkey",
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			mu.Lock()
			defer mu.Unlock()
			if key == nil {
				key = k
			}
			return errScanned
		},
		HostKeyAlgorithms: algos,
		ClientVersion:     "SSH-2.0-breakglass",
	}
	c, _, _, err := ssh.NewClientConn(conn, hostport, cfg)
	if c != nil {
		c.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if key == nil {
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("read the host key of %s: no answer within %s", hostport, d.cfg.ConnectTimeout)
		}
		return nil, nil, fmt.Errorf("read the host key of %s: %w", hostport, err)
	}
	return key, conn.RemoteAddr(), nil
}
