package tasks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/yamlx"
)

// VerifyAccess proves the ways in with real logins: for each user × path a
// fresh connection (never the control connection) with only that user's
// key and no agent, running the probe command, which reports `id -un` and
// whether `sudo -n true` works. With a probe key (authorized_key
// probe: true) sshd forces the same command, so the answer is the same.
type VerifyAccess struct {
	MinWorking *int          `yaml:"min_working"`
	Sudo       bool          `yaml:"sudo"`
	Logins     []VerifyLogin `yaml:"logins"`
	Paths      []VerifyPath  `yaml:"paths"`
	// Parallel bounds the logins made at once on one host.
	Parallel int `yaml:"parallel"`

	dir string
}

// VerifyLogin is one user and the private key that user logs in with.
type VerifyLogin struct {
	User    string `yaml:"user"`
	KeyFile string `yaml:"key_file"`
}

// VerifyPath is one way in: "direct", {port: N}, {jump: HOST} or
// {address: A}.
type VerifyPath struct{ Path }

// UnmarshalYAML accepts the string "direct" or a mapping with exactly one
// of port, jump or address.
func (p *VerifyPath) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if n.Value != "direct" {
			return fmt.Errorf("line %d: path %q: want direct, {port: N}, {jump: HOST} or {address: A}", n.Line, n.Value)
		}
		p.Path = Path{Name: "direct"}
		return nil
	}
	var m struct {
		Port    int    `yaml:"port"`
		Jump    string `yaml:"jump"`
		Address string `yaml:"address"`
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: path: want direct, {port: N}, {jump: HOST} or {address: A}", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch k := n.Content[i].Value; k {
		case "port", "jump", "address":
		default:
			return fmt.Errorf("line %d: path: unknown key %q (known: address, jump, port)", n.Content[i].Line, k)
		}
	}
	if err := n.Decode(&m); err != nil {
		return err
	}
	set := 0
	switch {
	case m.Port != 0:
		set++
		if m.Port < 1 || m.Port > 65535 {
			return fmt.Errorf("line %d: path: port %d out of range", n.Line, m.Port)
		}
		p.Path = Path{Name: fmt.Sprintf("port %d", m.Port), Port: m.Port}
	}
	if m.Jump != "" {
		set++
		if strings.ContainsAny(m.Jump, " \t\r\n\x00;$`'\"\\") {
			return fmt.Errorf("line %d: path: jump host %q is not an inventory name", n.Line, m.Jump)
		}
		p.Path = Path{Name: "jump " + m.Jump, Jump: m.Jump}
	}
	if m.Address != "" {
		set++
		if strings.ContainsAny(m.Address, " \t\r\n\x00;$`'\"\\/") {
			return fmt.Errorf("line %d: path: address %q is not a host address", n.Line, m.Address)
		}
		p.Path = Path{Name: "address " + m.Address, Address: m.Address}
	}
	if set != 1 {
		return fmt.Errorf("line %d: path: give exactly one of port, jump or address", n.Line)
	}
	return nil
}

var _ planner = (*VerifyAccess)(nil)

func init() {
	Register("verify_access", func(file string, n *yaml.Node) (Module, error) {
		v := &VerifyAccess{dir: filepath.Dir(file)}
		if err := yamlx.Decode(file, n, v); err != nil {
			return nil, err
		}
		if len(v.Logins) == 0 {
			return nil, yamlx.Errorf(file, n, "verify_access: logins: is empty: name at least one user and key_file")
		}
		seen := map[string]bool{}
		for _, l := range v.Logins {
			if err := shell.ValidUser(l.User); err != nil {
				return nil, yamlx.Errorf(file, n, "verify_access: %v", err)
			}
			if seen[l.User] {
				return nil, yamlx.Errorf(file, n, "verify_access: user %s is listed twice", l.User)
			}
			seen[l.User] = true
			if l.KeyFile == "" {
				return nil, yamlx.Errorf(file, n, "verify_access: user %s has no key_file", l.User)
			}
		}
		if len(v.Paths) == 0 {
			v.Paths = []VerifyPath{{Path{Name: "direct"}}}
		}
		if v.MinWorking != nil && (*v.MinWorking < 0 || *v.MinWorking > len(v.Logins)) {
			return nil, yamlx.Errorf(file, n, "verify_access: min_working %d: want 0 to %d (the number of logins)", *v.MinWorking, len(v.Logins))
		}
		if v.Parallel <= 0 {
			v.Parallel = loginParallel
		}
		return v, nil
	})
}

