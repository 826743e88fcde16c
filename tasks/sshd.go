package tasks

import (
	"bufio"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
	"gopkg.in/yaml.v3"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/sshdconf"
	"github.com/breakglass/breakglass/internal/yamlx"
)

// SSHD sets sshd keywords, in a drop-in under /etc/ssh/sshd_config.d that
// sshd reads first (Debian: drop-ins are included at the top of
// sshd_config, and the first value read wins), or, when sshd_config has no
// Include of that directory, in a managed block at the top of sshd_config.
//
// A change is a transaction (the plan's TxnChange op, see Txn): back up,
// arm a revert on the host, write atomically, `sshd -t`, reload, prove
// fresh logins of the control user and the break-glass users, then
// disarm; any failure has the host
// restore the previous file, at once when the control connection still
// works and otherwise by itself when the deadline passes.
type SSHD struct {
	settings    []sshdSetting
	file        string        // drop-in name
	revertAfter time.Duration // deadline of the armed revert
}

type sshdSetting = engine.Setting

var _ Module = (*SSHD)(nil)
var _ engine.Planner = (*SSHD)(nil)

func init() { Register("sshd", NewSSHD) }

// Where sshd's configuration lives.
const (
	SSHDConfigPath    = "/etc/ssh/sshd_config"
	SSHDDropInDir     = "/etc/ssh/sshd_config.d"
	SSHDDefaultDropIn = "00-breakglass.conf"
)

// defaultSSHDRevertAfter is the revert deadline when revert_after is not given.
const defaultSSHDRevertAfter = 60 * time.Second

// maxSSHDRevertAfter bounds revert_after: a host keeps a bad config at most this long.
const maxSSHDRevertAfter = time.Hour

// Markers of the managed block in sshd_config.
const (
	sshdBlockBegin = "# BEGIN breakglass sshd settings (managed by breakglass: changes made here are overwritten)"
	sshdBlockEnd   = "# END breakglass sshd settings"
)

type sshdArgs struct {
	Settings    map[string]any `yaml:"settings"`
	File        string         `yaml:"file"`
	RevertAfter *int           `yaml:"revert_after"`
}

var sshdFileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]*\.conf$`)

// NewSSHD decodes the arguments of an sshd task.
func NewSSHD(file string, args *yaml.Node) (Module, error) {
	var a sshdArgs
	if err := yamlx.Decode(file, args, &a); err != nil {
		return nil, err
	}
	args = yamlx.Resolve(args)
	var errs *multierror.Error
	bad := argError(file, "sshd", args, &errs)
	s := &SSHD{file: SSHDDefaultDropIn, revertAfter: defaultSSHDRevertAfter}

	if a.File != "" {
		switch {
		case !sshdFileName.MatchString(a.File) || len(a.File) > 64:
			bad(sshdArgValue(args, "file"), "file %q: want a name like %s (letters, digits, . _ + -, ending in .conf, at most 64 characters)", a.File, SSHDDefaultDropIn)
		default:
			s.file = a.File
		}
	}
	if a.RevertAfter != nil {
		d := time.Duration(*a.RevertAfter) * time.Second
		if d < engine.MinTxnDeadline || d > maxSSHDRevertAfter {
			bad(sshdArgValue(args, "revert_after"), "revert_after %d: want %d to %d seconds", *a.RevertAfter, int(engine.MinTxnDeadline/time.Second), int(maxSSHDRevertAfter/time.Second))
		} else {
			s.revertAfter = d
		}
	}

	settings := sshdArgValue(args, "settings")
	switch {
	case settings == nil || settings.Kind != yaml.MappingNode || len(settings.Content) == 0:
		bad(settings, "settings: want a mapping of sshd keywords to values, e.g. {PasswordAuthentication: \"no\", LogLevel: VERBOSE}")
	default:
		seen := map[string]*yaml.Node{}
		for i := 0; i+1 < len(settings.Content); i += 2 {
			k, v := settings.Content[i], yamlx.Resolve(settings.Content[i+1])
			kw, err := sshdKeyword(k.Value)
			if err != nil {
				bad(k, "settings: %v", err)
				continue
			}
			if prev := seen[strings.ToLower(kw)]; prev != nil {
				bad(k, "settings: %s is set twice (also at line %d)", kw, prev.Line)
				continue
			}
			seen[strings.ToLower(kw)] = k
			val, err := sshdValue(v)
			if err != nil {
				bad(v, "settings: %s: %v", kw, err)
				continue
			}
			s.settings = append(s.settings, sshdSetting{Keyword: kw, Value: val})
		}
	}
	if err := errs.ErrorOrNil(); err != nil {
		return nil, err
	}
	return s, nil
}

// sshdArgValue returns the value node of key in mapping m, or nil.
func sshdArgValue(m *yaml.Node, key string) *yaml.Node {
	m = yamlx.Resolve(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return yamlx.Resolve(m.Content[i+1])
		}
	}
	return nil
}

// sshdKeyword returns the canonical spelling of an sshd keyword, or why it
// cannot be set.
func sshdKeyword(k string) (string, error) {
	l := strings.ToLower(k)
	if why, ok := sshdRefused[l]; ok {
		return "", fmt.Errorf("%s cannot be set here: %s", k, why)
	}
	if kw, ok := sshdconf.Canonical(l); ok {
		return kw, nil
	}
	return "", fmt.Errorf("unknown sshd keyword %q (see sshd_config(5))", k)
}

// sshdValue turns a YAML value into one sshd_config value: a scalar
// (booleans become yes/no) or a list of words joined by spaces.
func sshdValue(n *yaml.Node) (string, error) {
	switch {
	case n == nil || n.Tag == "!!null":
		return "", errors.New("no value")
	case n.Kind == yaml.SequenceNode:
		if len(n.Content) == 0 {
			return "", errors.New("empty list")
		}
		var words []string
		for _, c := range n.Content {
			c = yamlx.Resolve(c)
			if c.Kind != yaml.ScalarNode {
				return "", errors.New("a list may hold only words")
			}
			w, err := sshdValue(c)
			if err != nil {
				return "", err
			}
			if strings.ContainsAny(w, " \t") {
				return "", fmt.Errorf("list element %q contains a space: write the whole value as one string instead", w)
			}
			words = append(words, w)
		}
		return strings.Join(words, " "), nil
	case n.Kind != yaml.ScalarNode:
		return "", errors.New("want a string, a number, yes/no or a list of words")
	}
	v := n.Value
	if n.Tag == "!!bool" {
		var b bool
		if err := n.Decode(&b); err == nil {
			if b {
				return "yes", nil
			}
			return "no", nil
		}
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("value %q contains a control character (a newline, NUL, CR or tab): a value is one line", v)
		}
	}
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return "", errors.New("empty value")
	case len(v) > 1024:
		return "", errors.New("value longer than 1024 characters")
	case strings.HasPrefix(v, "#"):
		return "", fmt.Errorf("value %q starts with #, which sshd reads as a comment", v)
	}
	return v, nil
}

// Path is the drop-in this task writes when sshd_config includes it.
func (s *SSHD) Path() string { return SSHDDropInDir + "/" + s.file }

// renderDropIn returns the drop-in, byte for byte the same for the same task.
func (s *SSHD) renderDropIn() string {
	var b strings.Builder
	b.WriteString("# Managed by breakglass (sshd task): changes made here are overwritten.\n")
	b.WriteString("# sshd reads the drop-ins in name order and the first value it reads wins.\n")
	for _, st := range s.settings {
		fmt.Fprintf(&b, "%s %s\n", st.Keyword, st.Value)
	}
	return b.String()
}

// renderBlock returns sshd_config with the managed block, holding the
// settings, at its top (replacing the block wherever it was), so that its
// values are the first sshd reads.
func (s *SSHD) renderBlock(cur string) (string, error) {
	lines := strings.SplitAfter(cur, "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	begin, end := -1, -1
	for i, l := range lines {
		switch strings.TrimRight(l, " \t\r\n") {
		case sshdBlockBegin:
			if begin >= 0 {
				return "", fmt.Errorf("%s has two managed blocks (line %d and %d): remove one by hand", SSHDConfigPath, begin+1, i+1)
			}
			begin = i
		case sshdBlockEnd:
			if begin >= 0 && end < 0 {
				end = i
			}
		}
	}
	if begin >= 0 && end < 0 {
		return "", fmt.Errorf("%s:%d: the managed block has no end marker %q: fix it by hand", SSHDConfigPath, begin+1, sshdBlockEnd)
	}
	var rest []string
	if begin >= 0 {
		rest = append(append(rest, lines[:begin]...), lines[end+1:]...)
	} else {
		rest = lines
	}
	var b strings.Builder
	b.WriteString(sshdBlockBegin + "\n")
	for _, st := range s.settings {
		fmt.Fprintf(&b, "%s %s\n", st.Keyword, st.Value)
	}
	b.WriteString(sshdBlockEnd + "\n")
	for _, l := range rest {
		b.WriteString(l)
	}
	out := b.String()
	if !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	return out, nil
}

// --- facts ---

// sshdFile is a config file as gathered.
type sshdFile struct {
	Path    string
	Regular bool // a regular file (after symlinks); Content is valid
	Link    bool // the path itself is a symbolic link
	UID     int
	GID     int
	Mode    uint32 // permission bits
	Content string
}

// sshdFacts is what the sshd task reads from the host in one round trip.
type sshdFacts struct {
	Systemd        bool       // systemd is PID 1
	PrivsepMissing bool       // /run/sshd does not exist
	Main           *sshdFile  // nil when absent
	DropInDir      bool       // SSHDDropInDir exists
	DropIns        []sshdFile // files directly in SSHDDropInDir, by name
	PidFile        string     // the effective PidFile
	DaemonPID      int        // the running main sshd, 0 when none
	DaemonArgs     []string   // its command line, nil when unknown
	TErr           string     // sshd -T failed: its output
	// MaxStartups and PerSourceMaxStartups as sshd -T printed them ("" when
	// unknown): how many unauthenticated connections sshd lets in at once.
	MaxStartups, PerSourceMaxStartups string
}

var _ engine.StartupLimits = (*sshdFacts)(nil)

// StartupLimits implements engine.StartupLimits: the prover bounds its
// logins at once by the daemon's MaxStartups and PerSourceMaxStartups.
func (f *sshdFacts) StartupLimits() (maxStartups, perSource string) {
	return f.MaxStartups, f.PerSourceMaxStartups
}

func (f *sshdFacts) dropIn(p string) *sshdFile {
	for i := range f.DropIns {
		if f.DropIns[i].Path == p {
			return &f.DropIns[i]
		}
	}
	return nil
}

const sshdFactsKey = "sshd:config"

// sshdFileFunc defines bg_file PATH, which prints "file UID GID MODE LINK
// PATH" and the content in base64 then "end" for a regular file (symlinks
// followed; LINK is 1 when PATH itself is a link), "other LINK PATH" for
// anything else that exists, and nothing for a missing path.
//
//go:embed sshd_file.sh
var sshdFileFunc string

// sshdFactsScript prints the config files (base64), the effective PidFile
// and the running daemon's command line. It changes nothing.
var sshdFactsScript = `# breakglass sshd: facts
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; export PATH
LC_ALL=C; export LC_ALL
` + sshdconf.Shell + sshdFileFunc + sshdFactsBody

// sshdFactsBody is sshd_facts.sh: the facts script after its functions.
//
//go:embed sshd_facts.sh
var sshdFactsBody string

func sshdQuery() Query {
	return Query{Key: sshdFactsKey, Script: string(engine.Script(sshdFactsScript)), Parse: parseSSHDFacts}
}

// Queries implements Module.
func (s *SSHD) Queries() []Query { return []Query{sshdQuery()} }

func parseSSHDFacts(out []byte) (any, error) {
	f := &sshdFacts{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	header := false
	var terr []string
	for sc.Scan() {
		line := sc.Text()
		k, rest, _ := strings.Cut(line, " ")
		switch k {
		case "breakglass-sshd-facts":
			header = true
		case "systemd":
			f.Systemd = true
		case "privsep-missing":
			f.PrivsepMissing = true
		case "dropin-dir":
			f.DropInDir = true
		case "sshd-T-failed":
			f.TErr = "sshd -T failed"
		case "|":
			terr = append(terr, rest)
		case "pidfile":
			f.PidFile = rest
		case "maxstartups":
			f.MaxStartups = rest
		case "persourcemaxstartups":
			f.PerSourceMaxStartups = rest
		case "daemon":
			pid, cmd, _ := strings.Cut(rest, " ")
			f.DaemonPID, _ = strconv.Atoi(pid)
			f.DaemonArgs = sshdDaemonArgs(cmd)
		case "file", "other":
			file, err := parseSSHDFile(sc, k, rest)
			if err != nil {
				return nil, err
			}
			if file.Path == SSHDConfigPath {
				f.Main = &file
			} else if path.Dir(file.Path) == SSHDDropInDir {
				f.DropIns = append(f.DropIns, file)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !header {
		return nil, fmt.Errorf("unexpected output %q", engine.FirstLine(string(out)))
	}
	if f.TErr != "" && len(terr) > 0 {
		f.TErr += ": " + strings.Join(terr, "\n")
	}
	sort.Slice(f.DropIns, func(i, j int) bool { return f.DropIns[i].Path < f.DropIns[j].Path })
	return f, nil
}

// parseSSHDFile reads a bg_file record whose first line (tag kind) was
// just scanned, with its content when it is a file.
func parseSSHDFile(sc *bufio.Scanner, kind, rest string) (sshdFile, error) {
	file, err := parseSSHDFileHeader(kind, rest)
	if err != nil || kind != "file" {
		return file, err
	}
	var b64 strings.Builder
	ended := false
	for sc.Scan() {
		if sc.Text() == "end" {
			ended = true
			break
		}
		b64.WriteString(strings.TrimSpace(sc.Text()))
	}
	if !ended {
		return file, fmt.Errorf("truncated content of %s", file.Path)
	}
	data, err := base64.StdEncoding.DecodeString(b64.String())
	if err != nil {
		return file, fmt.Errorf("content of %s: %w", file.Path, err)
	}
	file.Content = string(data)
	return file, nil
}

// parseSSHDFileHeader reads "UID GID MODE LINK PATH" (file) or "LINK PATH" (other).
func parseSSHDFileHeader(kind, rest string) (sshdFile, error) {
	var f sshdFile
	n := 2
	if kind == "file" {
		n = 5
	}
	fields := strings.SplitN(rest, " ", n)
	if len(fields) != n {
		return f, fmt.Errorf("bad file line %q", rest)
	}
	f.Path = fields[n-1]
	f.Link = fields[n-2] == "1"
	if kind == "other" {
		return f, nil
	}
	f.Regular = true
	var err error
	if f.UID, err = strconv.Atoi(fields[0]); err != nil {
		return f, fmt.Errorf("bad uid in %q", rest)
	}
	if f.GID, err = strconv.Atoi(fields[1]); err != nil {
		return f, fmt.Errorf("bad gid in %q", rest)
	}
	m, err := strconv.ParseUint(fields[2], 8, 32)
	if err != nil {
		return f, fmt.Errorf("bad mode in %q", rest)
	}
	f.Mode = uint32(m)
	return f, nil
}

// sshdDaemonArgs recovers the listener's command line from its process
// title ("sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups") or its
// plain argv, for starting it again if a reload kills it. nil when it does
// not look like a restartable sshd command line.
func sshdDaemonArgs(cmd string) []string {
	cmd = strings.TrimSpace(cmd)
	if rest, ok := strings.CutPrefix(cmd, "sshd: "); ok {
		cmd, _, _ = strings.Cut(rest, " [listener]")
	}
	args := strings.Fields(cmd)
	if len(args) == 0 || !strings.HasPrefix(args[0], "/") || path.Base(args[0]) != "sshd" {
		return nil
	}
	for _, a := range args {
		if a == "-d" || a == "-t" || a == "-T" || a == "-i" || strings.ContainsAny(a, "\x00\n\r") {
			return nil
		}
	}
	return args
}

// --- the configuration as sshd reads it ---

// sshdIncludes reports whether sshd_config's Include directives read the
// drop-in named file, and what sshd reads before it (sshdconf.Before).
func sshdIncludes(f *sshdFacts, file string) (included bool, before []sshdconf.Line) {
	files := map[string][]byte{SSHDConfigPath: []byte(f.Main.Content)}
	for _, d := range f.DropIns {
		if d.Regular {
			files[d.Path] = []byte(d.Content)
		}
	}
	return sshdconf.Before(files, SSHDDropInDir+"/"+file)
}

// --- plan ---

type sshdPlan struct {
	path    string
	block   bool   // a managed block in sshd_config, not a drop-in
	existed bool   // path exists
	want    string // the new content
	mode    uint32
	changes []Change
}

// planFile decides the file to write and its content from the facts.
func (s *SSHD) planFile(f *sshdFacts, diff bool) (*sshdPlan, error) {
	if f.Main == nil || !f.Main.Regular {
		return nil, fmt.Errorf("%s is missing or not a regular file: sshd will not start; restore it by hand", SSHDConfigPath)
	}
	p := &sshdPlan{mode: 0o644}
	included, before := sshdIncludes(f, s.file)
	var cur *sshdFile
	if included {
		p.path = s.Path()
		cur = f.dropIn(p.path)
		// sshd takes the first value it reads: a value read before the
		// drop-in would silently win over it.
		mine := map[string]string{}
		for _, st := range s.settings {
			mine[strings.ToLower(st.Keyword)] = st.Keyword
		}
		var clash []string
		for _, b := range before {
			if kw, ok := mine[b.Keyword]; ok && !sshdconf.Cumulative[b.Keyword] {
				clash = append(clash, fmt.Sprintf("%s is set at %s:%d", kw, b.File, b.Line))
			}
		}
		if len(clash) > 0 {
			return nil, fmt.Errorf("%s; sshd reads that before %s and keeps the first value, so this task's value would not apply: remove it there, or name a file that sorts before it", strings.Join(clash, "; "), p.path)
		}
	} else {
		p.path = SSHDConfigPath
		p.block = true
		cur = f.Main
	}
	if cur != nil {
		p.existed = true
		switch {
		case cur.Link:
			return nil, fmt.Errorf("%s is a symbolic link: breakglass will not replace it with a file; manage the file it points to by hand", p.path)
		case !cur.Regular:
			return nil, fmt.Errorf("%s is not a regular file", p.path)
		}
	}
	if p.block {
		want, err := s.renderBlock(cur.Content)
		if err != nil {
			return nil, err
		}
		p.want = want
		p.mode = cur.Mode & 0o644 // keep it private if it was; never group/world-writable
		if p.mode&0o600 != 0o600 {
			p.mode |= 0o600
		}
	} else {
		p.want = s.renderDropIn()
	}

	ch := Change{Path: p.path}
	switch {
	case cur == nil:
		ch.What = fmt.Sprintf("create %s (%s)", p.path, s.summary())
	case cur.Content != p.want && p.block:
		ch.What = fmt.Sprintf("update the breakglass block at the top of %s (%s; it has no Include of %s)", p.path, s.summary(), SSHDDropInDir)
	case cur.Content != p.want:
		ch.What = fmt.Sprintf("update %s (%s)", p.path, s.summary())
	case cur.UID != 0 || cur.GID != 0 || cur.Mode != p.mode:
		ch.What = fmt.Sprintf("chown root:root, chmod %04o %s (was %d:%d %04o)", p.mode, p.path, cur.UID, cur.GID, cur.Mode)
	}
	if ch.What == "" {
		return p, nil
	}
	if diff {
		if cur != nil {
			ch.Before = cur.Content
		}
		ch.After = p.want
	}
	p.changes = append(p.changes, ch)
	return p, nil
}

// summary lists the settings, for change descriptions.
func (s *SSHD) summary() string {
	parts := make([]string, len(s.settings))
	for i, st := range s.settings {
		parts[i] = st.Keyword + " " + st.Value
	}
	return strings.Join(parts, ", ")
}

// --- apply ---

var _ engine.Planner = (*SSHD)(nil)

// PlanQueries implements engine.Planner.
func (s *SSHD) PlanQueries(Conn) []Query { return s.Queries() }

// ConnFacts implements engine.Planner: the plan reads sshd's files, not the
// users' view of its configuration.
func (*SSHD) ConnFacts() bool { return false }

// sshdStale are the facts an sshd change makes stale: this module's and
// those read against sshd's configuration (the users' effective
// settings, the emergency sshd's).
var sshdStale = []string{sshdFactsKey, UserFactsKey(""), "secondary_sshd:"}

// Plan implements engine.Planner: no change, or one transaction (TxnChange)
// that writes the file, has sshd check and reload it, and proves fresh
// logins before it keeps it.
func (s *SSHD) Plan(env *Env, facts []any) (*Plan, error) {
	f, ok := facts[0].(*sshdFacts)
	if !ok {
		return nil, fmt.Errorf("sshd: fact %s has type %T", sshdFactsKey, facts[0])
	}
	p, err := s.planFile(f, env.Diff)
	if err != nil {
		return nil, fmt.Errorf("sshd: %w", err)
	}
	if len(p.changes) == 0 {
		return &Plan{}, nil
	}
	return &Plan{Ops: []Op{&engine.TxnChange{
		Task: "sshd",
		Spec: engine.TxnSpec{
			What:         "sshd " + p.path,
			Files:        []string{p.path},
			Deadline:     s.revertAfter,
			AfterRestore: sshdAfterRestore(f.DaemonArgs),
		},
		DeadlineArg: "revert_after",
		Changes:     p.changes,
		Also:        sshdAlso(f),
		Install:     sshdInstallScript(p),
		Report:      sshdInstallReport(p.path),
		Settings:    s.settings,
		Stale:       sshdStale,
		Doubt:       loginDoubt(env),
	}}}, nil
}

// sshdInstallReport reads what sshdInstallScript printed for path:
// "status reloaded" (with "| " lines of what it did on the way), "status
// invalid" (sshd -t's words follow; nothing was reloaded), "status
// reload-failed" or "status failed" (the file was not written).
func sshdInstallReport(path string) func(out []byte) engine.TxnReport {
	return func(out []byte) engine.TxnReport {
		st := engine.ParseStatus(out)
		switch st.Word() {
		case "reloaded":
			return engine.TxnReport{Done: "sshd -t ok, reloaded", Note: strings.TrimSpace(st.Notes())}
		case "invalid":
			return engine.TxnReport{Err: fmt.Errorf("sshd -t rejected the new configuration: %s", st.Describe())}
		case "reload-failed":
			return engine.TxnReport{Err: fmt.Errorf("reloading sshd failed: %s", st.Describe()), InEffect: true}
		default:
			return engine.TxnReport{Err: fmt.Errorf("writing %s failed: %s", path, st.Describe())}
		}
	}
}

// sshdReloadFuncs are the shell functions that reload the main sshd and
// wait until it listens again, starting it when asked (bg_sshd_start),
// with sshdconf.Shell, which finds it.
var sshdReloadFuncs = sshdconf.Shell + sshdReloadScript

// sshdReloadScript is sshd_reload.sh: bg_sshd_reload and bg_sshd_start.
//
//go:embed sshd_reload.sh
var sshdReloadScript string

// sshdAfterRestore validates the restored configuration and reloads sshd,
// starting it when a reload killed it: with the daemon's own command line
// daemonArgs when it was known (its words are the function's positional
// parameters, quoted), else plain sshd (which daemonizes).
func sshdAfterRestore(daemonArgs []string) string {
	return "set -- " + shell.Join(daemonArgs...) + "\n" + sshdReloadFuncs + sshdAfterRestoreScript
}

// sshdAfterRestoreScript is sshd_after_restore.sh: the body of the
// transaction's bg_after_restore after sshd's functions.
//
//go:embed sshd_after_restore.sh
var sshdAfterRestoreScript string

// sshdAlso is what the install does besides the file, as the facts tell:
// it creates sshd's privilege separation directory when it is missing.
func sshdAlso(f *sshdFacts) []Change {
	if !f.PrivsepMissing {
		return nil
	}
	return []Change{{What: "create /run/sshd (sshd's privilege separation directory)", Path: "/run/sshd"}}
}

// sshdInstallScript writes the new file atomically, validates the whole
// configuration with sshd -t and reloads sshd (see sshdInstallReport).
// It is the same for the same plan: the run's transaction is not in it.
func sshdInstallScript(p *sshdPlan) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# breakglass sshd: install %s\n", p.path)
	b.WriteString(engine.TxnPrelude)
	b.WriteString(sshdReloadFuncs)
	fmt.Fprintf(&b, "f=%s tmp=%s dir=%s mode=%04o\n", shell.Quote(p.path), shell.Quote(engine.TmpPath(p.path, "tmp")), shell.Quote(path.Dir(p.path)), p.mode)
	// bg_write_tmp carries the new file, base64 in its here-document.
	b.WriteString(engine.Nofollow + "bg_write_tmp() {\n" + engine.Heredoc([]byte(p.want), "&1", "") + "\n}\n") // the one writer; the new file on stdout
	b.WriteString(sshdInstallBody)
	return engine.Script(b.String())
}

// sshdInstallBody is sshd_install.sh: the install script after its header.
//
//go:embed sshd_install.sh
var sshdInstallBody string

// --- keywords ---

// sshdRefused are keywords sshd knows that this module will not write.
var sshdRefused = map[string]string{
	"match":   "a Match block needs several lines; this module writes global settings only",
	"include": "it would make sshd read files this module does not manage",
	"pidfile": "breakglass finds the running sshd by its PidFile to reload it; change it by hand",
	// Deprecated or removed: sshd ignores them with a warning.
	"protocol":                   "sshd ignores it (deprecated)",
	"useprivilegeseparation":     "sshd ignores it (deprecated)",
	"uselogin":                   "sshd ignores it (deprecated)",
	"dsaauthentication":          "sshd ignores it (deprecated)",
	"rsaauthentication":          "sshd ignores it (deprecated)",
	"rhostsrsaauthentication":    "sshd ignores it (deprecated)",
	"keyregenerationinterval":    "sshd ignores it (deprecated)",
	"serverkeybits":              "sshd ignores it (deprecated)",
	"skeyauthentication":         "sshd ignores it (deprecated)",
	"verifyreversemapping":       "sshd ignores it (deprecated)",
	"reversemappingcheck":        "sshd ignores it (deprecated)",
	"pamauthenticationviakbdint": "sshd ignores it (deprecated)",
	"authorizedkeysfile2":        "sshd ignores it (deprecated): list both files in AuthorizedKeysFile",
}
