package tasks

import (
	"bufio"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/go-multierror"
	"gopkg.in/yaml.v3"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/yamlx"
)

// Sudoers manages one drop-in under /etc/sudoers.d that grants sudo to
// users and groups. Installing it is a transaction on the host: back up,
// write a temp file sudo ignores, `visudo -cf` it, install it root:root
// 0440, recheck the whole tree with `visudo -c`, confirm each user's rights
// with `sudo -l -U`, and check the control user kept its passwordless
// sudo. Any failure puts the previous file back.
type Sudoers struct {
	name     string
	users    []string
	groups   []string
	nopasswd bool
	commands []string
	runas    string
	absent   bool

	content string // the rendered drop-in; empty when absent
}

var _ Module = (*Sudoers)(nil)
var _ engine.Planner = (*Sudoers)(nil)

func init() { Register("sudoers", NewSudoers) }

// SudoersDir is where the drop-ins live.
const SudoersDir = "/etc/sudoers.d"

type sudoersArgs struct {
	Name     string   `yaml:"name"`
	Users    []string `yaml:"users"`
	Groups   []string `yaml:"groups"`
	NoPasswd bool     `yaml:"nopasswd"`
	Commands []string `yaml:"commands"`
	RunAs    string   `yaml:"runas"`
	State    string   `yaml:"state"`
}

var (
	sudoersName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	// sudoersGroup is the same rule as a user name.
	sudoersGroup = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)
	// A command is an absolute path whose components are plain names,
	// then arguments made only of characters sudoers takes literally (no
	// ',', ':', '=', '\\', '#', quotes, '!', or '^'/'$' regex anchors).
	sudoersCmdPath = regexp.MustCompile(`^(/[A-Za-z0-9._+-]+)+$`)
	sudoersCmdArg  = regexp.MustCompile(`^[A-Za-z0-9._+/@%*?~-]+$`)
)

// NewSudoers decodes the arguments of a sudoers task.
func NewSudoers(file string, args *yaml.Node) (Module, error) {
	var a sudoersArgs
	if err := yamlx.Decode(file, args, &a); err != nil {
		return nil, err
	}
	args = yamlx.Resolve(args)
	var errs *multierror.Error
	bad := argError(file, "sudoers", args, &errs)

	s := &Sudoers{name: a.Name, nopasswd: a.NoPasswd, runas: a.RunAs}
	switch {
	case a.Name == "":
		bad(moduleArg(args, "name"), "name is required (the file name under %s)", SudoersDir)
	case !sudoersName.MatchString(a.Name):
		bad(moduleArg(args, "name"), "name %q: sudo silently skips files in %s whose names contain \".\" or end in \"~\", so the rule would never apply; use only letters, digits, \"_\" and \"-\"", a.Name, SudoersDir)
	case len(a.Name) > 64:
		bad(moduleArg(args, "name"), "name %q is longer than 64 characters", a.Name)
	}

	switch a.State {
	case "", "present":
	case "absent":
		s.absent = true
	default:
		bad(moduleArg(args, "state"), "state %q: want present or absent", a.State)
	}

	seen := map[string]bool{}
	for i, u := range a.Users {
		if err := shell.ValidUser(u); err != nil {
			bad(moduleArgElem(args, "users", i), "users: %v", err)
			continue
		}
		if !seen[u] {
			seen[u] = true
			s.users = append(s.users, u)
		}
	}
	for i, g := range a.Groups {
		g = strings.TrimPrefix(g, "%")
		if len(g) > 32 || !sudoersGroup.MatchString(g) {
			bad(moduleArgElem(args, "groups", i), "groups: invalid group name %q: want [a-z_][a-z0-9_-]*, at most 32 characters", a.Groups[i])
			continue
		}
		if !seen["%"+g] {
			seen["%"+g] = true
			s.groups = append(s.groups, g)
		}
	}
	if !s.absent && len(a.Users)+len(a.Groups) == 0 {
		bad(nil, "a rule needs at least one entry in users or groups")
	}

	switch {
	case a.RunAs == "":
		s.runas = "ALL"
	case a.RunAs == "ALL":
	default:
		if err := shell.ValidUser(a.RunAs); err != nil {
			bad(moduleArg(args, "runas"), "runas: want ALL or a user name: %v", err)
		}
	}

	if a.Commands == nil {
		a.Commands = []string{"ALL"}
	}
	if len(a.Commands) == 0 {
		bad(moduleArg(args, "commands"), "commands is empty: leave it out for ALL, or list absolute paths")
	}
	seenCmd := map[string]bool{}
	for i, c := range a.Commands {
		norm, err := sudoersCommand(c)
		if err == nil && norm == "ALL" && len(a.Commands) > 1 {
			err = fmt.Errorf("ALL already allows every command: list it alone")
		}
		if err != nil {
			bad(moduleArgElem(args, "commands", i), "commands: %v", err)
			continue
		}
		if !seenCmd[norm] {
			seenCmd[norm] = true
			s.commands = append(s.commands, norm)
		}
	}

	if err := errs.ErrorOrNil(); err != nil {
		return nil, err
	}
	if !s.absent {
		s.content = s.render()
	}
	return s, nil
}

