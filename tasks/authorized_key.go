package tasks

import (
	"bytes"
	"crypto/ed25519"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/go-multierror"
	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/yamlx"
)

// AuthorizedKey installs (or removes) public keys of one user, in the file
// sshd really reads for that user: the first entry of the user's effective
// AuthorizedKeysFile (sshd -T -C user=…,host=…,addr=…,laddr=…,lport=…),
// with %u, %h, %U and %% expanded and relative entries taken from home, as
// sshd does. When that path is a symlink the file it points to is
// written.
//
// Each listed key gets exactly one line: an existing line of the same key
// (type and blob; comments and options do not identify a key) is replaced
// in place when its options differ, and further lines of it are removed,
// so no second, less restricted line of a probe key can survive. New keys
// are appended. Comments and blank lines are kept.
//
//   - exclusive: also removes every other key line of the file, except the
//     key this run is connected with (env.ControlKey), which is kept and
//     reported. The other entries of AuthorizedKeysFile (authorized_keys2)
//     are not touched.
//   - probe: the keys are installed as restrict,command="ProbeCommand", so
//     they can do nothing but prove that the user logs in and whether sudo
//     works (verify_access).
//   - state absent: removes the keys' lines; removing the control key is
//     refused.
//
// Before exclusive or absent removes the key a break-glass login of the
// playbook (env.Logins) uses, fresh logins must prove the control user and
// env.MinWorking of the other logins (guardRemoval); otherwise the task
// fails and the file is left as it was.
//
// Owner and modes are repaired even when the content is right (each a
// reported change): the file belongs to the user with mode 0600, and the
// directories between home and the file (~/.ssh) belong to the user with
// mode 0700 and are created when missing. Missing directories outside home
// (a file under /etc/ssh/authorized_keys/%u) are created root:root 0755.
//
// The file is written atomically (temp file in the same directory, owner and
// mode set, fsync, rename: bg_write); the previous version is kept as
// .NAME.breakglass.bak beside it (BackupPath).
type AuthorizedKey struct {
	user      string
	keys      []authKey
	exclusive bool
	probe     bool
	absent    bool
}

var (
	_ Module         = (*AuthorizedKey)(nil)
	_ engine.Planner = (*AuthorizedKey)(nil)
)

func init() { Register("authorized_key", NewAuthorizedKey) }

// ProbeCommand is the forced command of probe keys: it prints one line,
// "breakglass-probe user=NAME sudo=ok|no", the user's name and whether
// `sudo -n true` works. It holds no double quote, so it sits unescaped in
// command="…". It is the command line of probe_key.sh.
var ProbeCommand = engine.CommandLine(probeKeyScript)

//go:embed probe_key.sh
var probeKeyScript string

// ErrControlKey means a task would remove the key this run is connected
// with.
var ErrControlKey = errors.New("refusing to remove the key this run is connected with")

type authorizedKeyArgs struct {
	User      string   `yaml:"user"`
	Key       string   `yaml:"key"`
	Keys      []string `yaml:"keys"`
	KeyFile   string   `yaml:"key_file"`
	Options   string   `yaml:"options"`
	Exclusive bool     `yaml:"exclusive"`
	Probe     bool     `yaml:"probe"`
	State     string   `yaml:"state"`
}

// authKey is one key a task manages.
// KeyGiver is implemented by modules that give users keys
// (authorized_key): the emergency sshd's store holds what the play gives
// (SecondarySSHD.LinkPlay), found through this interface alone.
type KeyGiver interface {
	// GivenKeys returns the user the task is about, its keys as
	// (wire form, authorized_keys line) pairs, and whether the task
	// removes them (state: absent) rather than gives them.
	GivenKeys() (user string, keys [][2]string, absent bool)
}

// GivenKeys implements KeyGiver.
func (a *AuthorizedKey) GivenKeys() (string, [][2]string, bool) {
	keys := make([][2]string, len(a.keys))
	for i, k := range a.keys {
		keys[i] = [2]string{k.blob, k.line}
	}
	return a.user, keys, a.absent
}

type authKey struct {
	blob    string   // wire form (type and key): what identifies a key
	options []string // as they will be written
	comment string
	line    string // the line the task writes
}

