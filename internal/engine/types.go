package engine

import (
	"context"
	"fmt"
	"regexp"
	"sync"
)

// The engine's vocabulary, which modules plan in and the runner reports:
// the host's runner and run environment, the fresh-login dialer and its
// paths, a fact's query and the facts cache, and a task's result.

// Runner runs a command on one host as root (become is already applied)
// and returns its standard output. A non-zero exit is an error that
// carries the exit status and standard error. File contents and other data
// go in stdin, never in cmd.
type Runner interface {
	Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error)
}

// Env is what a module knows about the run on one host.
type Env struct {
	Host        string // inventory name
	ControlUser string // the user this run is connected as
	// ControlKey is the public key (authorized_keys format, no comment) the
	// control connection authenticated with, or "" when unknown.
	ControlKey string
	// Connection as sshd sees it, for `sshd -T -C user=…,host=…,addr=…,laddr=…,lport=…`.
	ClientAddr string
	ServerAddr string
	ServerPort int

	Check bool // plan only, change nothing
	Diff  bool // fill Change.Before/After for files

	// Dir is the directory of the playbook, against which relative
	// key_file paths are resolved.
	Dir string

	// Dial opens fresh SSH logins for verify_access and for the safety net
	// of sshd changes. Nil where no logins can be made (unit tests).
	Dial LoginDialer

	// Logins are the break-glass logins of the playbook's verify_access
	// tasks for this host: the safety net of access-cutting changes proves
	// them (and the control user) with fresh logins before it commits.
	Logins []Login
	// MinWorking is the strictest min_working of those tasks (0: none).
	MinWorking int

	// Facts is shared by every task of this host: plans read it (with no
	// I/O), the executor fills it and forgets what a plan's changes make
	// stale, and a Program (audit, recover) may add to it or forget.
	Facts *Facts

	// batch, when set, queues the steps of a plan that may join a batch
	// instead of running them; batchTask is the runner's id of the task
	// whose plan runs now, which Flush reports outcomes by. Set by
	// Executor.
	batch     *stepBatch
	batchTask int
}

// Login is a user and the private key file it logs in with.
type Login struct {
	User    string
	KeyFile string // absolute
}

// LoginDialer opens a fresh SSH connection (never the pooled control
// connection) to this host as user with only the given private key file and
// no agent; with keyFile "" it authenticates as the control connection does
// (its identity files and agent). Path selects the way in (direct, another
// port, a jump host, an address). The returned func closes the connection.
type LoginDialer interface {
	Login(ctx context.Context, user, keyFile string, path Path) (Runner, func() error, error)
}

// Path is one way into a host.
type Path struct {
	Name    string // "direct", "port 2222", "jump bastion", "address 10.0.0.5"
	Port    int    // 0: the host's port
	Jump    string // inventory name of a jump host, "" for none
	Address string // another address of the host, "" for the inventory one
}

// Query is one fact a module needs: a shell script (run as root with
// /bin/sh) whose standard output Parse turns into a value. Queries with the
// same Key are the same fact and run once.
type Query struct {
	Key    string
	Script string
	Parse  func(out []byte) (any, error)
	// Shared, when set, is what queries of this kind share in a round
	// trip: its prelude runs once before them.
	Shared *Shared
}

// Facts is a host's state gathered in one round trip, by key (a Query's).
// What a plan's changes make stale is forgotten (or read again, see
// Rereader), so the next task gathers it again.
type Facts struct {
	mu   sync.Mutex
	data map[string]any
}

// Fact returns the value of q, from Facts when gathered already, otherwise
// gathered now (one round trip, as a plan's facts are) and stored.
func (e *Env) Fact(ctx context.Context, r Runner, q Query) (any, error) {
	vals, err := gatherFacts(ctx, r, e, false, q)
	if err != nil {
		return nil, err
	}
	return vals[0], nil
}

// Delete forgets the values under keys, so they are gathered again.
func (f *Facts) Delete(keys ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range keys {
		delete(f.data, k)
	}
}

// Get returns the value stored under key.
func (f *Facts) Get(key string) (any, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.data[key]
	return v, ok
}

// Set stores v under key.
func (f *Facts) Set(key string, v any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.data == nil {
		f.data = map[string]any{}
	}
	f.data[key] = v
}

