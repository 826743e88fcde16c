package tasks

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
	"gopkg.in/yaml.v3"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/yamlx"
)

// User manages one account. With state present (the default) it creates
// the account or repairs it so that a key-only login really works:
//
//   - the password field is "*", not useradd's "!" (with UsePAM no, sshd
//     refuses an account whose password field starts with "!"); a locked
//     field is replaced by "*", which keeps password logins impossible;
//   - the account does not expire (chage -E -1);
//   - no password change is forced: a last-change day of 0 is set to today,
//     and password ageing is removed (chage -M -1) when the account has no
//     password or the password has aged out;
//   - the home directory exists and is owned by the user;
//   - the login shell exists and is executable. Without shell:, a missing,
//     non-executable, nologin or false shell is replaced by /bin/bash (or
//     /bin/sh).
//
// Accounts it creates get all of that at once: useradd -m -p '*' -f -1
// -K PASS_MAX_DAYS=-1, with an empty -e. shell, home and comment are set with usermod
// when they differ; groups are supplementary groups, appended (usermod -a
// -G), never removed. A changed home is not moved: the new one is created
// when missing.
//
// With state absent the account is removed with userdel (its home is
// kept). It refuses to remove the user this run is connected as, and root.
type User struct {
	Name    string   `yaml:"name"`
	State   string   `yaml:"state"`
	Shell   string   `yaml:"shell"`
	Home    string   `yaml:"home"`
	Groups  []string `yaml:"groups"`
	Comment string   `yaml:"comment"`
}

var (
	_ Module         = (*User)(nil)
	_ engine.Planner = (*User)(nil)
)

func init() { Register("user", NewUser) }

// ErrControlUser means a task would remove the user this run is connected
// as.
var ErrControlUser = errors.New("refusing to remove the user this run is connected as")

// fallbackShells are tried, in order, when an account needs a login shell
// and the task names none.
var fallbackShells = []string{"/bin/bash", "/bin/sh"}

// NewUser decodes a user task's arguments.
func NewUser(file string, args *yaml.Node) (Module, error) {
	u := &User{}
	if err := yamlx.Decode(file, args, u); err != nil {
		return nil, err
	}
	var errs *multierror.Error
	bad := func(key string, format string, v ...any) {
		errs = multierror.Append(errs, yamlx.Errorf(file, moduleArg(args, key), "user: "+format, v...))
	}
	if u.Name == "" {
		errs = multierror.Append(errs, yamlx.Errorf(file, args, "user: name is required"))
	} else if err := shell.ValidUser(u.Name); err != nil {
		bad("name", "%v", err)
	}
	switch u.State {
	case "":
		u.State = "present"
	case "present", "absent":
	default:
		bad("state", "state %q: want present or absent", u.State)
	}
	if u.Shell != "" {
		if err := shell.ValidPath(u.Shell); err != nil {
			bad("shell", "shell: %v", err)
		}
	}
	if u.Home != "" {
		if err := shell.ValidPath(u.Home); err != nil {
			bad("home", "home: %v", err)
		} else if strings.ContainsRune(u.Home, ':') {
			bad("home", "home %q: a passwd field cannot hold ':'", u.Home)
		}
	}
	seen := map[string]bool{}
	for i, g := range u.Groups {
		n := moduleArgElem(args, "groups", i)
		switch {
		case shell.ValidUser(g) != nil:
			errs = multierror.Append(errs, yamlx.Errorf(file, n, "user: invalid group name %q: want [a-z_][a-z0-9_-]*, at most 32 characters", g))
		case seen[g]:
			errs = multierror.Append(errs, yamlx.Errorf(file, n, "user: group %s is listed twice", g))
		}
		seen[g] = true
	}
	if strings.ContainsAny(u.Comment, ":\x7f") || strings.ContainsFunc(u.Comment, func(r rune) bool { return r < 0x20 }) {
		bad("comment", "comment %q: no ':' or control characters (it is a passwd field)", u.Comment)
	} else if len(u.Comment) > 255 {
		bad("comment", "comment: longer than 255 bytes")
	}
	if err := errs.ErrorOrNil(); err != nil {
		return nil, err
	}
	return u, nil
}