// sudoersCommand validates one command and returns it with its words
// separated by single spaces, as `sudo -l` prints it.
func sudoersCommand(c string) (string, error) {
	if strings.ContainsAny(c, "\n\r\x00") {
		return "", fmt.Errorf("command %q contains a newline or NUL", c)
	}
	words := strings.Fields(c)
	if len(words) == 0 {
		return "", fmt.Errorf("empty command")
	}
	if len(words) == 1 && words[0] == "ALL" {
		return "ALL", nil
	}
	path := words[0]
	if path != "sudoedit" {
		if !sudoersCmdPath.MatchString(path) {
			return "", fmt.Errorf("command %q: want ALL or an absolute path made of letters, digits and . _ + - (no wildcards, no aliases)", c)
		}
		if err := shell.ValidPath(path); err != nil {
			return "", fmt.Errorf("command %q: %v", c, err)
		}
	}
	for _, w := range words[1:] {
		if !sudoersCmdArg.MatchString(w) {
			return "", fmt.Errorf("command %q: argument %q may only use letters, digits and . _ + / @ %% * ? ~ - (sudoers gives , : = \\ # \" ! ^ $ special meanings)", c, w)
		}
	}
	if path == "sudoedit" && len(words) == 1 {
		return "", fmt.Errorf("command %q: sudoedit needs the files it may edit", c)
	}
	return strings.Join(words, " "), nil
}

// Path is the drop-in this task manages.
func (s *Sudoers) Path() string { return SudoersDir + "/" + s.name }

