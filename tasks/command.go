package tasks

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/go-multierror"
	"gopkg.in/yaml.v3"

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

var _ Module = (*Command)(nil)
var _ Gatherer = (*Command)(nil)

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

func commandExistsQuery(path string) Query {
	return Query{
		Key:    commandExistsKey(path),
		Script: fmt.Sprintf("if [ -e %s ]; then echo yes; else echo no; fi\n", shell.Quote(path)),
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

// Queries implements Gatherer: whether the guard paths exist. Only check
// mode decides on them; a real run tests the guards on the host in the
// same script that runs the command, as an earlier task may have changed
// them.
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

// wouldRun is the plan: whether the guards let the command run.
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

// Run implements Module.
func (c *Command) Run(ctx context.Context, r Runner, env *Env) (*Result, error) {
	if env.Check {
		var ferr error
		exists := func(p string) bool {
			v, err := env.Fact(ctx, r, commandExistsQuery(p))
			if err != nil {
				ferr = err
				return false
			}
			b, _ := v.(bool)
			return b
		}
		run := c.wouldRun(exists)
		if ferr != nil {
			return nil, fmt.Errorf("command %q: %w", c.summary(), ferr)
		}
		if !run {
			return &Result{}, nil
		}
		return &Result{Changed: true, Changes: []Change{{What: "would run: " + c.summary()}}}, nil
	}

	out, err := r.Run(ctx, "/bin/sh -s", c.script())
	if err != nil {
		return nil, fmt.Errorf("command %q: %w", c.summary(), err)
	}
	o, err := parseCommandOutput(out)
	if err != nil {
		return nil, fmt.Errorf("command %q: %w", c.summary(), err)
	}
	switch o.outcome {
	case "skip":
		return &Result{}, nil
	case "nochdir":
		return nil, fmt.Errorf("command %q: chdir %s: no such directory, or not one", c.summary(), c.chdir)
	}
	// It ran: whatever it touched is unknown, so the guard facts are stale.
	if env.Facts != nil {
		for _, q := range c.Queries() {
			env.Facts.Delete(q.Key)
		}
	}
	what := fmt.Sprintf("ran: %s (exit %d)", c.summary(), o.status)
	if o.stdout != "" {
		what += "\nstdout:\n" + strings.TrimRight(o.stdout, "\n")
	}
	if o.stderr != "" {
		what += "\nstderr:\n" + strings.TrimRight(o.stderr, "\n")
	}
	res := &Result{Changed: true, Changes: []Change{{What: what}}}
	if o.status != 0 {
		return res, &CommandError{Cmd: c.summary(), Status: o.status, Stderr: o.stderr}
	}
	return res, nil
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

// script tests the guards and runs the command in one round trip. The
// command gets /dev/null as stdin (its own stdin would be the rest of this
// script); its output goes to files so that only the head and tail of each
// stream come back.
func (c *Command) script() []byte {
	var b strings.Builder
	if c.creates != "" {
		fmt.Fprintf(&b, "if [ -e %s ]; then echo skip; exit 0; fi\n", shell.Quote(c.creates))
	}
	if c.removes != "" {
		fmt.Fprintf(&b, "if [ ! -e %s ]; then echo skip; exit 0; fi\n", shell.Quote(c.removes))
	}
	b.WriteString(`t=$(mktemp -d) || exit 1
trap 'rm -rf -- "$t"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
`)
	if c.chdir != "" {
		fmt.Fprintf(&b, "if ! cd -- %s 2>/dev/null; then echo nochdir; exit 0; fi\n", shell.Quote(c.chdir))
	}
	fmt.Fprintf(&b, "/bin/sh -c %s </dev/null >\"$t/out\" 2>\"$t/err\"\n", shell.Quote(c.cmd))
	fmt.Fprintf(&b, `rc=$?
echo "ran $rc"
emit() {
	n=$(wc -c <"$2" | tr -d ' ')
	if [ "$n" -le %[1]d ]; then
		printf '%%s %%s %%s 0\n' "$1" "$n" "$n"; cat -- "$2"
	else
		printf '%%s %%s %[2]d %[3]d\n' "$1" "$n"; head -c %[2]d -- "$2"; tail -c %[3]d -- "$2"
	fi
	echo
}
emit stdout "$t/out"
emit stderr "$t/err"
`, commandHead+commandTail, commandHead, commandTail)
	return []byte(b.String())
}

type commandOutput struct {
	outcome        string // "skip", "nochdir" or "ran"
	status         int
	stdout, stderr string
}

// parseCommandOutput reads what script prints: "skip", "nochdir", or
// "ran STATUS" followed by two frames "NAME SIZE HEAD TAIL\n" + HEAD+TAIL
// bytes + "\n".
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
		text := after[:head]
		if omitted := size - head - tail; omitted > 0 {
			text += fmt.Sprintf("\n[... %d bytes left out ...]\n", omitted)
		}
		text += after[head : head+tail]
		*dst = strings.ToValidUTF8(text, "\uFFFD")
		rest = after[head+tail+1:]
	}
	return o, nil
}