// Result is what one task did on one host.
type Result struct {
	Changed bool
	Changes []Change
	// Access is filled by verify_access: one row per user × path.
	Access []Access
	// Findings is filled by audit checks.
	Findings []Finding
	// RolledBack is set when a transaction was reverted; the reason is in
	// the task's error.
	RolledBack bool
}

// Change is one thing that changed, or would change in check mode.
type Change struct {
	What   string // "create user bg-ops1", "chmod 0755 /home/admin (was 0777)"
	Path   string // file the change is about, if any
	Before string // with --diff: previous content (never a secret)
	After  string // with --diff: new content
}

// Finding is one audit result: something that locks a user out now
// (SeverityLockout), will later (SeverityRisk), or is worth knowing.
type Finding struct {
	ID       string // stable check id from docs/lockouts.md, e.g. "unsafe-path"
	Severity string // "lockout", "risk" or "info"
	User     string
	Path     string
	Detail   string // the evidence: path with owner and mode, config line and its file
	Fix      string // the exact command that fixes it, or advice for a person
	// Action is the fix as argv, run as root by RunAction (never through
	// text a shell parses), when the fix is safe and exact; nil when a
	// person must decide.
	Action []string `json:"-"`
}

// Access is one real login attempt.
type Access struct {
	User  string
	Path  string
	OK    bool
	Sudo  *bool // nil when sudo was not checked
	Error string
	MS    int64
	// Status is LoginStatus of the login's error: "penalised",
	// "not-repeated" or "".
	Status string
	// SourcePort is the client port of the login's connection (0 when
	// unknown, e.g. through a jump host), known from the TCP connect on,
	// so also for a refused login: audit finds that one connection's
	// lines in sshd's log by it.
	SourcePort int
}

type sourcePortKey struct{}

// WithSourcePort returns ctx asking the LoginDialer to call f with the
// client port of the connection it opens, before the SSH handshake.
func WithSourcePort(ctx context.Context, f func(port int)) context.Context {
	return context.WithValue(ctx, sourcePortKey{}, f)
}

// SourcePortHook returns the function WithSourcePort put in ctx, or nil.
func SourcePortHook(ctx context.Context) func(port int) {
	f, _ := ctx.Value(sourcePortKey{}).(func(int))
	return f
}

// FactAccess is the Facts key under which the runner keeps the login rows
// of the verify_access tasks run so far on the host ([]Access), so that a
// later audit can explain failed logins.
const FactAccess = "verify:access"

// Conn is the connection sshd judges a login by: the client address (also
// used as the host name, as sshd does with UseDNS no), the server address
// and the server port. Every field must be known, because `sshd -T -C`
// silently treats a Match criterion whose field is missing as not matching.
type Conn struct {
	Client string
	Server string
	Port   int
}

// Complete reports whether every field is known, and is an address: a
// comma would add criteria to sshd -T -C, so anything else counts as
// unknown.
func (c Conn) Complete() bool {
	return connAddr.MatchString(c.Client) && connAddr.MatchString(c.Server) && c.Port > 0 && c.Port < 65536
}

var connAddr = regexp.MustCompile(`^[A-Za-z0-9.:%_-]+$`)

func (c Conn) String() string {
	return fmt.Sprintf("client %s, server %s port %d", c.Client, c.Server, c.Port)
}

// Conn returns the connection the run's control session has, as env describes it.
func (env *Env) Conn() Conn {
	return Conn{Client: env.ClientAddr, Server: env.ServerAddr, Port: env.ServerPort}
}

// PortPinner is implemented by the LoginDialer of a real run. PinPort
// reads the host key that addr:port of this host presents ("" or an
// unspecified address: the host's own address) and compares it with the
// host key verified on the run's connection to the host; a different key
// is an error and is never recorded. When it matches and the run's
// known_hosts file does not list [addr]:port yet, record adds it.
type PortPinner interface {
	PinPort(ctx context.Context, addr string, port int, record bool) (PortPin, error)
}

// PortPin is what PinPort found and did.
type PortPin struct {
	Host       string // the known_hosts name, "[127.0.0.5]:2222"
	Addr       string // the address to connect to
	KnownHosts string
	Key        string // "ssh-ed25519 SHA256:…"
	Present    bool   // already listed with that key
	Recorded   bool   // added now
}

// Range calls fn with every fact held, in no order, until fn returns
// false. fn must not call f's methods.
func (f *Facts) Range(fn func(key string, v any) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, v := range f.data {
		if !fn(k, v) {
			return
		}
	}
}