// render returns the drop-in, byte for byte the same for the same task.
func (s *Sudoers) render() string {
	var who []string
	who = append(who, s.users...)
	for _, g := range s.groups {
		who = append(who, "%"+g)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# managed by breakglass (sudoers task %q): changes made here are overwritten\n", s.name)
	fmt.Fprintf(&b, "%s ALL=%s\n", strings.Join(who, ","), s.privilege())
	return b.String()
}

// privilege is the rule after "host=", exactly as `sudo -l` lists it.
func (s *Sudoers) privilege() string {
	tag := ""
	if s.nopasswd {
		tag = "NOPASSWD: "
	}
	return fmt.Sprintf("(%s) %s%s", s.runas, tag, strings.Join(s.commands, ", "))
}

// sudoersFile is the gathered state of a drop-in.
type sudoersFile struct {
	Exists  bool
	Type    string // stat's %F: "regular file", "symbolic link", ...
	UID     int
	GID     int
	Mode    uint32 // permission bits
	Content string
	// Leftovers are the base names of what killed runs left beside the
	// drop-in (tmpPath's names: regular files or symbolic links); this
	// run's transaction clears them first (sudoers.sh).
	Leftovers []string
}

func (f sudoersFile) regular() bool {
	return f.Type == "regular file" || f.Type == "regular empty file"
}

func (s *Sudoers) factKey() string { return "sudoers.file " + s.Path() }

func (s *Sudoers) query() Query {
	p := shell.Quote(s.Path())
	// tmpPath's names, RUN 12 hex digits, first: the content is the rest.
	return Query{
		Key: s.factKey(),
		Script: fmt.Sprintf(`for e in %s???????????? %s????????????; do
	case ${e##*.} in *[!0-9a-f]*) continue ;; esac
	if [ -L "$e" ] || [ -f "$e" ]; then printf 'leftover %%s\n' "${e##*/}"; fi
done
f=%s
if [ -e "$f" ] || [ -L "$f" ]; then
	stat -c 'present %%u %%g %%a %%F' -- "$f" || exit 1
	if [ -f "$f" ] && [ ! -L "$f" ]; then head -c %d -- "$f" || exit 1; fi
else
	echo absent
fi
`, shell.Quote(s.tmpPath("new", "")), shell.Quote(s.tmpPath("old", "")), p, sudoersMaxRead+1),
		Parse: parseSudoersFile,
	}
}

// sudoersMaxRead bounds what is read of a drop-in: one this task renders
// is a few lines, and a bigger one is rewritten whatever the rest says.
const sudoersMaxRead = 1 << 20

func parseSudoersFile(out []byte) (any, error) {
	var left []string
	head, content, _ := strings.Cut(string(out), "\n")
	for {
		name, ok := strings.CutPrefix(head, "leftover ")
		if !ok {
			break
		}
		left = append(left, name)
		head, content, _ = strings.Cut(content, "\n")
	}
	if head == "absent" {
		return sudoersFile{Leftovers: left}, nil
	}
	if len(content) > sudoersMaxRead {
		content = content[:sudoersMaxRead] + "\n[breakglass read only the first 1 MiB of this file]\n"
	}
	f := sudoersFile{Exists: true, Content: content, Leftovers: left}
	fields := strings.SplitN(head, " ", 5)
	if len(fields) != 5 || fields[0] != "present" {
		return nil, fmt.Errorf("unexpected output %q", head)
	}
	var err error
	if f.UID, err = strconv.Atoi(fields[1]); err != nil {
		return nil, fmt.Errorf("bad uid in %q", head)
	}
	if f.GID, err = strconv.Atoi(fields[2]); err != nil {
		return nil, fmt.Errorf("bad gid in %q", head)
	}
	m, err := strconv.ParseUint(fields[3], 8, 32)
	if err != nil {
		return nil, fmt.Errorf("bad mode in %q", head)
	}
	f.Mode = uint32(m)
	f.Type = fields[4]
	return f, nil
}

// Queries implements Module: the drop-in's content, owner and mode.
func (s *Sudoers) Queries() []Query { return []Query{s.query()} }

// sudoersPlan is what must change; empty when the host is as wanted.
type sudoersPlan struct {
	install bool // write the rendered content (also repairs owner and mode)
	remove  bool
	existed bool // the file was there before
	changes []Change
}

// planChanges is the drop-in's change (planDropIn), then the clearing of
// what killed runs left beside it, which the same transaction does first
// (alone, when the drop-in is as wanted).
func (s *Sudoers) planChanges(cur sudoersFile, diff bool) (sudoersPlan, error) {
	p, err := s.planDropIn(cur, diff)
	if err != nil {
		return p, err
	}
	for _, name := range cur.Leftovers {
		ch := Change{Path: SudoersDir + "/" + name, What: "remove " + SudoersDir + "/" + name + ", left by a killed run"}
		if strings.HasPrefix(name, "."+s.name+".breakglass-old.") {
			ch.What += " (the newest of the previous versions such runs held becomes the backup " + s.backupPath() + " instead; none is put back in force)"
		}
		p.changes = append(p.changes, ch)
	}
	return p, nil
}

func (s *Sudoers) planDropIn(cur sudoersFile, diff bool) (sudoersPlan, error) {
	p := sudoersPlan{existed: cur.Exists}
	path := s.Path()
	if cur.Exists && !cur.regular() {
		return p, fmt.Errorf("%s is a %s, not a regular file: sudo will not read it; remove it by hand", path, cur.Type)
	}
	ch := Change{Path: path}
	if s.absent {
		if !cur.Exists {
			return p, nil
		}
		p.remove = true
		ch.What = "remove " + path
		if diff {
			ch.Before = cur.Content
		}
		p.changes = append(p.changes, ch)
		return p, nil
	}
	switch {
	case !cur.Exists:
		ch.What = "create " + path + " (root:root 0440)"
	case cur.Content != s.content:
		ch.What = "update " + path
	}
	if ch.What != "" {
		p.install = true
		if diff {
			ch.Before, ch.After = cur.Content, s.content
		}
		p.changes = append(p.changes, ch)
	}
	if cur.Exists && (cur.UID != 0 || cur.GID != 0 || cur.Mode != 0o440) {
		p.install = true
		p.changes = append(p.changes, Change{
			Path: path,
			What: fmt.Sprintf("chown root:root, chmod 0440 %s (was %d:%d %04o)", path, cur.UID, cur.GID, cur.Mode),
		})
	}
	return p, nil
}

// PlanQueries implements engine.Planner.
func (s *Sudoers) PlanQueries(Conn) []Query { return s.Queries() }

// sshdFacts: sudo's rules do not depend on sshd.
func (*Sudoers) ConnFacts() bool { return false }

// Plan implements engine.Planner. The whole transaction is one step, whose report
// decides whether it succeeded; the step's other changes (the owner and
// mode the install also repairs) are listed with it.
func (s *Sudoers) Plan(env *Env, facts []any) (*Plan, error) {
	cur, ok := facts[0].(sudoersFile)
	if !ok {
		return nil, fmt.Errorf("sudoers %s: fact %s has type %T", s.name, s.factKey(), facts[0])
	}
	p, err := s.planChanges(cur, env.Diff)
	if err != nil {
		return nil, fmt.Errorf("sudoers %s: %w", s.name, err)
	}
	if len(p.changes) == 0 {
		return &Plan{}, nil
	}
	script, err := s.script(p, env.ControlUser)
	if err != nil {
		return nil, fmt.Errorf("sudoers %s: %w", s.name, err)
	}
	steps := make([]engine.Step, 0, len(p.changes))
	for i, c := range p.changes {
		st := engine.Step{Change: c, Cmd: ":"}
		if i == 0 {
			st.Cmd, st.OKLine, st.Report = string(script), "status ok", s.explain
			// The script reports its own failures and exits 0: a step
			// that did not finish (connection lost, killed) may have left
			// the host mid-transaction.
			st.Unfinished = fmt.Sprintf("the sudoers %s transaction (install, removal or clearing what killed runs left) did not finish, check %s and its backup %s", s.name, s.Path(), s.backupPath())
		}
		steps = append(steps, st)
	}
	return &Plan{Steps: steps, Stale: []string{s.factKey()}}, nil
}

// explain turns the transaction's report into nil (installed) or a
// *SudoersError.
func (s *Sudoers) explain(out []byte) error {
	st := parseSudoersStatus(out)
	if st.status == "ok" {
		return nil
	}
	msg := st.msg
	if st.restored == "other" {
		msg = strings.TrimSpace("another run replaced " + s.Path() + " meanwhile: it was left as that run made it\n" + msg)
	}
	return &SudoersError{Path: s.Path(), Stage: st.stage, Output: msg, RolledBack: st.restored == "ok" || st.restored == "failed", RestoreFailed: st.restored == "failed"}
}

// RolledBackChange reports whether the previous file was put back.
func (e *SudoersError) RolledBackChange() bool { return e.RolledBack }

// tmpPath is this run's own name for a file of the transaction (what:
// "new", a link to the file installed; "old", a link to the file
// replaced): run is random, so that no run removes or installs another's
// file, even without the host lock (the new file's temp name is
// bg_temp's, random too). The names start with a dot and hold dots, so
// sudo skips them. Such names of an earlier run are a killed run's (the
// host lock lets one run at a time act): the next run clears them
// (Leftovers).
func (s *Sudoers) tmpPath(what, run string) string {
	return SudoersDir + "/." + s.name + ".breakglass-" + what + "." + run
}

// backupPath keeps the previous version (BackupPath); sudo skips it.
func (s *Sudoers) backupPath() string { return engine.BackupPath(s.Path()) }

// SudoersError is a sudoers transaction the host refused. Stage says
// where: "precheck" (nothing was touched), "visudo-file" (the new file is
// invalid; nothing was installed), "visudo-tree", "confirm" or "control"
// (installed, then taken back).
type SudoersError struct {
	Path          string
	Stage         string
	Output        string // visudo's or sudo's own words
	RolledBack    bool   // the previous state was restored
	RestoreFailed bool   // restoring it failed: look at the host
}

func (e *SudoersError) Error() string {
	var what string
	switch e.Stage {
	case "precheck":
		what = "refused before any change"
	case "visudo-file":
		what = "visudo -cf rejected the new file; nothing was installed"
	case "install":
		what = "could not put the new file in place"
	case "visudo-tree":
		what = "visudo -c rejected the sudoers tree with the new file"
	case "confirm":
		what = "sudo -l -U does not list the new rule"
	case "control":
		what = "the new file takes passwordless sudo away from the control user"
	default:
		what = "failed at " + e.Stage
	}
	switch {
	case e.RestoreFailed:
		what += "; RESTORING THE PREVIOUS STATE FAILED, fix " + e.Path + " by hand"
	case e.RolledBack:
		what += "; the previous state was restored"
	}
	msg := strings.TrimSpace(e.Output)
	if msg == "" {
		return fmt.Sprintf("%s: %s", e.Path, what)
	}
	return fmt.Sprintf("%s: %s: %s", e.Path, what, msg)
}

type sudoersStatus struct {
	status, stage, restored, msg string
}

// parseSudoersStatus reads the lines the install script prints:
// "status ok|failed", "stage NAME", "restored ok|failed" and "| message".
func parseSudoersStatus(out []byte) sudoersStatus {
	var st sudoersStatus
	var msg []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "| "):
			msg = append(msg, line[2:])
		case line == "|":
			msg = append(msg, "")
		case strings.HasPrefix(line, "status "):
			st.status = line[len("status "):]
		case strings.HasPrefix(line, "stage "):
			st.stage = line[len("stage "):]
		case strings.HasPrefix(line, "restored "):
			st.restored = line[len("restored "):]
		}
	}
	st.msg = strings.Join(msg, "\n")
	if st.status == "" {
		st.status, st.stage, st.msg = "failed", "unknown", "no status from the install script:\n"+string(out)
	}
	return st
}

