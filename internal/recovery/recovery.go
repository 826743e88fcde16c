// Package recovery gets a locked-out user back in: reached through a
// break-glass user, it diagnoses the user with the audit's checks, applies
// the fixes (with the same safety rules as apply) and proves the user can
// log in again with a fresh login.
package recovery

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/breakglass/breakglass/internal/audit"
	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/tasks"
)

// Options say who to recover and whether to change anything.
type Options struct {
	User string
	// KeyFile is User's private key; "" logs in as the control connection
	// does (the inventory's key and agent), for the inventory's own user.
	KeyFile string
	// Fix applies the fixes; without it the module only diagnoses.
	Fix bool
	// SudoUsers are the users the playbook gives sudo (audit.Options):
	// only for them is sudo diagnosed.
	SudoUsers []string
}

// Module is the recover task of one host.
type Module struct{ o Options }

var _ tasks.Program = (*Module)(nil)

// Queries implements tasks.Module: recover reads the host as it goes,
// through a break-glass login of its own.
func (*Module) Queries() []engine.Query { return nil }

// New returns the recover task for o.
func New(o Options) (*Module, error) {
	if err := shell.ValidUser(o.User); err != nil {
		return nil, err
	}
	return &Module{o: o}, nil
}

// ErrStillLockedOut means the fixes were applied but the user still cannot
// log in.
var ErrStillLockedOut = errors.New("still locked out")

// fixable are the findings recover repairs with the finding's own typed
// action (engine.RunAction: argv, never text for a shell; a path is
// changed only through the no-follow helpers, which check it again when
// they act): each changes one account or one path, never sshd's
// configuration. user-filtered is repaired through the sshd module, under
// its self-reverting transaction.
//
// Of the refusals after authentication and PAM's own (issue 19), only a
// pam_listfile deny list's line naming the user itself is removed
// (bg_dropline: in a root-only directory, a backup kept): like
// user-filtered, it takes away a refusal of this one user and nothing
// else. The others are a decision, not a repair, and are only shown:
// a forced command or chroot may be what the account is for, a revoked
// key may be compromised, a time rule, login limit, succeed_if condition
// or sudo negation is policy, and their lines may name others too.
var fixable = map[string]bool{
	"account-locked":           true,
	"account-expired":          true,
	"password-inactive":        true,
	"password-change-required": true,
	"shell-missing":            true,
	"nologin-file":             true,
	"unsafe-path":              true,
	"unreadable":               true,
	"home-missing":             true,
	"privsep-dir":              true,
	"sudo-account":             true,
	"pam-listfile":             true,
}

// Run diagnoses the user on a host reached as a break-glass user, and with
// Fix repairs and proves the login.
func (m *Module) Run(ctx context.Context, r engine.Runner, env *engine.Env) (*engine.Result, error) {
	res := &engine.Result{}
	if env.ControlUser == m.o.User {
		// The dialer got in as the user itself: nothing to recover.
		a := m.prove(ctx, env)
		res.Access = append(res.Access, a)
		if !a.OK {
			return res, fmt.Errorf("%s logs in but the probe failed: %s", m.o.User, a.Error)
		}
		return res, nil
	}
	findings, err := m.diagnose(ctx, r, env)
	if err != nil {
		return res, err
	}
	var plan []engine.Finding
	var manual []string
	for _, f := range findings {
		if f.Severity != "lockout" && f.Severity != "risk" {
			continue
		}
		switch {
		case f.ID == "user-filtered" && f.User == m.o.User:
			plan = append(plan, f)
		case fixable[f.ID] && len(f.Action) > 0 && (f.User == m.o.User || f.User == ""):
			plan = append(plan, f)
		default:
			manual = append(manual, fmt.Sprintf("%s: %s (fix by hand: %s)", f.ID, f.Detail, orNone(f.Fix)))
		}
	}
	res.Findings = findings
	for _, f := range plan {
		res.Changes = append(res.Changes, engine.Change{What: fmt.Sprintf("fix %s: %s", f.ID, fixText(f, m.o.User)), Path: f.Path})
	}
	if len(plan) == 0 && len(manual) == 0 {
		// Nothing explains the lockout; say so, with the proof.
		a := m.prove(ctx, env)
		res.Access = append(res.Access, a)
		if a.OK {
			return res, nil
		}
		return res, fmt.Errorf("%s cannot log in and no known cause explains it: %s", m.o.User, a.Error)
	}
	if env.Check || !m.o.Fix {
		return res, nil
	}
	res.Changed = len(plan) > 0
	for _, f := range plan {
		if err := m.apply(ctx, r, env, f); err != nil {
			return res, fmt.Errorf("fix %s: %w", f.ID, err)
		}
	}
	a := m.prove(ctx, env)
	res.Access = append(res.Access, a)
	if a.Status == "penalised" {
		return res, fmt.Errorf("%w: the fixes are applied, but %s's proving login was cut by sshd's penalty for this address's refused logins, so it is not proven: run recover again once the penalty has passed (or exempt this controller with PerSourcePenaltyExemptList)", engine.ErrLoginPenalised, m.o.User)
	}
	if !a.OK {
		msg := a.Error
		if len(manual) > 0 {
			msg += "; left to fix by hand: " + strings.Join(manual, "; ")
		}
		return res, fmt.Errorf("%w: %s", ErrStillLockedOut, msg)
	}
	// The causes are gone: keep them in the report as what was fixed.
	for i := range res.Findings {
		if res.Findings[i].Severity != "info" {
			res.Findings[i].Severity = "info"
			res.Findings[i].Detail = "fixed: " + res.Findings[i].Detail
		}
	}
	return res, nil
}