// moduleArg returns the value node of key in mapping m, or m itself when
// there is none (so an error still has a position).
func moduleArg(m *yaml.Node, key string) *yaml.Node {
	m = yamlx.Resolve(m)
	if m != nil && m.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return yamlx.Resolve(m.Content[i+1])
			}
		}
	}
	return m
}

// argError returns a function that adds a positioned error about a
// module's arguments to *errs; a nil node points at the arguments as a
// whole.
func argError(file, module string, args *yaml.Node, errs **multierror.Error) func(n *yaml.Node, format string, v ...any) {
	return func(n *yaml.Node, format string, v ...any) {
		if n == nil {
			n = args
		}
		*errs = multierror.Append(*errs, yamlx.Errorf(file, n, module+": "+format, v...))
	}
}

// moduleArgElem returns element i of the list under key in mapping m, or
// the nearest node that exists.
func moduleArgElem(m *yaml.Node, key string, i int) *yaml.Node {
	n := moduleArg(m, key)
	if n != nil && n.Kind == yaml.SequenceNode && i < len(n.Content) {
		return yamlx.Resolve(n.Content[i])
	}
	return n
}

// Queries returns the facts the task reads: the account, the stat of the
// shell (or of the fallback shells) and of an explicit home, and whether
// each group exists.
func (u *User) Queries() []Query { return u.PlanQueries(Conn{}) }

// PlanQueries implements engine.Planner. The account alone decides, so c is not
// used: the facts are the same for every connection.
func (u *User) PlanQueries(Conn) []Query {
	qs := []Query{UserFactsQuery(u.Name, Conn{})}
	if u.State == "absent" {
		return qs
	}
	if u.Home != "" {
		qs = append(qs, PathQuery(u.Home))
	}
	if u.Shell != "" {
		qs = append(qs, PathQuery(u.Shell))
	} else {
		for _, s := range fallbackShells {
			qs = append(qs, PathQuery(s))
		}
	}
	for _, g := range u.Groups {
		qs = append(qs, GroupQuery(g))
	}
	return qs
}

// sshdFacts: the account alone decides; sshd's settings do not.
func (*User) ConnFacts() bool { return false }

// Plan implements engine.Planner: vals are the values of Queries.
func (u *User) Plan(env *Env, vals []any) (*Plan, error) {
	qs := u.PlanQueries(Conn{})
	h := userHost{paths: map[string]PathStat{}, groups: map[string]bool{}}
	stale := []string{UserFactsKey(u.Name), GroupFactsKey(u.Name)}
	for i, q := range qs {
		switch v := vals[i].(type) {
		case *UserFacts:
			h.user = v
		case PathStat:
			h.paths[v.Path] = v
			if v.Path == u.Home {
				// Only the home can change here; shells do not.
				stale = append(stale, q.Key)
			}
		case bool:
			h.groups[strings.TrimPrefix(q.Key, GroupFactsKey(""))] = v
		default:
			return nil, fmt.Errorf("fact %s holds %T", q.Key, v)
		}
	}
	if h.user == nil {
		return nil, fmt.Errorf("user %s: no facts gathered", u.Name)
	}
	steps, err := u.planSteps(h, env.ControlUser)
	if err != nil {
		return nil, err
	}
	p := &Plan{Steps: engineSteps(steps), Stale: stale}
	if u.State == "absent" {
		p.Guard = u.removalGuard(env)
	}
	return p, nil
}

// removalGuard is the lockout guard of a removal: before the account
// goes, fresh logins must prove that the control user and min_working of
// the playbook's break-glass users, this one left out, still get in.
func (u *User) removalGuard(env *Env) *Guard {
	g := &Guard{Refusal: "user " + u.Name + ": not removed", Doubt: loginDoubt(env)}
	for _, l := range env.Logins {
		if l.User == u.Name {
			g.LeftOut = append(g.LeftOut, l)
		}
	}
	return g
}

// userHost is what a user task knows about the host.
type userHost struct {
	user   *UserFacts
	paths  map[string]PathStat // stat of the shells and home of the task
	groups map[string]bool     // whether each group of the task exists
}

