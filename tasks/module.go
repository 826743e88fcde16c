// Package tasks holds breakglass's modules: user, authorized_key,
// ssh_permissions, sudoers, sshd, secondary_sshd, verify_access and command.
//
// A module is decoded from its playbook arguments once per host (after
// variable substitution), then run against that host. A run is
// gather facts -> compute a plan -> apply; check mode stops after the plan.
package tasks

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"gopkg.in/yaml.v3"
)

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

	// Facts is shared by every task of this host; a module may refresh or
	// update it after it changes the host.
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
}

// Facts is a host's state gathered in one round trip. A module that changes
// the host deletes the keys its change makes stale, so the next task
// gathers them again.
type Facts struct {
	mu   sync.Mutex
	data map[string]any
}

// Fact returns the value of q, from Facts when gathered already, otherwise
// by running q now (one round trip) and storing it.
func (e *Env) Fact(ctx context.Context, r Runner, q Query) (any, error) {
	if e.Facts == nil {
		e.Facts = &Facts{}
	}
	if v, ok := e.Facts.Get(q.Key); ok {
		return v, nil
	}
	out, err := r.Run(ctx, "/bin/sh -s", []byte(q.Script))
	if err != nil {
		return nil, fmt.Errorf("gather %s: %w", q.Key, err)
	}
	v, err := q.Parse(out)
	if err != nil {
		return nil, fmt.Errorf("gather %s: %w", q.Key, err)
	}
	e.Facts.Set(q.Key, v)
	return v, nil
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

// Module is one decoded task of one host. A playbook module plans: it
// names the facts it reads and makes a Plan from them with no I/O (the
// planner methods; every playbook module is in this package), and the
// runner executes that plan (Executor). A task that is not planned is a
// Program.
type Module interface {
	// Queries returns the facts the task reads: the runner gathers those
	// of every task of a host in one round trip before the first task and
	// keeps them in Env.Facts. None: nil.
	Queries() []Query
}

// Program is a task that reads the host and makes its logins as it goes
// instead of planning (audit, recover): the runner runs it once the steps
// queued before it have run.
type Program interface {
	Module
	// Run reports what it found or did; it runs in check mode too, and
	// changes a host only outside it.
	Run(ctx context.Context, r Runner, env *Env) (*Result, error)
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

// LoginSource is implemented by modules that name the play's break-glass
// logins (verify_access): the safety net proves them before it keeps a
// change that can cut access, and a refused control login falls back to
// them. The runner and the CLI find them through this interface alone.
type LoginSource interface {
	// SafetyLogins returns the logins, with key files made absolute
	// against dir ("" for the playbook's own), and how many must work.
	SafetyLogins(dir string) (logins []Login, minWorking int)
	// WaysIn returns the paths every login is proven on.
	WaysIn() []Path
}

// UserLister is implemented by modules that manage or check accounts; audit
// examines every user they name.
type UserLister interface {
	ListUsers() []string
}

// Factory decodes a module's arguments. file names the playbook, for
// positioned errors (see internal/yamlx).
type Factory func(file string, args *yaml.Node) (Module, error)

var registry = map[string]Factory{}

// Register makes a module known by name. It panics on a duplicate name.
func Register(name string, f Factory) {
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("tasks: module %q registered twice", name))
	}
	registry[name] = f
}

// Lookup returns the factory of the module called name.
func Lookup(name string) (Factory, bool) {
	f, ok := registry[name]
	return f, ok
}

// Names lists the known modules, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

var (
	_ UserLister = (*User)(nil)
	_ UserLister = (*AuthorizedKey)(nil)
	_ UserLister = (*SSHPermissions)(nil)
	_ UserLister = (*Sudoers)(nil)
	_ UserLister = (*VerifyAccess)(nil)
)