func orNone(s string) string {
	if s == "" {
		return "no automatic fix"
	}
	return s
}

func fixText(f engine.Finding, user string) string {
	if f.ID == "user-filtered" {
		return fmt.Sprintf("add %s to AllowUsers in a drop-in, under the sshd safety net", user)
	}
	return shell.Join(f.Action...)
}

func (m *Module) diagnose(ctx context.Context, r engine.Runner, env *engine.Env) ([]engine.Finding, error) {
	a := audit.New(audit.Options{Users: []string{m.o.User}, SudoUsers: m.o.SudoUsers})
	res, err := a.Run(ctx, r, env)
	if err != nil {
		return nil, fmt.Errorf("diagnose %s: %w", m.o.User, err)
	}
	var out []engine.Finding
	for _, f := range res.Findings {
		// The break-glass user we came in as is fine by definition; keep
		// what concerns the user and the host.
		if f.User == "" || f.User == m.o.User {
			out = append(out, f)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (m *Module) apply(ctx context.Context, r engine.Runner, env *engine.Env, f engine.Finding) error {
	if f.ID == "user-filtered" {
		return m.allowUser(ctx, r, env)
	}
	if err := engine.RunAction(ctx, r, f.Action); err != nil {
		return err
	}
	env.Facts.Delete(tasks.UserFactsKey(m.o.User), audit.HostFactsKey)
	return nil
}

// allowUser adds the user to the effective AllowUsers through the sshd
// module, so the change is validated, armed to revert itself, and kept only
// when fresh logins prove the control user and the break-glass users still
// get in.
func (m *Module) allowUser(ctx context.Context, r engine.Runner, env *engine.Env) error {
	v, err := env.Fact(ctx, r, tasks.UserFactsQuery(m.o.User, env.Conn()))
	if err != nil {
		return err
	}
	uf, ok := v.(*tasks.UserFacts)
	if !ok {
		return fmt.Errorf("unexpected user facts %T", v)
	}
	// Only a refusal by AllowUsers is lifted by joining it: DenyUsers,
	// DenyGroups and AllowGroups are judged as well (sshdconf).
	if v, refused := uf.SSHD.Refuses(m.o.User, uf.Groups, uf.Conn.Client, uf.Conn.Client); refused && v.Keyword != "AllowUsers" {
		return fmt.Errorf("%s %s, which joining AllowUsers does not change: fix by hand", m.o.User, v.Why)
	}
	allowed := uf.SSHD.AllowUsers
	if len(allowed) == 0 {
		return errors.New("the user is filtered by AllowGroups or DenyUsers/DenyGroups: fix by hand")
	}
	seen := map[string]bool{}
	var list []string
	for _, u := range append(allowed, m.o.User, env.ControlUser) {
		if !seen[u] {
			seen[u] = true
			list = append(list, u)
		}
	}
	for _, l := range env.Logins {
		if !seen[l.User] {
			seen[l.User] = true
			list = append(list, l.User)
		}
	}
	var args yaml.Node
	if err := args.Encode(map[string]any{"settings": map[string]string{"AllowUsers": strings.Join(list, " ")}}); err != nil {
		return err
	}
	f, ok := tasks.Lookup("sshd")
	if !ok {
		return errors.New("sshd module missing")
	}
	m0, err := f("recover", &args)
	if err != nil {
		return err
	}
	mod, ok := m0.(engine.Planner)
	if !ok {
		return fmt.Errorf("internal error: the sshd module (%T) does not plan", m0)
	}
	// The change is the sshd module's plan, executed as the runner would:
	// under the self-reverting transaction, proven by fresh logins.
	x := engine.NewExecutor(r, env)
	p, err := x.Plan(ctx, mod)
	if err == nil {
		_, _, err = x.Execute(ctx, 0, mod, p)
	}
	env.Facts.Delete(tasks.UserFactsKey(m.o.User), audit.HostFactsKey)
	return err
}

// prove logs in as the user over a fresh connection.
func (m *Module) prove(ctx context.Context, env *engine.Env) (a engine.Access) {
	a = engine.Access{User: m.o.User, Path: "direct"}
	start := time.Now()
	defer func() { a.MS = time.Since(start).Milliseconds() }()
	if env.Dial == nil {
		a.Error = "no way to open fresh logins"
		return a
	}
	// env.Dial waits out a penalty sshd holds against this address (the
	// refusals recover diagnoses earn one on OpenSSH ≥ 9.8) as long as it
	// can last, then reports the login as penalised, not refused.
	pr := engine.Prove(ctx, env.Dial, m.o.User, m.o.KeyFile, engine.Path{Name: "direct"})
	a.SourcePort = pr.SourcePort
	if pr.Err != nil {
		a.Error = pr.Err.Error()
		a.Status = engine.LoginStatus(pr.Err)
		return a
	}
	a.OK = true
	return a
}