// sshOptions are the authorized_keys options OpenSSH knows (sshd(8)), with
// whether they take a value. sshd ignores a line with an unknown option,
// which would silently lock the key out.
var sshOptions = map[string]bool{
	"agent-forwarding": false, "cert-authority": false, "command": true, "environment": true,
	"expiry-time": true, "from": true, "no-agent-forwarding": false, "no-port-forwarding": false,
	"no-pty": false, "no-user-rc": false, "no-x11-forwarding": false, "permitlisten": true,
	"permitopen": true, "port-forwarding": false, "principals": true, "pty": false,
	"no-touch-required": false, "verify-required": false, "restrict": false, "tunnel": true,
	"user-rc": false, "x11-forwarding": false,
}

// NewAuthorizedKey decodes an authorized_key task's arguments. key_file is
// read now, relative to the playbook's directory, so that a bad key is an
// input error reported before any host is touched.
func NewAuthorizedKey(file string, args *yaml.Node) (Module, error) {
	var a authorizedKeyArgs
	if err := yamlx.Decode(file, args, &a); err != nil {
		return nil, err
	}
	var errs *multierror.Error
	bad := func(n *yaml.Node, format string, v ...any) {
		errs = multierror.Append(errs, yamlx.Errorf(file, n, "authorized_key: "+format, v...))
	}
	m := &AuthorizedKey{user: a.User, exclusive: a.Exclusive, probe: a.Probe}
	if a.User == "" {
		bad(args, "user is required")
	} else if err := shell.ValidUser(a.User); err != nil {
		bad(moduleArg(args, "user"), "%v", err)
	}
	switch a.State {
	case "", "present":
	case "absent":
		m.absent = true
		if a.Exclusive {
			bad(moduleArg(args, "exclusive"), "exclusive makes no sense with state absent")
		}
	default:
		bad(moduleArg(args, "state"), "state %q: want present or absent", a.State)
	}

	var opts []string
	if a.Options != "" {
		var err error
		if opts, err = parseKeyOptions(a.Options); err != nil {
			bad(moduleArg(args, "options"), "options: %v", err)
		}
	}
	if a.Probe {
		for _, o := range opts {
			if name, _, _ := strings.Cut(o, "="); strings.EqualFold(name, "command") {
				bad(moduleArg(args, "options"), "options: probe keys have their own command=; drop it")
			}
		}
		opts = append([]string{"restrict", `command="` + ProbeCommand + `"`}, opts...)
	}

	seen := map[string]bool{}
	addKey := func(n *yaml.Node, where, s string) {
		pk, comment, err := parsePublicKeyLine(s)
		if err != nil {
			bad(n, "%s: %v", where, err)
			return
		}
		k := newAuthKey(pk, comment, opts)
		if seen[k.blob] {
			bad(n, "%s: the same key is listed twice", where)
			return
		}
		seen[k.blob] = true
		m.keys = append(m.keys, k)
	}
	if a.Key != "" {
		addKey(moduleArg(args, "key"), "key", a.Key)
	}
	for i, s := range a.Keys {
		addKey(moduleArgElem(args, "keys", i), fmt.Sprintf("keys[%d]", i), s)
	}
	if a.KeyFile != "" {
		n := moduleArg(args, "key_file")
		readKeyFile(file, a.KeyFile, func(format string, v ...any) { bad(n, format, v...) }, func(where, line string) { addKey(n, where, line) })
	}
	if a.Key == "" && len(a.Keys) == 0 && a.KeyFile == "" {
		bad(args, "give key, keys or key_file")
	}
	if err := errs.ErrorOrNil(); err != nil {
		return nil, err
	}
	return m, nil
}

// readKeyFile reads the public keys of key_file p (relative to the
// playbook file) and passes each line to add; bad reports what is wrong
// with the file. It never quotes the file's lines: it may be a private key.
func readKeyFile(file, p string, bad func(format string, v ...any), add func(where, line string)) {
	full := p
	if !filepath.IsAbs(full) {
		full = filepath.Join(filepath.Dir(file), full)
	}
	data, err := os.ReadFile(full)
	if err != nil {
		bad("key_file: %v", err)
		return
	}
	found := 0
	for i, line := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		found++
		if strings.Contains(t, "PRIVATE KEY") {
			bad("key_file %s: line %d: this is a private key; name the .pub file", p, i+1)
			return
		}
		add(fmt.Sprintf("key_file %s: line %d", p, i+1), strings.TrimSuffix(line, "\r"))
	}
	if found == 0 {
		bad("key_file %s holds no key", p)
	}
}

