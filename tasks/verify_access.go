package tasks

import (
	"fmt"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/breakglass/breakglass/internal/engine"
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

var _ engine.Planner = (*VerifyAccess)(nil)

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
			v.Parallel = engine.LoginParallel
		}
		return v, nil
	})
}

// Queries implements Module: none. verify_access reads no host state of
// its own, so it never adds a round trip; the facts other tasks gathered
// only order its logins.
func (v *VerifyAccess) Queries() []Query { return nil }

// PlanQueries implements engine.Planner.
func (v *VerifyAccess) PlanQueries(Conn) []Query { return nil }

// sshdFacts: none are read.
func (*VerifyAccess) ConnFacts() bool { return false }

// Plan implements engine.Planner: the logins, their key files made absolute
// against the playbook's directory, in the order the first wave makes
// them: users whose gathered facts already show a lockout cause
// (lockoutHint, from env.Facts' cache) after the others.
func (v *VerifyAccess) Plan(env *Env, _ []any) (*Plan, error) {
	dir := env.Dir
	if dir == "" {
		dir = v.dir
	}
	logins, need := v.SafetyLogins(dir)
	op := &engine.VerifyLogins{
		Logins:   logins,
		Paths:    v.WaysIn(),
		Sudo:     v.Sudo,
		Need:     need,
		Parallel: v.Parallel,
	}
	op.Doubt = doubtOf(env, logins)
	return &Plan{Ops: []Op{op}}, nil
}

// loginDoubt returns the lockout causes the facts this run gathered show
// for env's break-glass logins (lockoutHint): the proof of a guard or a
// transaction makes those logins last. Nil when there are none.
func loginDoubt(env *Env) engine.Doubt { return doubtOf(env, env.Logins) }

// doubtOf returns the lockout causes the facts this run gathered show for
// the users of logins (lockoutHint); nil when there are none.
func doubtOf(env *Env, logins []Login) engine.Doubt {
	var d engine.Doubt
	for _, l := range logins {
		if h := lockoutHint(env, l.User); h != "" {
			if d == nil {
				d = engine.Doubt{}
			}
			d[l.User] = h
		}
	}
	return d
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
