// Package tasks holds breakglass's modules: user, authorized_key,
// ssh_permissions, sudoers, sshd, secondary_sshd, verify_access and command.
//
// A module is decoded from its playbook arguments once per host (after
// variable substitution). It names the facts it reads and makes a Plan from
// them with no I/O (engine.Planner); internal/engine executes the plan
// (check mode: reports it and runs only what reads). The package also
// holds the facts model modules and audit share (UserFacts and its
// queries, the StrictModes judgement).
package tasks

import (
	"context"
	"fmt"
	"sort"

	"gopkg.in/yaml.v3"
)

// Module is one decoded task of one host. A playbook module plans: it
// names the facts it reads and makes a Plan from them with no I/O (it is an
// engine.Planner; every playbook module is in this package), and the
// runner has the engine execute that plan (engine.Executor). A task that
// is not planned is a Program.
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
