package tasks

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/go-multierror"
	"gopkg.in/yaml.v3"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/yamlx"
)

// Command runs a shell command on the host, for what no module covers.
// creates skips it when a path exists, removes skips it unless a path
// exists; that is what makes it idempotent. It counts as a change when it
// runs.
type Command struct {
	cmd     string
	creates string
	removes string
	chdir   string
}

var _ engine.Planner = (*Command)(nil)

func init() { Register("command", NewCommand) }

type commandArgs struct {
	Cmd     string `yaml:"cmd"`
	Creates string `yaml:"creates"`
	Removes string `yaml:"removes"`
	Chdir   string `yaml:"chdir"`
}

// Output kept from each of stdout and stderr: the first commandHead bytes
// and the last commandTail bytes.
const (
	commandHead = 1024
	commandTail = 3072
)

// NewCommand decodes the arguments of a command task.
func NewCommand(file string, args *yaml.Node) (Module, error) {
	var a commandArgs
	if err := yamlx.Decode(file, args, &a); err != nil {
		return nil, err
	}
	args = yamlx.Resolve(args)
	var errs *multierror.Error
	bad := argError(file, "command", args, &errs)
	switch {
	case strings.TrimSpace(a.Cmd) == "":
		bad(moduleArg(args, "cmd"), "cmd is required")
	case strings.ContainsRune(a.Cmd, 0):
		bad(moduleArg(args, "cmd"), "cmd contains a NUL byte")
	}
	for _, f := range []struct{ key, val string }{{"creates", a.Creates}, {"removes", a.Removes}, {"chdir", a.Chdir}} {
		if f.val == "" {
			continue
		}
		if err := shell.ValidPath(f.val); err != nil {
			bad(moduleArg(args, f.key), "%s: %v", f.key, err)
		}
	}
	if err := errs.ErrorOrNil(); err != nil {
		return nil, err
	}
	return &Command{cmd: a.Cmd, creates: a.Creates, removes: a.Removes, chdir: a.Chdir}, nil
}

func commandExistsKey(path string) string { return "command.exists " + path }

// commandExistsScript is command_exists.sh, the guard query after its
// header.
//
//go:embed command_exists.sh
var commandExistsScript string

func commandExistsQuery(path string) Query {
	return Query{
		Key:    commandExistsKey(path),
		Script: "p=" + shell.Quote(path) + "\n" + commandExistsScript,
		Parse: func(out []byte) (any, error) {
			switch strings.TrimSpace(string(out)) {
			case "yes":
				return true, nil
			case "no":
				return false, nil
			}
			return nil, fmt.Errorf("unexpected output %q", out)
		},
	}
}

// Queries implements Module: whether the guard paths exist.
func (c *Command) Queries() []Query {
	var qs []Query
	if c.creates != "" {
		qs = append(qs, commandExistsQuery(c.creates))
	}
	if c.removes != "" {
		qs = append(qs, commandExistsQuery(c.removes))
	}
	return qs
}

// PlanQueries implements engine.Planner.
func (c *Command) PlanQueries(Conn) []Query { return c.Queries() }

// sshdFacts: a command's guards do not depend on sshd.
func (*Command) ConnFacts() bool { return false }

// wouldRun is whether the guards let the command run.
func (c *Command) wouldRun(exists func(string) bool) bool {
	if c.creates != "" && exists(c.creates) {
		return false
	}
	if c.removes != "" && !exists(c.removes) {
		return false
	}
	return true
}

// summary is the command on one short line, for messages.
func (c *Command) summary() string {
	s := strings.Join(strings.Fields(c.cmd), " ")
	if utf8.RuneCountInString(s) > 120 {
		r := []rune(s)
		s = string(r[:117]) + "..."
	}
	return s
}

// Plan implements engine.Planner: the guard facts decide whether the command
// runs, and when it does the plan is its script (commandOp).
//
// In check mode nothing changes the host, so the facts are the host as
// the command would find it, and a guard that stops the command leaves
// nothing to do. Outside check mode they were gathered before the
// play's earlier tasks ran, which may have created or removed a guard
// path (a key file installed, a marker another command removed): a guard
// that stops the command by the facts may not by the time it runs, so
// the script runs and tests the guards on the host (one round trip, as
// many as the facts would have cost).
func (c *Command) Plan(env *Env, facts []any) (*Plan, error) {
	exists := map[string]bool{}
	for i, q := range c.Queries() {
		b, ok := facts[i].(bool)
		if !ok {
			return nil, fmt.Errorf("command %q: fact %s has type %T", c.summary(), q.Key, facts[i])
		}
		exists[q.Key] = b
	}
	if env.Check && !c.wouldRun(func(p string) bool { return exists[commandExistsKey(p)] }) {
		return &Plan{}, nil
	}
	keys := make([]string, 0, 2)
	for _, q := range c.Queries() {
		keys = append(keys, q.Key)
	}
	return &Plan{Ops: []Op{&commandOp{
		summary: c.summary(), cmd: c.cmd, creates: c.creates, removes: c.removes, chdir: c.chdir, guards: keys,
	}}}, nil
}

// commandOp runs one command through command.sh, which tests the guards
// again on the host and returns the head and tail of the command's
// output. It counts as a change when the command ran.
type commandOp struct {
	summary                      string // the command on one line, for messages
	cmd, creates, removes, chdir string
	// guards are the guards' fact keys (creates, then removes, those
	// set): once the command ran, command.sh reads them again in the same
	// round trip, so that a later task plans without another.
	guards []string
}