// parsePublicKeyLine parses one public key in authorized_keys format
// ("type base64 [comment]") and refuses anything else: several lines,
// control characters, leading options (they belong in options:, where
// they are checked), or a second key.
func parsePublicKeyLine(s string) (ssh.PublicKey, string, error) {
	if strings.ContainsAny(s, "\x00\r\n") {
		return nil, "", errors.New("a key must be one line (no NUL, CR or LF)")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return (r < 0x20 && r != '\t') || r == 0x7f }) {
		return nil, "", errors.New("a key must not hold control characters")
	}
	pk, comment, opts, rest, err := ssh.ParseAuthorizedKey([]byte(s))
	switch {
	case err != nil:
		return nil, "", errors.New(`not a public key in authorized_keys format ("ssh-ed25519 AAAA… comment")`)
	case len(opts) > 0:
		return nil, "", errors.New("the key carries options; put them in options:, where they are checked")
	case len(bytes.TrimSpace(rest)) > 0:
		return nil, "", errors.New("more than one key")
	}
	return pk, comment, nil
}

// sentinelKey is a well-formed key options are parsed against.
var sentinelKey = func() ssh.PublicKey {
	pk, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		panic(err)
	}
	return pk
}()

// parseKeyOptions checks an authorized_keys option list such as
// `from="10.0.0.0/8",no-pty` and returns its options.
func parseKeyOptions(s string) ([]string, error) {
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, errors.New("must be one line without control characters")
	}
	line := s + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sentinelKey)))
	pk, comment, opts, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil || comment != "" || len(rest) > 0 || len(opts) == 0 || !bytes.Equal(pk.Marshal(), sentinelKey.Marshal()) {
		return nil, fmt.Errorf("%q is not an authorized_keys option list (name or name=\"value\", separated by commas, no spaces outside quotes)", s)
	}
	for _, o := range opts {
		name, _, hasValue := strings.Cut(o, "=")
		takesValue, known := sshOptions[strings.ToLower(name)]
		switch {
		case !known:
			return nil, fmt.Errorf("unknown option %q: sshd would ignore the whole key line", name)
		case takesValue && !hasValue:
			return nil, fmt.Errorf("option %s needs a value (%s=\"…\")", name, name)
		case !takesValue && hasValue:
			return nil, fmt.Errorf("option %s takes no value", name)
		}
	}
	return opts, nil
}

func newAuthKey(pk ssh.PublicKey, comment string, opts []string) authKey {
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
	if comment != "" {
		line += " " + comment
	}
	if len(opts) > 0 {
		line = strings.Join(opts, ",") + " " + line
	}
	return authKey{blob: string(pk.Marshal()), options: opts, comment: comment, line: line}
}

// Queries returns the user's facts, sshd's effective config and key files
// included.
func (a *AuthorizedKey) Queries() []Query { return a.PlanQueries(Conn{}) }

// PlanQueries implements engine.Planner.
func (a *AuthorizedKey) PlanQueries(c Conn) []Query { return []Query{UserFactsQuery(a.user, c)} }

// sshdFacts: the key file is the one sshd reads for this connection.
func (*AuthorizedKey) ConnFacts() bool { return true }

// Plan implements engine.Planner: facts holds the user's facts.
func (a *AuthorizedKey) Plan(env *Env, facts []any) (*Plan, error) {
	var control string
	if env.ControlKey != "" {
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(env.ControlKey))
		if err != nil {
			return nil, fmt.Errorf("control key: %w", err)
		}
		control = string(pk.Marshal())
	}
	uf, ok := facts[0].(*UserFacts)
	if !ok {
		return nil, fmt.Errorf("fact %s holds %T", UserFactsKey(a.user), facts[0])
	}
	steps, err := a.planSteps(uf, authKeyRun{
		controlKey: control, controlUser: env.ControlUser, check: env.Check, diff: env.Diff,
	})
	if err != nil {
		return nil, err
	}
	p := &Plan{Steps: engineSteps(steps), Stale: []string{UserFactsKey(a.user)}}
	if len(uf.KeyFiles) == 0 {
		return p, nil
	}
	// The steps set modes, owners and the file's content exactly: the
	// user's facts afterwards are known without reading them again.
	var content []byte
	for _, s := range steps {
		if s.content != nil {
			content = s.content
		}
	}
	if content != nil {
		old := uf.KeyFiles[0].Content
		p.Guard = a.removalGuard(env, old, content)
	}
	if pred := predictFacts(uf, steps, uf.KeyFiles[0].Real, content); pred != nil {
		p.Known = map[string]any{UserFactsKey(a.user): pred}
	}
	return p, nil
}