// Queries implements Module: none. verify_access reads no host state of
// its own, so it never adds a round trip; the facts other tasks gathered
// only order its logins.
func (v *VerifyAccess) Queries() []Query { return nil }

// queries implements planner.
func (v *VerifyAccess) queries(Conn) []Query { return nil }

// sshdFacts: none are read.
func (*VerifyAccess) sshdFacts() bool { return false }

// plan implements planner: the logins, their key files made absolute
// against the playbook's directory, in the order the first wave makes
// them: users whose gathered facts already show a lockout cause
// (lockoutHint, from env.Facts' cache) after the others.
func (v *VerifyAccess) plan(env *Env, _ []any) (*Plan, error) {
	dir := env.Dir
	if dir == "" {
		dir = v.dir
	}
	logins, need := v.SafetyLogins(dir)
	op := &verifyLogins{
		paths:    v.WaysIn(),
		sudo:     v.Sudo,
		need:     need,
		parallel: v.Parallel,
		logins:   make([]verifyLogin, len(logins)),
	}
	doubt := make([]bool, len(logins))
	for i, l := range logins {
		op.logins[i] = verifyLogin{Login: l, hint: lockoutHint(env, l.User)}
		doubt[i] = op.logins[i].hint != ""
	}
	op.order = likelyFirst(doubt)
	return &Plan{Ops: []Op{op}}, nil
}

// likelyFirst returns the indexes of doubt in order, those doubted last.
func likelyFirst(doubt []bool) []int {
	order := make([]int, len(doubt))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return !doubt[order[a]] && doubt[order[b]] })
	return order
}

// verifyLogins proves every login on every path with fresh logins
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
type verifyLogins struct {
	logins []verifyLogin // in the playbook's order, which the rows keep
	// order is the first wave's: indexes into logins, those whose hint
	// is set last. Later waves put last the users refused so far.
	order    []int
	paths    []Path
	sudo     bool // check sudo -n true too
	need     int  // min_working
	parallel int  // logins at once on this host
}

// verifyLogin is one login of verifyLogins, with the lockout cause its
// user's facts already showed when planned ("" when none).
type verifyLogin struct {
	Login
	hint string
}

func (*verifyLogins) ReadOnly() bool { return true }

// planned: logins change nothing.
func (*verifyLogins) planned() []Change { return nil }