// planSteps computes the changes that bring the account to the task's state.
func (u *User) planSteps(h userHost, controlUser string) ([]hostStep, error) {
	uf := h.user
	if u.State == "absent" {
		return u.planAbsent(uf, controlUser)
	}
	var missing []string
	for _, g := range u.Groups {
		if !h.groups[g] {
			missing = append(missing, g)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("user %s: group %s does not exist on this host", u.Name, strings.Join(missing, ", "))
	}
	loginShell, err := u.loginShell(h)
	if err != nil {
		return nil, err
	}
	if !uf.Exists {
		return u.planCreate(h, loginShell)
	}

	var steps []hostStep
	add := func(what string, words ...string) {
		steps = append(steps, hostStep{change: Change{What: what}, cmd: shell.Join(words...)})
	}
	home, homeStat := uf.Home, uf.HomeStat
	if u.Home != "" && u.Home != uf.Home {
		add(fmt.Sprintf("set home of %s to %s (was %s)", u.Name, u.Home, uf.Home), "usermod", "-d", u.Home, u.Name)
		home, homeStat = u.Home, h.paths[u.Home]
	}
	if home == uf.Home && uf.HomeLink != nil {
		return nil, fmt.Errorf("user %s: home: %w", u.Name, uf.HomeLink)
	}
	if loginShell != uf.Shell {
		add(fmt.Sprintf("set login shell of %s to %s (was %s)", u.Name, loginShell, describeShell(uf)), "usermod", "-s", loginShell, u.Name)
	}
	if u.Comment != "" && u.Comment != uf.Gecos {
		add(fmt.Sprintf("set comment of %s to %q (was %q)", u.Name, u.Comment, uf.Gecos), "usermod", "-c", u.Comment, u.Name)
	}
	var newGroups []string
	for _, g := range u.Groups {
		if !slices.Contains(uf.Groups, g) {
			newGroups = append(newGroups, g)
		}
	}
	if len(newGroups) > 0 {
		add(fmt.Sprintf("add %s to group %s", u.Name, strings.Join(newGroups, ", ")), "usermod", "-a", "-G", strings.Join(newGroups, ","), u.Name)
	}
	if sp := uf.Shadow; sp != nil {
		if sp.Password == PasswordLocked {
			add(fmt.Sprintf("set password field of %s to '*' (was locked with '!': with UsePAM no, sshd refuses the account; '*' keeps password logins impossible)", u.Name),
				"usermod", "-p", "*", u.Name)
		}
		last := sp.LastChange
		if last == 0 {
			add(fmt.Sprintf("stop forcing a password change on %s (last change day 0: the login would end at once)", u.Name),
				"chage", "-d", fmt.Sprint(uf.Today), u.Name)
			last = uf.Today
		}
		if sp.Ageing() {
			switch {
			case last >= 0 && uf.Today > last+sp.Max:
				add(fmt.Sprintf("remove password ageing of %s (the password aged out on %s: PAM forces a change no key login can make)", u.Name, day(last+sp.Max)),
					"chage", "-M", "-1", u.Name)
			case sp.KeyOnly():
				add(fmt.Sprintf("remove password ageing of %s (it has no password, so ageing could only lock it out, on %s)", u.Name, day(last+sp.Max)),
					"chage", "-M", "-1", u.Name)
			}
		}
		if sp.Expire >= 0 {
			when := "expires"
			if uf.Today > sp.Expire {
				when = "expired"
			}
			add(fmt.Sprintf("remove account expiry of %s (%s on %s)", u.Name, when, day(sp.Expire)), "chage", "-E", "-1", u.Name)
		}
	}
	s, err := u.homeSteps(home, realHome(uf, home), homeStat, uf.UID, false)
	if err != nil {
		return nil, err
	}
	return append(steps, s...), nil
}

func (u *User) planCreate(h userHost, loginShell string) ([]hostStep, error) {
	home, homeStat := h.user.Home, h.user.HomeStat
	if u.Home != "" {
		home, homeStat = u.Home, h.paths[u.Home]
	}
	words := []string{"useradd", "-m", "-d", home, "-s", loginShell, "-p", "*", "-e", "", "-f", "-1", "-K", "PASS_MAX_DAYS=-1"}
	if u.Comment != "" {
		words = append(words, "-c", u.Comment)
	}
	if len(u.Groups) > 0 {
		words = append(words, "-G", strings.Join(u.Groups, ","))
	}
	words = append(words, u.Name)
	what := fmt.Sprintf("create user %s (home %s, shell %s", u.Name, home, loginShell)
	if len(u.Groups) > 0 {
		what += ", groups " + strings.Join(u.Groups, ", ")
	}
	what += "; key-only: password field '*', no expiry, no password ageing)"
	steps := []hostStep{{change: Change{What: what}, cmd: shell.Join(words...)}}
	s, err := u.homeSteps(home, realHome(h.user, home), homeStat, -1, true)
	if err != nil {
		return nil, err
	}
	return append(steps, s...), nil
}

// realHome is the path the commands on home act on: the passwd home with
// the links root made resolved (the no-follow helpers refuse any link).
func realHome(uf *UserFacts, home string) string {
	if home == uf.Home && uf.HomeReal != "" {
		return uf.HomeReal
	}
	return home
}

// homeSteps makes home exist and belong to the user, acting on at (home
// resolved). uid is the user's, -1 for a user created by this plan
// (useradd -m makes a missing home but leaves one that exists as it is).
func (u *User) homeSteps(home, at string, st PathStat, uid int, creating bool) ([]hostStep, error) {
	owner := u.Name + ":"
	switch {
	case home == "":
		return nil, fmt.Errorf("user %s has no home directory in passwd", u.Name)
	case !st.Exists && creating:
		return nil, nil
	case !st.Exists:
		return []hostStep{createHomeStep(u.Name, at)}, nil
	case !st.IsDir():
		return nil, fmt.Errorf("home %s of %s exists and is not a directory", home, u.Name)
	case st.UID != uid:
		why := ""
		if creating {
			why = ", it existed before the user"
		}
		return []hostStep{{
			change: Change{What: fmt.Sprintf("chown %s %s (owner uid %d%s)", owner, home, st.UID, why), Path: home},
			cmd:    shell.Join("bg_chown", owner, at),
		}}, nil
	}
	return nil, nil
}

// loginShell returns the shell the account should have.
func (u *User) loginShell(h userHost) (string, error) {
	if u.Shell != "" {
		if !h.paths[u.Shell].Executable() {
			return "", fmt.Errorf("user %s: shell %s does not exist or is not an executable file on this host", u.Name, u.Shell)
		}
		return u.Shell, nil
	}
	if uf := h.user; uf.Exists && uf.ShellStat.Executable() && !noLoginShell(uf.ShellStat.Path) {
		return uf.Shell, nil
	}
	for _, s := range fallbackShells {
		if h.paths[s].Executable() {
			return s, nil
		}
	}
	return "", fmt.Errorf("user %s: none of %s is an executable file on this host", u.Name, strings.Join(fallbackShells, ", "))
}

func noLoginShell(p string) bool {
	b := path.Base(p)
	return b == "nologin" || b == "false"
}

func describeShell(uf *UserFacts) string {
	s := uf.Shell
	if s == "" {
		s = "empty, meaning /bin/sh"
	}
	switch st := uf.ShellStat; {
	case !st.Exists:
		return s + ", which does not exist"
	case !st.Executable():
		return s + ", which is not an executable file"
	case noLoginShell(st.Path):
		return s + ", which refuses logins"
	}
	return s
}

func (u *User) planAbsent(uf *UserFacts, controlUser string) ([]hostStep, error) {
	switch {
	case !uf.Exists:
		return nil, nil
	case u.Name == controlUser:
		return nil, fmt.Errorf("user %s: %w", u.Name, ErrControlUser)
	case uf.UID == 0:
		return nil, fmt.Errorf("user %s: refusing to remove an account with uid 0", u.Name)
	}
	return []hostStep{{
		change: Change{What: fmt.Sprintf("remove user %s (home %s kept)", u.Name, uf.Home)},
		cmd:    shell.Join("userdel", u.Name),
	}}, nil
}

// day formats a day count since 1970-01-01.
func day(d int64) string { return time.Unix(d*86400, 0).UTC().Format("2006-01-02") }

// ListUsers names the account this task manages, for audit.
func (u *User) ListUsers() []string { return []string{u.Name} }