// removalGuard is the lockout guard of removing key lines (exclusive,
// state absent), or nil when none is needed: when the new content no
// longer holds the key a break-glass login of the playbook uses for this
// user (or that key cannot be read), fresh logins must first prove that
// the control user and min_working of the logins left still get in. It is
// proven before the file is written, so a refusal changes nothing.
func (a *AuthorizedKey) removalGuard(env *Env, old, content []byte) *Guard {
	if env.MinWorking <= 0 {
		return nil
	}
	before, after := keyBlobs(old), keyBlobs(content)
	removed := false
	for b := range before {
		removed = removed || !after[b]
	}
	if !removed {
		return nil
	}
	var lost []string
	g := &Guard{Doubt: loginDoubt(env)}
	for _, l := range env.Logins {
		if l.User != a.user {
			continue
		}
		blob, err := loginKeyBlob(l.KeyFile)
		switch {
		case err != nil:
			lost = append(lost, fmt.Sprintf("%s (%v)", l.KeyFile, err))
		case before[blob] && !after[blob]:
			lost = append(lost, l.KeyFile)
		default:
			continue
		}
		g.LeftOut = append(g.LeftOut, l)
	}
	if len(lost) == 0 {
		return nil
	}
	g.Refusal = fmt.Sprintf("user %s: keys not removed: they hold the break-glass key %s", a.user, strings.Join(lost, ", "))
	return g
}

// keyBlobs returns the wire forms of the keys of an authorized_keys file.
func keyBlobs(content []byte) map[string]bool {
	blobs := map[string]bool{}
	for _, line := range strings.Split(string(content), "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(t)); err == nil {
			blobs[string(pk.Marshal())] = true
		}
	}
	return blobs
}

// loginKeyBlob returns the wire form of the public half of a login's
// private key file: from KEY.pub when it is there, else from the private
// key (an encrypted one in OpenSSH format names its public key in clear).
func loginKeyBlob(keyFile string) (string, error) {
	if data, err := os.ReadFile(keyFile + ".pub"); err == nil {
		if pk, _, _, _, err := ssh.ParseAuthorizedKey(data); err == nil {
			return string(pk.Marshal()), nil
		}
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return "", err
	}
	signer, err := ssh.ParsePrivateKey(data)
	var locked *ssh.PassphraseMissingError
	switch {
	case err == nil:
		return string(signer.PublicKey().Marshal()), nil
	case errors.As(err, &locked) && locked.PublicKey != nil:
		return string(locked.PublicKey.Marshal()), nil
	}
	// Never quote the file or the parser's detail: it is a secret.
	return "", errors.New("cannot read its public key")
}

// authKeyRun is what a plan needs to know about the run.
type authKeyRun struct {
	controlKey  string // wire form of env.ControlKey, "" when unknown
	controlUser string
	check       bool
	diff        bool
}

