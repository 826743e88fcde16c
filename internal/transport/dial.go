// Package transport connects to hosts over SSH and runs commands on them.
//
// Resolve turns an inventory host's variables and ~/.ssh/config into a
// Target. A Dialer is shared by every host of a run: it loads known_hosts and
// parses key files once. A Client is one SSH connection, possibly through
// jump hosts, on which any number of commands run, each in its own session.
// Become runs commands as root through sudo.
//
// Choices made here:
//   - Host keys are always verified against one OpenSSH known_hosts file
//     (x/crypto's knownhosts: hashed names, patterns, [host]:port,
//     @cert-authority, @revoked); there is no way to skip that. The host key
//     algorithms offered put those of the keys known for the host first, so
//     a server with several keys presents the one we can check; certificate
//     algorithms are offered only where an @cert-authority line applies.
//   - AcceptNew records a new host by rewriting known_hosts through a
//     temporary file and a rename, under a lock on its directory, batching
//     the hosts accepted at the same moment into one write.
//   - Keys are offered in ssh's order: identity files the agent holds, the
//     agent's other keys (not with IdentitiesOnly), other identity files.
//     The key the server accepted is known (Client.PublicKey), so that a
//     change never removes the key a run is connected with.
//   - Key exchange prefers curve25519-sha256, ciphers AES-GCM and
//     ChaCha20-Poly1305: the cheapest handshakes and transfers.
//   - A cancelled command gets SIGTERM and its session is closed; a
//     connection that stops answering keepalives is closed, and Run reports
//     ErrConnectionLost.
package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Config configures a Dialer.
type Config struct {
	KnownHostsFile string        // "" → ~/.ssh/known_hosts
	AcceptNew      bool          // record keys of hosts never seen; a changed key is always refused
	HashKnownHosts bool          // write recorded hosts hashed, as ssh's HashKnownHosts=yes
	ConnectTimeout time.Duration // per hop, TCP connect and SSH handshake; default 10s
	Keepalive      time.Duration // keepalive@openssh.com interval; default 15s, negative disables; 3 missed → connection closed
	// Passphrase is asked for the passphrase of an encrypted key file that
	// the agent does not hold, once per file. nil → such a key is skipped
	// and a failed login says so.
	Passphrase func(keyFile string) ([]byte, error)
}

// Dialer opens SSH connections. It is safe for concurrent use.
type Dialer struct {
	cfg         Config
	hostKeys    *hostKeyDB
	keys        keyCache
	defaultKeys []string
}

// NewDialer loads the known_hosts file (a missing file is an empty one).
func NewDialer(cfg Config) (*Dialer, error) {
	if cfg.KnownHostsFile == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("find known hosts file: %w", err)
		}
		cfg.KnownHostsFile = filepath.Join(home, ".ssh", "known_hosts")
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.Keepalive == 0 {
		cfg.Keepalive = 15 * time.Second
	}
	db, err := loadHostKeyDB(cfg.KnownHostsFile, cfg.AcceptNew, cfg.HashKnownHosts)
	if err != nil {
		return nil, err
	}
	return &Dialer{
		cfg:         cfg,
		hostKeys:    db,
		keys:        keyCache{passphrase: cfg.Passphrase},
		defaultKeys: defaultIdentityFiles(),
	}, nil
}

// Algorithms offered, fastest first.
var (
	kexAlgos = []string{
		ssh.KeyExchangeCurve25519, ssh.KeyExchangeMLKEM768X25519,
		ssh.KeyExchangeECDHP256, ssh.KeyExchangeECDHP384, ssh.KeyExchangeECDHP521,
		ssh.KeyExchangeDH14SHA256, ssh.KeyExchangeDH16SHA512, ssh.KeyExchangeDHGEXSHA256,
	}
	cipherAlgos = []string{
		ssh.CipherAES128GCM, ssh.CipherChaCha20Poly1305, ssh.CipherAES256GCM,
		ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR,
	}
)

