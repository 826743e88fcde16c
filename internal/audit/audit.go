// Package audit finds what would keep a user from logging in to a host,
// or from becoming root there, judged as sshd, PAM and sudo judge it: every
// cause in docs/lockouts.md that can be read off the host, by its stable check
// id, with the evidence and the exact command that fixes it.
//
// It is read-only: it reads facts (one round trip, shared with the other
// modules through the runner) and never changes the host. Per user it
// judges sshd's effective configuration for this run's connection
// (sshd -T -C user=…,host=…,addr=…,laddr=…,lport=…), the account (shadow
// fields, shell, home), every effective AuthorizedKeysFile (StrictModes'
// walk, readability as the user, each key line), the PAM stack and sudo;
// host-wide, whether the sshd configuration loads, whether the running
// listener runs what is on disk, the privilege separation directory and
// the sudoers files. A login that verify_access saw fail and that nothing
// found explains is reported with sshd's own log lines.
package audit

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/wire"
	"github.com/breakglass/breakglass/tasks"
)

// Severities (docs/design.md §6).
const (
	SeverityLockout = "lockout" // blocks a login (or sudo) now
	SeverityRisk    = "risk"    // will block one later
	SeverityInfo    = "info"
)

// Options says which users to audit.
type Options struct {
	// Users are the break-glass users named in the playbook; the control
	// user (env.ControlUser) is always added. All of them are expected to
	// log in.
	Users []string
	// SudoUsers are the users the playbook gives sudo (a sudoers task, a
	// verify_access task with sudo: true) and the inventory's user; the
	// control user is always one. Only those of them that are audited
	// (Users, the control user) are expected to sudo: the sudo checks,
	// whose fixes grant root, judge no one else.
	SudoUsers []string
	// AllUsers also audits every local account that can log in: a shell
	// that is not nologin or false, and a usable way to authenticate (a
	// key file or a password). These are not expected to sudo.
	AllUsers bool
}

// Module runs the lockout checks on one host.
type Module struct {
	o Options
}

var (
	_ tasks.Module  = (*Module)(nil)
	_ tasks.Program = (*Module)(nil)
)

// New returns the audit module for o. Invalid user names are dropped
// (the playbook loader has already refused them).
func New(o Options) *Module {
	var users []string
	for _, u := range o.Users {
		if shell.ValidUser(u) == nil && !slices.Contains(users, u) {
			users = append(users, u)
		}
	}
	o.Users = users
	return &Module{o: o}
}

// Queries returns the facts audit reads, for the runner's one round trip:
// the shared user facts of each named user, and the host query, which also
// reads the session's user (the control user, through sudo's SUDO_USER)
// and, with AllUsers, every account that can log in.
func (m *Module) Queries() []engine.Query {
	var qs []engine.Query
	var specs []userSpec
	for _, u := range m.o.Users {
		qs = append(qs, tasks.UserFactsQuery(u, engine.Conn{}))
		specs = append(specs, userSpec{Name: u, Sudo: true})
	}
	hq, err := hostQuery(engine.Conn{}, specs, true, m.o.AllUsers)
	if err != nil {
		return qs // Run gathers it again and reports the error
	}
	return append(qs, hq)
}

// auditedUser is one user to judge, with what was read about it.
type auditedUser struct {
	uf       *tasks.UserFacts
	x        *UserExtras
	expected bool // a break-glass or the control user: must log in
	sudo     bool // expected, and the playbook gives it sudo (or the control user): must sudo
}

// Run reads the facts (from the runner's gathering, or in one round trip
// of its own) and returns the findings. It never changes the host.
func (m *Module) Run(ctx context.Context, r engine.Runner, env *engine.Env) (*engine.Result, error) {
	if env.Facts == nil {
		env.Facts = &engine.Facts{}
	}
	expected := slices.Clone(m.o.Users)
	if env.ControlUser != "" && !slices.Contains(expected, env.ControlUser) {
		if err := shell.ValidUser(env.ControlUser); err != nil {
			return nil, fmt.Errorf("control user: %w", err)
		}
		expected = append(expected, env.ControlUser)
	}
	h, users, ok := m.fromFacts(env, expected)
	if !ok {
		var err error
		if h, users, err = m.gather(ctx, r, env, expected); err != nil {
			return nil, err
		}
	}
	for i := range users {
		name := users[i].uf.Name
		users[i].sudo = users[i].expected && (name == env.ControlUser || slices.Contains(m.o.SudoUsers, name))
	}
	c := newChecker(h)
	// Forced commands' programs, asked of the host only when there are
	// any; unanswered, they are not judged (the command is still named).
	var err error
	if c.commands, err = forcedCommands(ctx, r, users); err != nil && ctx.Err() != nil {
		return nil, err
	}
	c.host(users)
	for _, u := range users {
		c.user(u)
	}
	if err := c.unexplained(ctx, r, env); err != nil {
		return nil, err
	}
	c.sort()
	res := &engine.Result{Findings: c.findings}
	for _, u := range users {
		if u.uf.Exists && u.uf.SSHDErr == "" && !u.uf.Conn.Complete() {
			return res, fmt.Errorf("%w: the connection's addresses are unknown, so the checks of %s that depend on sshd's Match blocks were skipped", tasks.ErrSSHDConfig, u.uf.Name)
		}
	}
	return res, nil
}