// plan computes the changes to the user's key file and the directories
// leading to it.
func (a *AuthorizedKey) planSteps(uf *UserFacts, run authKeyRun) ([]hostStep, error) {
	if !uf.Exists && !run.check {
		return nil, fmt.Errorf("user %s does not exist: create it first (a user task before this one)", a.user)
	}
	if err := uf.SSHDKnown(); err != nil {
		return nil, err
	}
	if a.absent && run.controlKey != "" {
		for _, k := range a.keys {
			if k.blob == run.controlKey {
				return nil, fmt.Errorf("user %s: %w", a.user, ErrControlKey)
			}
		}
	}
	if len(uf.KeyFiles) == 0 {
		msg := fmt.Sprintf("sshd reads no authorized keys file for %s (AuthorizedKeysFile none)", a.user)
		if c := uf.SSHD.AuthorizedKeysCommand; c != "" && c != "none" {
			msg += "; keys come from AuthorizedKeysCommand " + c
		}
		return nil, errors.New(msg)
	}
	if uf.HomeLink != nil {
		return nil, fmt.Errorf("user %s: home: %w", a.user, uf.HomeLink)
	}
	kf := &uf.KeyFiles[0]
	if err := kf.Refused(); err != nil {
		return nil, fmt.Errorf("user %s: %w", a.user, err)
	}
	// A file the user cannot read is not read by breakglass either (it
	// never reads a user's files as root). Check mode shows the owner and
	// mode repairs that would make it readable; apply refuses to guess
	// what it holds.
	unknown := kf.Unreadable && !a.exclusive && !a.absent
	if unknown && !run.check {
		return nil, fmt.Errorf("user %s: %s cannot be read as %s, as sshd reads it: make it %s's (ssh_permissions) or readable, then run again", a.user, kf.Real, a.user, a.user)
	}
	switch {
	case kf.Path == "":
		return nil, fmt.Errorf("user %s: cannot expand AuthorizedKeysFile %q (unknown %% token, or %%U before the user exists)", a.user, kf.Pattern)
	case kf.Real == "":
		return nil, fmt.Errorf("user %s: cannot resolve %s", a.user, kf.Path)
	}
	if err := shell.ValidPath(kf.Real); err != nil {
		return nil, fmt.Errorf("user %s: key file: %w", a.user, err)
	}
	file := kf.File()
	if file.Exists && !file.IsRegular() {
		return nil, fmt.Errorf("user %s: %s is not a regular file: sshd cannot read keys from it; move it away", a.user, kf.Real)
	}
	if a.absent && !file.Exists {
		return nil, nil
	}
	walk, inHome := uf.StrictModesWalk(kf)
	owner := a.user + ":"
	var steps []hostStep

	// Directories, from the top down: those between home and the file
	// belong to the user (0700); missing ones elsewhere are made root's.
	dirs := walk[1:]
	if inHome {
		home := dirs[len(dirs)-1]
		dirs = dirs[:len(dirs)-1]
		if !home.Exists && !run.check {
			return nil, fmt.Errorf("home %s of %s does not exist (the user task or ssh_permissions creates it)", home.Path, a.user)
		}
	}
	// What each step leaves behind, for predictFacts: a new directory
	// inherits a set-group-ID parent's group and bit; a numeric chmod
	// keeps a directory's set-ID bits and clears a file's.
	owned := func(st PathStat) *PathStat { st.UID, st.GID = uf.UID, uf.GID; return &st }
	parentOf := func(i int) PathStat { // the directory above walk[i]
		if i+1 < len(walk) {
			return walk[i+1]
		}
		return PathStat{}
	}
	created := func(i int, perm uint32, uid, gid int) *PathStat {
		st := PathStat{Path: walk[i].Path, Exists: true, UID: uid, GID: gid, Mode: modeDir | perm}
		if par := parentOf(i); par.IsDir() && par.Mode&0o2000 != 0 {
			st.Mode |= 0o2000
			if uid == 0 {
				st.GID = par.GID
			}
		}
		return &st
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		switch {
		case !d.Exists && inHome:
			st := created(i+1, 0o700, uf.UID, uf.GID)
			walk[i+1] = *st
			steps = append(steps, hostStep{
				change: Change{What: fmt.Sprintf("create directory %s (owner %s, 0700)", d.Path, a.user), Path: d.Path},
				cmd:    shell.Join("bg_mkdir", "0700", d.Path, owner),
				after:  st,
			})
		case !d.Exists:
			st := created(i+1, 0o755, 0, 0)
			walk[i+1] = *st
			steps = append(steps, hostStep{
				change: Change{What: fmt.Sprintf("create directory %s (owner root, 0755)", d.Path), Path: d.Path},
				cmd:    shell.Join("bg_mkdir", "0755", d.Path, "root"),
				after:  st,
			})
		case !d.IsDir():
			return nil, fmt.Errorf("user %s: %s is not a directory", a.user, d.Path)
		case inHome:
			if d.UID != uf.UID {
				d = *owned(d)
				steps = append(steps, hostStep{
					change: Change{What: fmt.Sprintf("chown %s %s (owner uid %d)", owner, d.Path, dirs[i].UID), Path: d.Path},
					cmd:    shell.Join("bg_chown", owner, d.Path),
					after:  &d,
				})
			}
			if d.Perm() != 0o700 {
				st := d
				st.Mode = d.Mode&^0o7777 | 0o700 | d.Mode&0o6000
				steps = append(steps, hostStep{
					change: Change{What: fmt.Sprintf("chmod 0700 %s (was %04o)", d.Path, d.Perm()), Path: d.Path},
					cmd:    shell.Join("bg_chmod", "0700", d.Path, a.user),
					after:  &st,
				})
			}
		}
	}

	old := kf.Content
	if !file.Exists {
		old = nil
	}
	var content []byte
	var ed keyEdit
	if !unknown {
		var err error
		if content, ed, err = a.edit(old, run); err != nil {
			return nil, err
		}
	}
	if bytes.IndexByte(content, 0) >= 0 {
		return nil, fmt.Errorf("user %s: %s holds a NUL byte, which no key line can: fix the file by hand", a.user, kf.Real)
	}
	if ed.changed {
		ch := Change{What: fmt.Sprintf("write %s (%s)", kf.Real, ed), Path: kf.Real}
		if run.diff {
			ch.Before, ch.After = string(old), string(content)
		}
		steps = append(steps, hostStep{
			change:  ch,
			cmd:     shell.Join("bg_write", kf.Real, owner, "0600", string(content)),
			content: content,
			after:   owned(PathStat{Path: kf.Real, Exists: true, Mode: modeRegular | 0o600}),
		})
		return steps, nil
	}
	if file.Exists {
		if file.UID != uf.UID {
			st := owned(file)
			steps = append(steps, hostStep{
				change: Change{What: fmt.Sprintf("chown %s %s (owner uid %d)", owner, kf.Real, file.UID), Path: kf.Real},
				cmd:    shell.Join("bg_chown", owner, kf.Real),
				after:  st,
			})
			file = *st
		}
		if file.Perm() != 0o600 {
			st := file
			st.Mode = file.Mode&^0o7777 | 0o600
			steps = append(steps, hostStep{
				change: Change{What: fmt.Sprintf("chmod 0600 %s (was %04o)", kf.Real, file.Perm()), Path: kf.Real},
				cmd:    shell.Join("bg_chmod", "0600", kf.Real, a.user),
				after:  &st,
			})
		}
	}
	return steps, nil
}