func (*commandOp) ReadOnly() bool { return false }

// String is the header of the script the op runs, with its values; the
// rest is command.sh.
func (o *commandOp) String() string { return o.header() + "# then command.sh\n" }

// planned is what check mode reports: the plan holds the op only
// when the guards let the command run.
func (o *commandOp) Planned() []Change {
	return []Change{{What: "would run: " + o.summary}}
}

// script is command.sh after a header that sets this command's values.
func (o *commandOp) script() []byte { return []byte(o.header() + commandScript) }

// header sets the values command.sh reads, each quoted.
func (o *commandOp) header() string {
	return fmt.Sprintf("creates=%s\nremoves=%s\nchdir=%s\ncmd=%s\nheadn=%d\ntailn=%d\n",
		shell.Quote(o.creates), shell.Quote(o.removes), shell.Quote(o.chdir), shell.Quote(o.cmd), commandHead, commandTail)
}

// commandScript is command.sh, the wrapper after its header.
//
//go:embed command.sh
var commandScript string

func (o *commandOp) Run(ctx context.Context, r Runner, env *Env, res *Result) error {
	out, err := r.Run(ctx, "/bin/sh -s", o.script())
	if err != nil {
		return fmt.Errorf("command %q: %w", o.summary, err)
	}
	co, err := parseCommandOutput(out)
	if err != nil {
		return fmt.Errorf("command %q: %w", o.summary, err)
	}
	switch co.outcome {
	case "skip":
		return nil
	case "nochdir":
		return fmt.Errorf("command %q: chdir %s: no such directory, or not one", o.summary, o.chdir)
	}
	if env.Facts != nil {
		// Whatever the command touched is unknown: its guards are what
		// command.sh saw after it, or forgotten.
		for i, k := range o.guards {
			if len(co.guards) == len(o.guards) {
				env.Facts.Set(k, co.guards[i])
			} else {
				env.Facts.Delete(k)
			}
		}
	}
	what := fmt.Sprintf("ran: %s (exit %d)", o.summary, co.status)
	if co.stdout != "" {
		what += "\nstdout:\n" + strings.TrimRight(co.stdout, "\n")
	}
	if co.stderr != "" {
		what += "\nstderr:\n" + strings.TrimRight(co.stderr, "\n")
	}
	res.Changed = true
	res.Changes = append(res.Changes, Change{What: what})
	if co.status != 0 {
		return &CommandError{Cmd: o.summary, Status: co.status, Stderr: co.stderr}
	}
	return nil
}

// CommandError is a command that ran and exited non-zero.
type CommandError struct {
	Cmd    string
	Status int
	Stderr string // possibly shortened in the middle
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("command %q: exit status %d", e.Cmd, e.Status)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

type commandOutput struct {
	outcome        string // "skip", "nochdir" or "ran"
	status         int
	stdout, stderr string
	// guards are whether the guard paths (creates, then removes, those
	// set) exist once the command ran.
	guards []bool
}

// parseCommandOutput reads what command.sh prints: "skip", "nochdir", or
// "ran STATUS" followed by two frames "NAME SIZE HEAD TAIL\n" + HEAD+TAIL
// bytes + "\n", then a line "guard yes|no" per guard path.
func parseCommandOutput(out []byte) (commandOutput, error) {
	var o commandOutput
	line, rest, _ := strings.Cut(string(out), "\n")
	switch {
	case line == "skip" || line == "nochdir":
		o.outcome = line
		return o, nil
	case strings.HasPrefix(line, "ran "):
		n, err := strconv.Atoi(line[len("ran "):])
		if err != nil {
			return o, fmt.Errorf("unexpected output %q", line)
		}
		o.outcome, o.status = "ran", n
	default:
		return o, fmt.Errorf("unexpected output %q", line)
	}
	for _, dst := range []*string{&o.stdout, &o.stderr} {
		hdr, after, ok := strings.Cut(rest, "\n")
		f := strings.Fields(hdr)
		if !ok || len(f) != 4 {
			return o, fmt.Errorf("unexpected output frame %q", hdr)
		}
		var nums [3]int
		for i := range nums {
			v, err := strconv.Atoi(f[i+1])
			if err != nil || v < 0 {
				return o, fmt.Errorf("unexpected output frame %q", hdr)
			}
			nums[i] = v
		}
		size, head, tail := nums[0], nums[1], nums[2]
		if len(after) < head+tail+1 {
			return o, fmt.Errorf("output frame %q is cut short", hdr)
		}
		if after[head+tail] != '\n' {
			return o, fmt.Errorf("output frame %q does not end where it says", hdr)
		}
		text := after[:head]
		if omitted := size - head - tail; omitted > 0 {
			text += fmt.Sprintf("\n[... %d bytes left out ...]\n", omitted)
		}
		text += after[head : head+tail]
		*dst = strings.ToValidUTF8(text, "\uFFFD")
		rest = after[head+tail+1:]
	}
	for _, line := range strings.Split(strings.TrimSuffix(rest, "\n"), "\n") {
		switch line {
		case "":
		case "guard yes", "guard no":
			o.guards = append(o.guards, line == "guard yes")
		default:
			return o, fmt.Errorf("unexpected output %q", line)
		}
	}
	return o, nil
}