// fresh reports whether uf can be used for connection conn.
func fresh(uf *tasks.UserFacts, conn engine.Conn) bool {
	if uf == nil {
		return false
	}
	if !conn.Complete() {
		return true
	}
	return uf.Conn == conn
}

// fromFacts assembles the users from what the runner gathered; ok is
// false when anything is missing or was read for another connection.
func (m *Module) fromFacts(env *engine.Env, expected []string) (*HostFacts, []auditedUser, bool) {
	v, found := env.Facts.Get(HostFactsKey)
	h, isHost := v.(*HostFacts)
	if !found || !isHost {
		return nil, nil, false
	}
	conn := env.Conn()
	lookup := func(name string) *tasks.UserFacts {
		if v, ok := env.Facts.Get(tasks.UserFactsKey(name)); ok {
			if uf, ok := v.(*tasks.UserFacts); ok && fresh(uf, conn) {
				return uf
			}
		}
		if uf := h.Users[name]; fresh(uf, conn) {
			return uf
		}
		return nil
	}
	var users []auditedUser
	for _, name := range expected {
		uf, x := lookup(name), h.Extras[name]
		if uf == nil || x == nil {
			return nil, nil, false
		}
		users = append(users, auditedUser{uf: uf, x: x, expected: true})
	}
	if m.o.AllUsers {
		if h.Candidates == nil {
			return nil, nil, false
		}
		for _, name := range h.Candidates {
			if slices.Contains(expected, name) {
				continue
			}
			uf, x := lookup(name), h.Extras[name]
			if uf == nil || x == nil {
				return nil, nil, false
			}
			if canLogIn(uf) {
				users = append(users, auditedUser{uf: uf, x: x})
			}
		}
	}
	return h, users, true
}

// gather reads everything in one round trip, for this run's connection.
func (m *Module) gather(ctx context.Context, r engine.Runner, env *engine.Env, expected []string) (*HostFacts, []auditedUser, error) {
	var specs []userSpec
	for _, u := range expected {
		specs = append(specs, userSpec{Name: u, Facts: true, Sudo: true})
	}
	q, err := hostQuery(env.Conn(), specs, false, m.o.AllUsers)
	if err != nil {
		return nil, nil, err
	}
	script, err := wire.New()
	if err != nil {
		return nil, nil, err
	}
	script.Part(q.Script)
	out, err := r.Run(ctx, "/bin/sh -s", script.Bytes())
	if err != nil {
		return nil, nil, fmt.Errorf("gather %s: %w", q.Key, err)
	}
	switch p := script.Split(out)[0]; {
	case !p.Begun:
		return nil, nil, fmt.Errorf("gather %s: no output", q.Key)
	case !p.Done:
		return nil, nil, fmt.Errorf("gather %s: truncated output", q.Key)
	case p.Status != 0:
		return nil, nil, fmt.Errorf("gather %s: exit status %d", q.Key, p.Status)
	default:
		out = p.Out
	}
	h, err := ParseHostFacts(out)
	if err != nil {
		return nil, nil, fmt.Errorf("gather %s: %w", q.Key, err)
	}
	env.Facts.Set(HostFactsKey, h)
	for name, uf := range h.Users {
		env.Facts.Set(tasks.UserFactsKey(name), uf)
	}
	var users []auditedUser
	for _, name := range expected {
		uf, x := h.Users[name], h.Extras[name]
		if uf == nil || x == nil {
			return nil, nil, fmt.Errorf("gather %s: no facts for user %s", q.Key, name)
		}
		users = append(users, auditedUser{uf: uf, x: x, expected: true})
	}
	for _, name := range h.Candidates {
		if slices.Contains(expected, name) {
			continue
		}
		if uf, x := h.Users[name], h.Extras[name]; uf != nil && x != nil && canLogIn(uf) {
			users = append(users, auditedUser{uf: uf, x: x})
		}
	}
	return h, users, nil
}

// canLogIn reports whether --all-users audits the account: a login shell
// that is not nologin or false, and a password or a key file.
func canLogIn(uf *tasks.UserFacts) bool {
	if !uf.Exists || noLoginShell(uf.Shell) {
		return false
	}
	if uf.Shadow != nil && uf.Shadow.Password == tasks.PasswordHash {
		return true
	}
	for i := range uf.KeyFiles {
		if uf.KeyFiles[i].File().Exists {
			return true
		}
	}
	return false
}

func noLoginShell(p string) bool {
	b := p[strings.LastIndexByte(p, '/')+1:]
	return b == "nologin" || b == "false"
}

// sort orders findings by user (host-wide first), check id and path.
func (c *checker) sort() {
	sort.SliceStable(c.findings, func(i, j int) bool {
		a, b := c.findings[i], c.findings[j]
		if a.User != b.User {
			return a.User < b.User
		}
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.Path < b.Path
	})
}