// keyEdit summarises what edit did to a key file.
type keyEdit struct {
	changed              bool
	added, updated, gone int
	keptControl          int
}

func (e keyEdit) String() string {
	var parts []string
	if e.added > 0 {
		parts = append(parts, fmt.Sprintf("%d key(s) added", e.added))
	}
	if e.updated > 0 {
		parts = append(parts, fmt.Sprintf("%d key line(s) rewritten", e.updated))
	}
	if e.gone > 0 {
		parts = append(parts, fmt.Sprintf("%d key line(s) removed", e.gone))
	}
	if e.keptControl > 0 {
		parts = append(parts, "kept the key this run is connected with, which exclusive would have removed")
	}
	if len(parts) == 0 {
		parts = append(parts, "rewritten")
	}
	return strings.Join(parts, "; ")
}

// edit returns the key file's new content. Lines other than key lines
// (comments, blank lines) are kept; with exclusive, lines that are neither
// comments nor keys breakglass can parse are removed too.
func (a *AuthorizedKey) edit(old []byte, run authKeyRun) ([]byte, keyEdit, error) {
	var ed keyEdit
	want := map[string]*authKey{}
	for i := range a.keys {
		want[a.keys[i].blob] = &a.keys[i]
	}
	placed := map[string]bool{}
	var out []string
	text := string(old)
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if text == "" {
		lines = nil
	}
	for _, line := range lines {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			out = append(out, line)
			continue
		}
		pk, comment, opts, _, err := ssh.ParseAuthorizedKey([]byte(t))
		if err != nil {
			if a.exclusive {
				ed.gone++
				continue
			}
			out = append(out, line)
			continue
		}
		blob := string(pk.Marshal())
		k, listed := want[blob]
		switch {
		case listed && a.absent:
			ed.gone++
		case listed && placed[blob]:
			ed.gone++ // a second line of a managed key
		case listed:
			placed[blob] = true
			if slices.Equal(opts, k.options) && (k.comment == "" || k.comment == comment) {
				out = append(out, line)
			} else {
				out = append(out, k.line)
				ed.updated++
			}
		case a.exclusive && blob == run.controlKey:
			out = append(out, line)
			ed.keptControl++
		case a.exclusive:
			if run.controlKey == "" && a.user == run.controlUser {
				return nil, ed, fmt.Errorf("exclusive keys of %s, the user this run is connected as: the key this run is connected with is unknown, so it cannot be protected; refusing", a.user)
			}
			ed.gone++
		default:
			out = append(out, line)
		}
	}
	if !a.absent {
		for _, k := range a.keys {
			if !placed[k.blob] {
				out = append(out, k.line)
				ed.added++
			}
		}
	}
	ed.changed = ed.added+ed.updated+ed.gone > 0
	if !ed.changed {
		return old, ed, nil
	}
	if len(out) == 0 {
		return []byte{}, ed, nil
	}
	return []byte(strings.Join(out, "\n") + "\n"), ed, nil
}

// ListUsers names the account whose keys this task manages, for audit.
func (a *AuthorizedKey) ListUsers() []string { return []string{a.user} }