// String lists the logins in the first wave's order, the paths, and what
// must work.
func (o *verifyLogins) String() string {
	var b strings.Builder
	names := make([]string, len(o.paths))
	for i, p := range o.paths {
		names[i] = p.Name
	}
	fmt.Fprintf(&b, "fresh logins, one wave per path: %s; at most %d at once", strings.Join(names, ", "), o.parallel)
	if o.sudo {
		b.WriteString("; sudo -n true too")
	}
	b.WriteString("\n")
	for _, i := range o.order {
		l := o.logins[i]
		fmt.Fprintf(&b, "- %s with %s", l.User, l.KeyFile)
		if l.hint != "" {
			fmt.Fprintf(&b, " (last: likely refused, %s)", l.hint)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "min_working %d of %d on every path\n", o.need, len(o.logins))
	return b.String()
}

func (o *verifyLogins) run(ctx context.Context, _ Runner, env *Env, res *Result) error {
	if env.Dial == nil {
		return errors.New("verify_access: no way to open fresh logins here")
	}
	np := len(o.paths)
	rows := make([]Access, len(o.logins)*np)
	doubt := make([]bool, len(o.logins))
	for i, l := range o.logins {
		doubt[i] = l.hint != ""
	}
	order := o.order
	for pi, p := range o.paths {
		if pi > 0 {
			order = likelyFirst(doubt)
		}
		eachLogin(len(order), o.parallel, func(n int) {
			i := order[n]
			l := o.logins[i]
			row := &rows[i*np+pi]
			if err := ctx.Err(); err != nil {
				*row = Access{User: l.User, Path: p.Name, Error: err.Error()}
				return
			}
			*row = o.login(ctx, env, l.Login, p)
		})
		for i := range o.logins {
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
func (o *verifyLogins) judge(rows []Access) error {
	working := map[string]bool{}
	for _, l := range o.logins {
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
	if n >= o.need {
		return nil
	}
	sort.Strings(broken)
	sort.Strings(penalised)
	msg := fmt.Sprintf("%d of %d break-glass users can log in on every path, fewer than min_working %d", n, len(o.logins), o.need)
	if len(broken) > 0 {
		msg += " (failing: " + strings.Join(broken, ", ") + ")"
	}
	if len(penalised) > 0 {
		msg += " (not proven, their logins cut by sshd's PerSourcePenalties for this address: " + strings.Join(penalised, ", ") + ")"
	}
	return errors.New(msg)
}

// lockoutHint returns a lockout cause the facts this run gathered already
// show for user ("" when none, or when they were not gathered): such a
// user's logins go after the others', since sshd will likely refuse them
// and penalise this address for it. It only orders the logins; audit
// judges the causes.
func lockoutHint(env *Env, user string) string {
	if env.Facts == nil {
		return ""
	}
	v, ok := env.Facts.Get(UserFactsKey(user))
	if !ok {
		return ""
	}
	uf, ok := v.(*UserFacts)
	if !ok {
		return ""
	}
	switch {
	case !uf.Exists:
		return "no such user"
	case uf.Shadow != nil && uf.Shadow.Expire >= 0 && uf.Today >= uf.Shadow.Expire:
		return "account expired"
	}
	if uf.SSHDKnown() != nil || !uf.SSHD.StrictModes {
		return ""
	}
	for i := range uf.KeyFiles {
		walk, _ := uf.StrictModesWalk(&uf.KeyFiles[i])
		for _, st := range walk {
			if st.Exists && (st.Mode&0o022 != 0 || (st.UID != 0 && st.UID != uf.UID)) {
				return "StrictModes refuses " + st.Path
			}
		}
	}
	return ""
}

// login makes one fresh login as l on p and runs the probe.
func (o *verifyLogins) login(ctx context.Context, env *Env, l Login, p Path) (a Access) {
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
	if o.sudo {
		a.Sudo = &pr.Sudo
		if !pr.Sudo {
			a.Error = "sudo -n true failed"
		}
	}
	return a
}

// loginParallel bounds the fresh logins breakglass opens at once on one
// host (verify_access's default parallel, and the most proveAccess opens):
// every login is an unauthenticated connection until sshd accepts its key,
// and sshd drops new ones beyond MaxStartups (by default from 10 on).
const loginParallel = 8

// eachLogin calls login(i) for every i below n, in order, at most limit
// at a time (at least one), and returns when every call has returned.
// verify_access and proveAccess share it, so both stay under the bound.
func eachLogin(n, limit int, login func(i int)) {
	limit = max(1, min(limit, n))
	next := make(chan int)
	var wg sync.WaitGroup
	for range limit {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				login(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// SafetyLogins returns the logins this task proves, with key files made
// absolute against dir, and the number that must work: the safety net of
// access-cutting changes checks the same logins.
func (v *VerifyAccess) SafetyLogins(dir string) (logins []Login, minWorking int) {
	if dir == "" {
		dir = v.dir
	}
	for _, l := range v.Logins {
		key := l.KeyFile
		if !filepath.IsAbs(key) {
			key = filepath.Join(dir, key)
		}
		logins = append(logins, Login{User: l.User, KeyFile: key})
	}
	minWorking = len(v.Logins)
	if v.MinWorking != nil {
		minWorking = *v.MinWorking
	}
	return logins, minWorking
}

// WaysIn returns the paths this task proves each login on.
func (v *VerifyAccess) WaysIn() []Path {
	out := make([]Path, len(v.Paths))
	for i, p := range v.Paths {
		out[i] = p.Path
	}
	return out
}

var _ LoginSource = (*VerifyAccess)(nil)

// GrantsSudo names the users this task expects to sudo (with sudo: true):
// audit judges only them, and the control user, by sudo.
func (v *VerifyAccess) GrantsSudo() []string {
	if !v.Sudo {
		return nil
	}
	return v.ListUsers()
}

// ListUsers names the accounts whose logins this task proves, for audit.
func (v *VerifyAccess) ListUsers() []string {
	users := make([]string, len(v.Logins))
	for i, l := range v.Logins {
		users[i] = l.User
	}
	return users
}
