package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// errUsage marks an invocation error (exit 1).
var errUsage = errors.New("usage")

type multiString []string

func (m *multiString) String() string     { return strings.Join(*m, ",") }
func (m *multiString) Set(s string) error { *m = append(*m, s); return nil }

// options are the parsed command line.
type options struct {
	command     string
	playbook    string
	inventories multiString
	limit       string
	forks       int
	timeout     time.Duration
	knownHosts  string
	acceptNew   bool
	askBecome   bool
	verbose     bool
	noColor     bool
	format      string
	output      string
	metrics     string
	check       bool
	diff        bool
	allUsers    bool
	user        string
	key         string
	yes         bool
	sshConfig   string
}

func newFlagSet(o *options, command string) *flag.FlagSet {
	fs := flag.NewFlagSet("breakglass "+command, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var(&o.inventories, "i", "inventory file or directory (repeatable)")
	fs.Var(&o.inventories, "inventory", "inventory file or directory (repeatable)")
	fs.StringVar(&o.limit, "limit", "", "only hosts matching this Ansible host pattern")
	fs.StringVar(&o.limit, "l", "", "short for --limit")
	fs.IntVar(&o.forks, "forks", 50, "hosts worked on in parallel")
	fs.IntVar(&o.forks, "f", 50, "short for --forks")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "per-host connect and command timeout")
	fs.StringVar(&o.knownHosts, "known-hosts", "", "known_hosts file (default ~/.ssh/known_hosts)")
	fs.BoolVar(&o.acceptNew, "accept-new", false, "trust and record keys of hosts never seen before (a changed key is always refused)")
	fs.BoolVar(&o.askBecome, "ask-become-pass", false, "ask for the sudo password (or set BREAKGLASS_BECOME_PASSWORD)")
	fs.BoolVar(&o.askBecome, "K", false, "short for --ask-become-pass")
	fs.BoolVar(&o.verbose, "v", false, "show every task, not only changes and failures")
	fs.BoolVar(&o.noColor, "no-color", false, "no colour (NO_COLOR is honoured too)")
	fs.StringVar(&o.format, "format", "text", "report format: text, json or junit")
	fs.StringVar(&o.output, "output", "", "write the report to this file instead of stdout")
	fs.StringVar(&o.sshConfig, "ssh-config", "", "ssh client config (default ~/.ssh/config)")
	switch command {
	case "apply":
		fs.BoolVar(&o.check, "check", false, "change nothing; report what would change")
		fs.BoolVar(&o.check, "C", false, "short for --check")
		fs.BoolVar(&o.diff, "diff", false, "show file differences (never secrets)")
		fs.BoolVar(&o.diff, "D", false, "short for --diff")
	case "audit":
		fs.BoolVar(&o.allUsers, "all-users", false, "audit every account that can log in")
	case "recover":
		fs.StringVar(&o.user, "user", "", "the locked-out user")
		fs.StringVar(&o.key, "key", "", "private key file of the locked-out user")
		fs.BoolVar(&o.yes, "yes", false, "apply the fixes without asking")
	}
	fs.StringVar(&o.metrics, "metrics", "", "write OpenMetrics for node_exporter's textfile collector to this file")
	return fs
}

// parseArgs parses flags placed before or after the playbook, as
// ansible-playbook allows.
func parseArgs(command string, args []string) (*options, error) {
	o := &options{command: command}
	fs := newFlagSet(o, command)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			positional = append(positional, args[1:]...)
			break
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	if len(positional) != 1 {
		return nil, fmt.Errorf("%w: want exactly one playbook, got %d arguments", errUsage, len(positional))
	}
	o.playbook = positional[0]
	if len(o.inventories) == 0 {
		return nil, fmt.Errorf("%w: -i INVENTORY is required", errUsage)
	}
	switch o.format {
	case "text", "json", "junit":
	default:
		return nil, fmt.Errorf("%w: --format %q: want text, json or junit", errUsage, o.format)
	}
	if o.forks < 1 {
		return nil, fmt.Errorf("%w: --forks must be at least 1", errUsage)
	}
	if o.timeout <= 0 {
		return nil, fmt.Errorf("%w: --timeout must be positive", errUsage)
	}
	if command == "recover" && o.user == "" {
		return nil, fmt.Errorf("%w: recover needs --user NAME", errUsage)
	}
	return o, nil
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  breakglass apply   -i INVENTORY PLAYBOOK [--check] [--diff] [--limit PATTERN] [--forks N]
  breakglass audit   -i INVENTORY PLAYBOOK [--all-users] [--format text|json|junit] [--output FILE] [--metrics FILE]
  breakglass verify  -i INVENTORY PLAYBOOK [--limit PATTERN] [--format text|json|junit]
  breakglass recover -i INVENTORY PLAYBOOK --user NAME [--key FILE] [--limit PATTERN] [--yes]
  breakglass version

common flags:
  -i, --inventory FILE|DIR   Ansible inventory (repeatable)
  --limit PATTERN            Ansible host pattern (all, web:db, web:!staging, web:&prod, web*, ~regex)
  --forks N                  hosts in parallel (default 50)
  --timeout D                per-host connect and command timeout (default 30s)
  --known-hosts FILE         known_hosts to verify host keys against (default ~/.ssh/known_hosts)
  --accept-new               record keys of hosts never seen before; a changed key is always refused
  --ask-become-pass          ask for the sudo password (or BREAKGLASS_BECOME_PASSWORD)
  --format text|json|junit   report format (default text); --output FILE writes it to a file
  -v                         every task; --no-color (NO_COLOR is honoured)

exit codes: 0 all good, 1 bad input (nothing contacted), 2 a host failed, 4 a host unreachable, 6 both
`)
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
