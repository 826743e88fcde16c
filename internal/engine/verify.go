package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// Fresh logins as an op: verify_access's proof of every way in.

// likelyFirst returns the indexes of doubt in order, those doubted last.
func likelyFirst(doubt []bool) []int {
	order := make([]int, len(doubt))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return !doubt[order[a]] && doubt[order[b]] })
	return order
}

// VerifyLogins is the op of verify_access: it proves every login on every path with fresh logins
// (Prove, through env.Dial: the run's login gate), and fails when fewer
// users than need passed on every path (and sudo, when asked). Failed
// logins are rows in the result.
//
// Every login comes from this controller's address, which OpenSSH ≥ 9.8
// penalises for each refusal (see loginGate), so the logins are ordered
// and limited so that one locked-out user cannot cut the others: one wave
// per path, each user's logins in path order; in each wave the users
// likely to get in go first (order, for the first wave), and a user
// refused in an earlier wave goes last; env.Dial never makes a refused
// login again and waits out a penalty as long as it can last.
type VerifyLogins struct {
	Logins   []Login // in the playbook's order, which the rows keep
	Paths    []Path
	Sudo     bool // check sudo -n true too
	Need     int  // min_working
	Parallel int  // logins at once on this host
	// Doubt names the users whose facts showed a lockout cause when
	// planned: their logins go last in the first wave. Later waves put
	// last the users refused so far.
	Doubt Doubt
}

// doubted reports, for each login, whether its user is in doubt.
func (o *VerifyLogins) doubted() []bool {
	d := make([]bool, len(o.Logins))
	for i, l := range o.Logins {
		d[i] = o.Doubt[l.User] != ""
	}
	return d
}

// ReadOnly implements Op: logins change nothing.
func (*VerifyLogins) ReadOnly() bool { return true }

// Planned implements Op: logins change nothing.
func (*VerifyLogins) Planned() []Change { return nil }

// String lists the logins in the first wave's order, the paths, and what
// must work.
func (o *VerifyLogins) String() string {
	var b strings.Builder
	names := make([]string, len(o.Paths))
	for i, p := range o.Paths {
		names[i] = p.Name
	}
	fmt.Fprintf(&b, "fresh logins, one wave per path: %s; at most %d at once", strings.Join(names, ", "), o.Parallel)
	if o.Sudo {
		b.WriteString("; sudo -n true too")
	}
	b.WriteString("\n")
	for _, i := range likelyFirst(o.doubted()) {
		l := o.Logins[i]
		fmt.Fprintf(&b, "- %s with %s", l.User, l.KeyFile)
		if h := o.Doubt[l.User]; h != "" {
			fmt.Fprintf(&b, " (last: likely refused, %s)", h)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "min_working %d of %d on every path\n", o.Need, len(o.Logins))
	return b.String()
}

func (o *VerifyLogins) Run(ctx context.Context, _ Runner, env *Env, res *Result) error {
	if env.Dial == nil {
		return errors.New("verify_access: no way to open fresh logins here")
	}
	np := len(o.Paths)
	rows := make([]Access, len(o.Logins)*np)
	doubt := o.doubted()
	for pi, p := range o.Paths {
		order := likelyFirst(doubt)
		eachLogin(len(order), o.Parallel, func(n int) {
			i := order[n]
			l := o.Logins[i]
			row := &rows[i*np+pi]
			if err := ctx.Err(); err != nil {
				*row = Access{User: l.User, Path: p.Name, Error: err.Error()}
				return
			}
			*row = o.login(ctx, env, l, p)
		})
		for i := range o.Logins {
			if r := rows[i*np+pi]; !r.OK && r.Status != "penalised" {
				doubt[i] = true
			}
		}
	}
	res.Access = append(res.Access, rows...)
	return o.judge(rows)
}

// judge fails when fewer users than need passed on every path (and sudo,
// when asked), naming the users that failed and those sshd's penalties
// kept from being proven.
func (o *VerifyLogins) judge(rows []Access) error {
	working := map[string]bool{}
	for _, l := range o.Logins {
		working[l.User] = true
	}
	cut := map[string]bool{}
	for _, r := range rows {
		if !r.OK || (r.Sudo != nil && !*r.Sudo) {
			working[r.User] = false
			if r.Status == "penalised" {
				cut[r.User] = true
			}
		}
	}
	n := 0
	var broken, penalised []string
	for u, ok := range working {
		switch {
		case ok:
			n++
		case cut[u]:
			penalised = append(penalised, u)
		default:
			broken = append(broken, u)
		}
	}
	if n >= o.Need {
		return nil
	}
	sort.Strings(broken)
	sort.Strings(penalised)
	msg := fmt.Sprintf("%d of %d break-glass users can log in on every path, fewer than min_working %d", n, len(o.Logins), o.Need)
	if len(broken) > 0 {
		msg += " (failing: " + strings.Join(broken, ", ") + ")"
	}
	if len(penalised) > 0 {
		msg += " (not proven, their logins cut by sshd's PerSourcePenalties for this address: " + strings.Join(penalised, ", ") + ")"
	}
	return errors.New(msg)
}

// login makes one fresh login as l on p and runs the probe.
func (o *VerifyLogins) login(ctx context.Context, env *Env, l Login, p Path) (a Access) {
	a = Access{User: l.User, Path: p.Name}
	start := time.Now()
	defer func() { a.MS = time.Since(start).Milliseconds() }()
	if _, err := os.Stat(l.KeyFile); err != nil {
		a.Error = fmt.Sprintf("key file: %v", err)
		return a
	}
	pr := Prove(ctx, env.Dial, l.User, l.KeyFile, p)
	a.SourcePort = pr.SourcePort
	if pr.Err != nil {
		a.Error = pr.Err.Error()
		a.Status = LoginStatus(pr.Err)
		return a
	}
	a.OK = true
	if o.Sudo {
		a.Sudo = &pr.Sudo
		if !pr.Sudo {
			a.Error = "sudo -n true failed"
		}
	}
	return a
}