// Dial connects to t, through its jump hosts if any, verifying every hop's
// host key against known_hosts under that hop's own name and port. ctx
// bounds the whole dial; each hop also has Config.ConnectTimeout.
func (d *Dialer) Dial(ctx context.Context, t Target) (*Client, error) {
	hops := flattenJumps(t)

	var clients []*ssh.Client
	closeAll := func() {
		for i := len(clients) - 1; i >= 0; i-- {
			clients[i].Close()
		}
	}
	var (
		conn     net.Conn
		accepted ssh.PublicKey
		hostKey  ssh.PublicKey
	)
	for i, h := range hops {
		hopName := ""
		if i < len(hops)-1 {
			hopName = h.label()
		}
		fail := func(stage string, err error) (*Client, error) {
			closeAll()
			return nil, &DialError{Target: t.label(), Hop: hopName, Stage: stage, Err: err}
		}
		if err := validHost(h.Host); err != nil {
			return fail(StageConnect, err)
		}
		hctx, cancel := context.WithTimeout(ctx, d.cfg.ConnectTimeout)
		var err error
		if i == 0 {
			var nd net.Dialer
			conn, err = nd.DialContext(hctx, "tcp", h.addr())
			if f := connHook(ctx); err == nil && f != nil && len(hops) == 1 {
				f(conn.LocalAddr())
			}
		} else {
			conn, err = clients[i-1].DialContext(hctx, "tcp", h.addr())
			if err != nil && ctx.Err() == nil && hctx.Err() == nil {
				err = fmt.Errorf("%s cannot reach %s: %w", hops[i-1].label(), h.addr(), err)
			}
		}
		if err != nil {
			err = d.timeoutErr(ctx, hctx, h, err)
			cancel()
			return fail(StageConnect, err)
		}
		c, acc, hk, stage, err := d.handshake(hctx, conn, h)
		if err != nil {
			err = d.timeoutErr(ctx, hctx, h, err)
		}
		cancel()
		if err != nil {
			return fail(stage, err)
		}
		clients = append(clients, c)
		accepted, hostKey = acc, hk
	}
	cl := &Client{
		target:  t,
		ssh:     clients[len(clients)-1],
		hops:    clients[:len(clients)-1],
		conn:    conn,
		pub:     accepted,
		hostKey: hostKey,
		timeout: d.cfg.ConnectTimeout,
		done:    make(chan struct{}),
	}
	go func() {
		err := cl.ssh.Wait()
		if err == nil {
			err = errors.New("closed by the server")
		}
		cl.finish(fmt.Errorf("%w: %v", ErrConnectionLost, err))
	}()
	if d.cfg.Keepalive > 0 {
		go cl.keepalive(d.cfg.Keepalive)
	}
	return cl, nil
}

// flattenJumps lists the hops to t in dialling order, t last; a jump host
// with jump hosts of its own is reached through them.
func flattenJumps(t Target) []Target {
	var hops []Target
	for _, j := range t.Jumps {
		hops = append(hops, flattenJumps(j)...)
	}
	t.Jumps = nil
	return append(hops, t)
}

// timeoutErr makes a hop's timeout say so, and keeps the caller's context
// error recognisable.
func (d *Dialer) timeoutErr(ctx, hctx context.Context, h Target, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", h.addr(), ctx.Err())
	case hctx.Err() != nil:
		return fmt.Errorf("%s: no answer within %s", h.addr(), d.cfg.ConnectTimeout)
	}
	return err
}

// handshake runs the SSH handshake and login on conn; it closes conn when
// ctx ends first, since x/crypto's handshake takes no context.
func (d *Dialer) handshake(ctx context.Context, conn net.Conn, h Target) (c *ssh.Client, accepted, hostKey ssh.PublicKey, stage string, err error) {
	addr := h.addr()
	st := &authState{}
	st.deadline, _ = ctx.Deadline()
	defer st.close()
	// What the host key callback saw. x/crypto calls it from its own
	// goroutine, again on every re-key.
	var hk struct {
		sync.Mutex
		key ssh.PublicKey
		err error
		ok  bool
	}
	user := h.User
	if user == "" {
		user = localUser()
	}
	cfg := &ssh.ClientConfig{
		Config: ssh.Config{KeyExchanges: kexAlgos, Ciphers: cipherAlgos},
		User:   user,
		Auth: []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			return d.signers(h, st), nil
		})},
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			err := d.hostKeys.verify(hostname, remote, key)
			hk.Lock()
			defer hk.Unlock()
			if hk.key == nil {
				hk.key, hk.err, hk.ok = key, err, err == nil
			}
			return err
		},
		HostKeyAlgorithms: d.hostKeys.algorithms(addr),
		ClientVersion:     "SSH-2.0-breakglass",
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if !stop() {
		// ctx ended during the handshake and closed conn.
		if err == nil {
			sc.Close()
		}
		return nil, nil, nil, StageHandshake, ctx.Err()
	}
	hk.Lock()
	hostKey, hostKeyErr, hostKeyOK := hk.key, hk.err, hk.ok
	hk.Unlock()
	if err != nil {
		conn.Close()
		switch {
		case hostKeyErr != nil:
			return nil, nil, nil, StageHostKey, hostKeyErr
		case hostKeyOK && st.wasCalled():
			return nil, nil, nil, StageAuth, st.authError(user, err)
		}
		return nil, nil, nil, StageHandshake, fmt.Errorf("%s: %w", addr, err)
	}
	return ssh.NewClient(sc, chans, reqs), st.accepted(), hostKey, "", nil
}

// Client is one SSH connection to a host. It is safe for concurrent use;
// every Run opens its own session.
type Client struct {
	target  Target
	ssh     *ssh.Client
	hops    []*ssh.Client // jump host connections, first hop first
	conn    net.Conn      // the final hop's transport
	pub     ssh.PublicKey
	hostKey ssh.PublicKey
	timeout time.Duration

	done      chan struct{} // closed when the connection has ended
	closeOnce sync.Once
	mu        sync.Mutex
	why       error // why the connection ended

	addrOnce            sync.Once
	localAddr, remoteIP string
}

