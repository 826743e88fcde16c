// ssh_permissions: make every path sshd's StrictModes check walks
// acceptable, with the smallest change.
//
// What sshd checks, and which component needs which repair, is judged
// once for apply, audit and recover: UserFacts.StrictModes in
// strictmodes.go.
//
// Repairs, each reported as a change with the mode or owner before and
// after:
//   - a component writable by group or others gets exactly `chmod go-w`;
//   - a component owned by someone other than the user and root is chowned
//     to the user when it is the key file or lies inside home, and to root
//     when it is a directory outside home (a shared directory such as
//     /etc/ssh/authorized_keys must not belong to one user). Every repair
//     goes through the no-follow helpers (nofollow.sh): inside a directory
//     a user can change, a key file is handed over as a copy the user
//     writes, not chowned, and a link there is refused, never followed;
//   - a missing home directory is created (the user's, mode 0700).
//
// It never chmods a shared sticky directory (/tmp): that would break the
// host, so it reports an error instead. A key file that is not a regular
// file is an error too, as replacing it could destroy data.
//
// Strict by design: Debian's OpenSSH (and Ubuntu's, which inherits the
// patch) tolerates a group-writable file or directory when the group has
// no member but the owner; upstream OpenSSH and RHEL refuse any group
// write. breakglass repairs what that exception accepts all the same
// (audit reports it as a risk): it removes group write wherever sshd
// looks, so what it leaves is accepted by upstream OpenSSH and every
// distribution's sshd, and stays accepted if the group gains a member. It also checks with StrictModes off, which may be turned
// on again at any time.

package tasks

import (
	"errors"
	"fmt"
	"path"

	"github.com/hashicorp/go-multierror"
	"gopkg.in/yaml.v3"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/yamlx"
)

// SSHPermissions repairs the ownership and modes sshd's StrictModes
// checks, for each of its users. See the comment at the top of the file.
type SSHPermissions struct {
	Users []string `yaml:"users"`
}

var (
	_ Module         = (*SSHPermissions)(nil)
	_ engine.Planner = (*SSHPermissions)(nil)
)

func init() { Register("ssh_permissions", NewSSHPermissions) }

// NewSSHPermissions decodes an ssh_permissions task's arguments.
func NewSSHPermissions(file string, args *yaml.Node) (Module, error) {
	p := &SSHPermissions{}
	if err := yamlx.Decode(file, args, p); err != nil {
		return nil, err
	}
	var errs *multierror.Error
	if len(p.Users) == 0 {
		errs = multierror.Append(errs, yamlx.Errorf(file, moduleArg(args, "users"), "ssh_permissions: users: name at least one user"))
	}
	seen := map[string]bool{}
	for i, u := range p.Users {
		n := moduleArgElem(args, "users", i)
		if err := shell.ValidUser(u); err != nil {
			errs = multierror.Append(errs, yamlx.Errorf(file, n, "ssh_permissions: %v", err))
		} else if seen[u] {
			errs = multierror.Append(errs, yamlx.Errorf(file, n, "ssh_permissions: user %s is listed twice", u))
		}
		seen[u] = true
	}
	if err := errs.ErrorOrNil(); err != nil {
		return nil, err
	}
	return p, nil
}

// Queries returns the users' facts: sshd's effective AuthorizedKeysFile
// and the stat of everything StrictModes walks.
func (p *SSHPermissions) Queries() []Query { return p.PlanQueries(Conn{}) }

// PlanQueries implements engine.Planner.
func (p *SSHPermissions) PlanQueries(c Conn) []Query {
	qs := make([]Query, len(p.Users))
	for i, u := range p.Users {
		qs[i] = UserFactsQuery(u, c)
	}
	return qs
}

// sshdFacts: the paths are those sshd walks for this connection.
func (*SSHPermissions) ConnFacts() bool { return true }

// Plan implements engine.Planner: facts are the users' facts.
func (p *SSHPermissions) Plan(env *Env, facts []any) (*Plan, error) {
	ufs := make([]*UserFacts, len(facts))
	stale := make([]string, len(p.Users))
	for i, v := range facts {
		uf, ok := v.(*UserFacts)
		if !ok {
			return nil, fmt.Errorf("fact %s holds %T", UserFactsKey(p.Users[i]), v)
		}
		ufs[i], stale[i] = uf, UserFactsKey(p.Users[i])
	}
	steps, err := planPermissions(ufs, env.Check)
	if err != nil {
		return nil, err
	}
	return &Plan{Steps: engineSteps(steps), Stale: stale}, nil
}