// script is the whole transaction, run by /bin/sh -s in one round trip:
// a header that sets the values of this run, then sudoers.sh. It runs as
// a step of an apply script, whose prelude (nofollow.sh) defines the one
// writer it uses (bg_temp, bg_commit, bg_keep). It reports
// on stdout and exits 0 when it ran to the end, whatever the outcome.
func (s *Sudoers) script(p sudoersPlan, controlUser string) ([]byte, error) {
	var rb [6]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return nil, fmt.Errorf("random name: %w", err)
	}
	run := hex.EncodeToString(rb[:])
	var b strings.Builder
	fmt.Fprintf(&b, "d=%s\nf=%s\nnew=%s\nold=%s\n", shell.Quote(SudoersDir), shell.Quote(s.Path()),
		shell.Quote(s.tmpPath("new", run)), shell.Quote(s.tmpPath("old", run)))
	mode := "none"
	switch {
	case p.install:
		mode = "install"
	case p.remove:
		mode = "remove"
	}
	fmt.Fprintf(&b, "mode=%s\n", mode)
	if p.install {
		// sudo -l -U confirms the privilege for every user; user names
		// are checked, so they are words.
		fmt.Fprintf(&b, "content=%s\nwant=%s\nusers=%s\n", shell.Quote(s.content), shell.Quote(s.privilege()), shell.Quote(strings.Join(s.users, " ")))
	}
	// The control user's sudo can change only when the file was there
	// before (its rules go or change) or the new rules name the user or a
	// group: sudo applies a rule only to the users and groups it lists. A
	// new file for other users cannot touch it, so the check (two logins
	// through runuser and sudo, the slowest part) is left out then.
	cu := ""
	if (p.install || p.remove) && controlUser != "" && controlUser != "root" && shell.ValidUser(controlUser) == nil &&
		(p.existed || p.remove || len(s.groups) > 0 || slices.Contains(s.users, controlUser)) {
		cu = controlUser
	}
	fmt.Fprintf(&b, "cu=%s\n", shell.Quote(cu))
	b.WriteString(sudoersScript)
	return []byte(b.String()), nil
}

// sudoersScript is sudoers.sh, the transaction after its header.
//
//go:embed sudoers.sh
var sudoersScript string

// ListUsers names the accounts this rule is for, for audit.
func (s *Sudoers) ListUsers() []string { return s.users }

// GrantsSudo names the users this task gives sudo (none when it removes
// the rule): audit judges only them, and the control user, by sudo.
func (s *Sudoers) GrantsSudo() []string {
	if s.absent {
		return nil
	}
	return s.users
}