// Close ends the connection and those to the jump hosts.
func (c *Client) Close() error {
	c.finish(errClosed)
	return nil
}

// errClosed is what Run returns after Close.
var errClosed = errors.New("connection closed")

// finish closes everything, once; why (the first reason given) is what Run
// reports afterwards.
func (c *Client) finish(why error) {
	c.mu.Lock()
	if c.why == nil {
		c.why = why
	}
	c.mu.Unlock()
	c.closeOnce.Do(func() {
		close(c.done)
		c.ssh.Close()
		for i := len(c.hops) - 1; i >= 0; i-- {
			c.hops[i].Close()
		}
	})
}

// ended returns why the connection ended, or nil while it is up.
func (c *Client) ended() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.why
}

// User is the remote user the connection is logged in as.
func (c *Client) User() string { return c.ssh.User() }

// Target is what was dialled.
func (c *Client) Target() Target { return c.target }

// PublicKey is the key that authenticated (a *ssh.Certificate for a
// certificate login), or nil if unknown.
func (c *Client) PublicKey() ssh.PublicKey { return c.pub }

// HostKey is the verified host key of the target.
func (c *Client) HostKey() ssh.PublicKey { return c.hostKey }

// LocalAddr is the client IP as the server sees it, and RemoteAddr the
// server's IP:port, for sshd -T -C addr=,laddr=,lport=. Through jump hosts
// they come from the server's $SSH_CONNECTION (one round trip, done once);
// "" if that fails. Behind NAT, prefer printing $SSH_CONNECTION in a command
// you run anyway.
func (c *Client) LocalAddr() string {
	c.addrs()
	return c.localAddr
}

// RemoteAddr: see LocalAddr.
func (c *Client) RemoteAddr() string {
	c.addrs()
	return c.remoteIP
}

func (c *Client) addrs() {
	c.addrOnce.Do(func() {
		if len(c.hops) == 0 {
			if h, _, err := net.SplitHostPort(c.conn.LocalAddr().String()); err == nil {
				c.localAddr = h
			}
			c.remoteIP = c.conn.RemoteAddr().String()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		out, err := c.Run(ctx, sshConnectionCommand, nil)
		if err != nil {
			return
		}
		if local, remote, ok := parseSSHConnection(out); ok {
			c.localAddr, c.remoteIP = local, remote
		}
	})
}

// sshConnectionCommand asks the server for the connection as sshd sees it:
// it prints the session's $SSH_CONNECTION, "CLIENT_IP CLIENT_PORT SERVER_IP
// SERVER_PORT" (empty when sshd set none). Recorded answers are in
// testdata/sshconnection.
const sshConnectionCommand = `echo "$SSH_CONNECTION"`

// parseSSHConnection reads sshConnectionCommand's output: the client's
// address as the server sees it, and the server's IP:port. The answer is
// the last line that is two addresses and two ports (a login shell may
// print before the command runs); ok is false when no line is, and
// nothing else is ever taken for an address.
func parseSSHConnection(out []byte) (local, remote string, ok bool) {
	lines := strings.Split(string(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		f := strings.Fields(lines[i])
		if len(f) == 4 && isIP(f[0]) && isPort(f[1]) && isIP(f[2]) && isPort(f[3]) {
			return f[0], net.JoinHostPort(f[2], f[3]), true
		}
	}
	return "", "", false
}

func isIP(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && zoneOK(a.Zone())
}

// zoneOK reports whether an IPv6 zone is an interface name or index:
// netip accepts any text after the %, and the address goes into sshd -T
// -C's comma-separated spec, where "fe80::1%a,user=root" would add a
// criterion of its own.
func zoneOK(z string) bool {
	for _, c := range z {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func isPort(s string) bool {
	n, err := strconv.ParseUint(s, 10, 16)
	return err == nil && n > 0
}

// keepalive sends keepalive@openssh.com every interval; when three in a row
// go unanswered, the connection is closed and Run reports it lost.
func (c *Client) keepalive(interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	replies := make(chan error, 1)
	outstanding, missed := false, 0
	for {
		select {
		case <-c.done:
			return
		case err := <-replies:
			outstanding, missed = false, 0
			if err != nil {
				return // the connection ended; the Wait goroutine handles it
			}
		case <-tick.C:
			if outstanding {
				missed++
				if missed >= 3 {
					c.finish(fmt.Errorf("%w: no answer to %d keepalives %s apart", ErrConnectionLost, missed, interval))
					return
				}
				continue
			}
			outstanding = true
			go func() {
				_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
				replies <- err
			}()
		}
	}
}

type connHookKey struct{}

// WithConnHook returns ctx asking Dial to call f with the local address of
// the TCP connection it opens to a host reached without a jump host, once
// connected and before the SSH handshake (so also when the login is then
// refused): the client port that names this connection in sshd's log.
func WithConnHook(ctx context.Context, f func(local net.Addr)) context.Context {
	return context.WithValue(ctx, connHookKey{}, f)
}

func connHook(ctx context.Context) func(net.Addr) {
	f, _ := ctx.Value(connHookKey{}).(func(net.Addr))
	return f
}