// planPermissions computes the repairs for every user. A user that does
// not exist is skipped in check mode (a user task before this one would
// create it) and an error otherwise.
func planPermissions(ufs []*UserFacts, check bool) ([]hostStep, error) {
	var (
		steps []hostStep
		errs  []error
		done  = map[[2]string]PermFix{} // op, path → fix
	)
	add := func(f PermFix, ch Change) error {
		k := [2]string{f.Op, f.Path}
		if prev, dup := done[k]; dup {
			if f.Op == "chown" && prev.Arg != f.Arg {
				return fmt.Errorf("%s must belong to %s for one user and to %s for another: sshd cannot accept both", f.Path, prev.Arg, f.Arg)
			}
			return nil
		}
		done[k] = f
		steps = append(steps, hostStep{change: ch, cmd: shell.Join(f.Argv()...)})
		return nil
	}
	for _, uf := range ufs {
		if !uf.Exists {
			if !check {
				errs = append(errs, fmt.Errorf("user %s does not exist", uf.Name))
			}
			continue
		}
		if err := uf.SSHDKnown(); err != nil {
			errs = append(errs, err)
			continue
		}
		switch {
		case uf.Home == "":
			errs = append(errs, fmt.Errorf("user %s has no home directory in passwd", uf.Name))
			continue
		case !uf.HomeStat.Exists:
			steps = append(steps, createHomeStep(uf.Name, realHome(uf, uf.Home)))
		case !uf.HomeStat.IsDir():
			errs = append(errs, fmt.Errorf("home %s of %s is not a directory", uf.Home, uf.Name))
			continue
		}
		if uf.HomeLink != nil {
			errs = append(errs, fmt.Errorf("user %s: home: %w", uf.Name, uf.HomeLink))
			continue
		}
		for i := range uf.KeyFiles {
			kf := &uf.KeyFiles[i]
			if err := kf.Refused(); err != nil && kf.Link != "" {
				errs = append(errs, fmt.Errorf("user %s: %w", uf.Name, err))
				continue
			}
			if kf.Real == "" {
				errs = append(errs, fmt.Errorf("user %s: cannot expand or resolve AuthorizedKeysFile %q", uf.Name, kf.Pattern))
				continue
			}
			v, err := uf.StrictModes(kf, nil)
			if err != nil {
				errs = append(errs, fmt.Errorf("user %s: %w", uf.Name, err))
				continue
			}
			// From the top down: a directory is made safe before what is
			// in it.
			for j := len(v.Walk) - 1; j >= 0; j-- {
				c := v.Walk[j]
				if c.SharedSticky {
					errs = append(errs, fmt.Errorf("user %s: %s is a shared sticky directory (mode %04o) that sshd walks for %s; breakglass will not change it: move the key file", uf.Name, c.Path, c.Perm(), kf.Real))
				}
				own, mod := c.Fix(uf.Name)
				if own != nil {
					ch := Change{What: fmt.Sprintf("chown %s %s (owner uid %d -> %s): sshd accepts only %s or root", own.Arg, c.Path, c.UID, own.Arg, uf.Name), Path: c.Path}
					if err := add(*own, ch); err != nil {
						errs = append(errs, err)
					}
				}
				if mod != nil {
					ch := Change{What: fmt.Sprintf("chmod go-w %s (%04o -> %04o)", c.Path, c.Perm(), c.Perm()&^0o022), Path: c.Path}
					if err := add(*mod, ch); err != nil {
						errs = append(errs, err)
					}
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return steps, nil
}

// createHomeStep creates a missing home directory for user name, mode 0700,
// its parents as root with mode 0755.
func createHomeStep(name, home string) hostStep {
	owner := name + ":"
	cmd := shell.Join("bg_mkdir", "0700", home, owner)
	if parent := path.Dir(home); parent != "/" {
		cmd = shell.Join("bg_mkparents", parent) + "\n" + cmd
	}
	return hostStep{
		change: Change{What: fmt.Sprintf("create home %s of %s (owner %s, 0700)", home, name, name), Path: home},
		cmd:    cmd,
	}
}

// ListUsers names the accounts whose paths this task repairs, for audit.
func (p *SSHPermissions) ListUsers() []string { return p.Users }
