package tasks

import (
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/sshdconf"
)

// Host facts shared by the user, authorized_key and ssh_permissions modules
// (and by audit): one UserFacts per user, gathered by one shell script that
// reads the account (passwd, the shadow fields that matter, groups), sshd's
// effective configuration for that user as seen from this run's connection,
// and everything sshd's StrictModes check looks at for each
// AuthorizedKeysFile, plus the key files' contents (public data).
//
// Password hashes never leave the host: the script prints only what kind
// of value the shadow password field holds.

// PathStat is stat(2) of a path, following symlinks (as sshd does).
type PathStat struct {
	Path   string
	Exists bool
	UID    int
	GID    int
	Mode   uint32 // st_mode: file type and permission bits
}

const (
	modeTypeMask = 0o170000
	modeDir      = 0o040000
	modeRegular  = 0o100000
)

// IsDir reports whether the path is a directory.
func (s PathStat) IsDir() bool { return s.Exists && s.Mode&modeTypeMask == modeDir }

// IsRegular reports whether the path is a regular file.
func (s PathStat) IsRegular() bool { return s.Exists && s.Mode&modeTypeMask == modeRegular }

// Perm returns the permission bits, setuid, setgid and sticky included.
func (s PathStat) Perm() uint32 { return s.Mode & 0o7777 }

// Executable reports whether sshd would accept the path as a login shell:
// it exists and has an execute bit (stat follows symlinks). A non-regular
// file is refused too, as exec would fail.
func (s PathStat) Executable() bool { return s.IsRegular() && s.Mode&0o111 != 0 }

// PasswordState is what the shadow password field holds. The hash itself
// is never read off the host.
type PasswordState string

// Password field states.
const (
	PasswordHash   PasswordState = "hash"   // a password is set
	PasswordLocked PasswordState = "locked" // starts with "!": with UsePAM no, sshd refuses the account
	PasswordStar   PasswordState = "star"   // "*" (or "*…"): no password, not a lock
	PasswordEmpty  PasswordState = "empty"  // no password at all
)

// Shadow holds the shadow fields that decide whether an account may log in.
// Day counts are days since 1970-01-01; -1 means the field is empty.
type Shadow struct {
	Password   PasswordState // field 2, classified
	LastChange int64         // field 3: 0 forces a password change
	Max        int64         // field 5: maximum password age
	Inactive   int64         // field 7: days after Max before the account is disabled
	Expire     int64         // field 8: the account expires after this day
}

// Ageing reports whether a maximum password age applies. Like chage -l,
// it counts a maximum of 10000 days or more (login.defs' 99999) as none.
func (s *Shadow) Ageing() bool { return s.Max >= 0 && s.Max < 10000 }

// KeyOnly reports whether the account has no usable password, so that
// password ageing can only ever lock it out.
func (s *Shadow) KeyOnly() bool { return s.Password != PasswordHash }

// SSHDConfig is sshd's effective configuration for one user and connection
// (`sshd -T -C …`), in the one model of sshd's rules.
type SSHDConfig = sshdconf.Effective

// KeyFile is one entry of the effective AuthorizedKeysFile list.
type KeyFile struct {
	Pattern string // as configured, e.g. ".ssh/authorized_keys" or "/etc/ssh/authorized_keys/%u"
	// Path is Pattern with %u, %h, %U and %% expanded and made absolute
	// (relative to home), as sshd does. "" when it cannot be expanded
	// (an unknown token, or %U for a user that does not exist yet).
	Path string
	// Real is Path with symlinks resolved (realpath -m: missing components
	// are kept as they are).
	Real string
	// Walk is stat of Real, then of each parent directory up to /.
	// StrictModesWalk cuts it where sshd stops.
	Walk []PathStat
	// Content is the file's content when Real is a regular file, read as
	// the user (as sshd reads it).
	Content []byte
	// Link is set when Path leads through a symbolic link that someone
	// other than root could have planted (in a directory a user can
	// change): breakglass does not follow it, so Real, Walk and Content
	// are empty. LinkTarget is what it points at.
	Link, LinkTarget string
	// TooLarge is the file's size when it is over KeyFileMax (Content is
	// then not read); Unreadable means the user cannot read it.
	TooLarge   int64
	Unreadable bool
}

// Refused returns why breakglass will not read or change the key file, or
// nil: a link it does not follow, or a file too large to read.
func (k *KeyFile) Refused() error {
	switch {
	case k.Link != "":
		return &LinkError{Path: k.Link, Target: k.LinkTarget}
	case k.TooLarge > 0:
		return fmt.Errorf("%s is %d bytes, over the %d MiB limit breakglass reads of a key file: not read", k.Real, k.TooLarge, KeyFileMax>>20)
	}
	return nil
}

// LinkError is a symbolic link where a directory or file should be, in a
// directory users can change: breakglass never follows one there.
type LinkError struct {
	Path, Target string
}

func (e *LinkError) Error() string {
	return fmt.Sprintf("%s is a symbolic link (to %s) in a directory users can change: breakglass does not follow it; replace it with the directory or file itself", e.Path, e.Target)
}

// File returns the stat of the key file itself (symlinks resolved).
func (k *KeyFile) File() PathStat {
	if len(k.Walk) == 0 {
		return PathStat{Path: k.Real}
	}
	return k.Walk[0]
}

// UserFacts is everything breakglass reads about one user on one host.
type UserFacts struct {
	Name   string
	Exists bool // false: the user does not exist (yet)
	UID    int  // -1 when the user does not exist
	GID    int
	Gecos  string
	// Home is the passwd home, or, for a user that does not exist yet, the
	// home useradd would give it (useradd -D's HOME/NAME).
	Home      string
	HomeReal  string // Home with symlinks resolved; "" at a link not followed (HomeLink)
	HomeLink  *LinkError
	HomeStat  PathStat
	Shell     string   // passwd shell ("" means /bin/sh to sshd)
	ShellStat PathStat // of Shell, or of /bin/sh when Shell is ""
	Groups    []string // id -Gn: primary group first
	GIDs      []int
	Shadow    *Shadow // nil when the user has no shadow entry
	Today     int64   // the host's current day since 1970-01-01

	// Conn is the connection the sshd config was evaluated for; incomplete
	// when the gathering script could not learn it (then SSHD is empty).
	Conn     Conn
	SSHD     SSHDConfig
	SSHDErr  string    // sshd -T failed: its exit status and error output
	KeyFiles []KeyFile // effective AuthorizedKeysFile entries, "none" left out

	// sshdShared holds sshd -T's output when no Match block can make it
	// differ between users (UserFactsPrelude read it once for all of them), so
	// that reading this host's users again need not run sshd -T.
	sshdShared string
}

// SSHDKnown returns an error unless the effective sshd configuration was
// read.
func (u *UserFacts) SSHDKnown() error {
	switch {
	case u.SSHDErr != "":
		return fmt.Errorf("%w: sshd -T for %s: %s", ErrSSHDConfig, u.Name, u.SSHDErr)
	case !u.Conn.Complete():
		return fmt.Errorf("%w: the connection's addresses are unknown, so sshd's Match blocks cannot be evaluated for %s", ErrSSHDConfig, u.Name)
	}
	return nil
}

// ErrSSHDConfig means sshd's effective configuration could not be read.
var ErrSSHDConfig = errors.New("cannot read sshd's effective configuration")

// StrictModesWalk returns what sshd's StrictModes check (OpenSSH misc.c
// safe_path) looks at for key file k, in the order sshd looks: the file
// itself (symlinks resolved), then each parent directory up to and
// including the user's home directory (resolved), or up to / when the file
// is not below home. inHome reports whether the walk stopped at home.
// Components that do not exist are included (Exists false).
func (u *UserFacts) StrictModesWalk(k *KeyFile) (walk []PathStat, inHome bool) {
	for i, s := range k.Walk {
		walk = append(walk, s)
		if i > 0 && u.HomeReal != "" && s.Path == u.HomeReal {
			return walk, true
		}
	}
	return walk, false
}

// KeyFileMax is the most breakglass reads of one key file. An
// authorized_keys file of a thousand RSA-4096 keys is under 800 KiB; a
// larger one is reported by its size (KeyFile.TooLarge), never read, so a
// user's file cannot make the controller's memory grow.
const KeyFileMax = 1 << 20

var (
	keyFileMaxStr   = strconv.Itoa(KeyFileMax)
	keyFileMax64Str = strconv.Itoa((KeyFileMax+2)/3*4 + 1) // base64 of KeyFileMax bytes, plus one
)

//go:embed resolve.sh
var resolveScript string

// UserFactsKey is the Facts key of a user's facts.
func UserFactsKey(name string) string { return "user:" + name }

// UserFactsQuery returns the query gathering UserFacts for user name,
// evaluating sshd's configuration for connection c. When c is incomplete
// the script learns the connection from the SSH_CONNECTION of the session
// it runs in (its own environment or an ancestor process's), which is how
// the runner's one-round-trip gathering, which has no Env, gets it.
func UserFactsQuery(name string, c Conn) Query {
	var b strings.Builder
	if c.Complete() {
		fmt.Fprintf(&b, "u=%s client=%s server=%s port=%d\n", shell.Quote(name), shell.Quote(c.Client), shell.Quote(c.Server), c.Port)
	} else {
		fmt.Fprintf(&b, "u=%s client= server= port=\n", shell.Quote(name))
	}
	b.WriteString(userFactsScript)
	return Query{
		Key:    UserFactsKey(name),
		Script: b.String(),
		Parse:  func(out []byte) (any, error) { return ParseUserFacts(name, out) },
		Shared: userShared,
	}
}

var (
	_ engine.SSHDView = (*UserFacts)(nil)
	_ engine.Rereader = (*UserFacts)(nil)
)

// SSHDSetting implements engine.SSHDView: keyword's value in the user's
// effective sshd configuration, known when sshd -T ran for a complete
// connection.
func (u *UserFacts) SSHDSetting(keyword string) (string, bool) {
	return u.SSHD.Get(keyword), u.SSHDKnown() == nil
}

// SSHDConn implements engine.SSHDView: the connection sshd -T ran for.
func (u *UserFacts) SSHDConn() Conn { return u.Conn }

// Reread implements engine.Rereader: the user's facts are read again in
// the round trip of the steps that made them stale, since the user's
// later tasks read them.
func (u *UserFacts) Reread(c Conn) Query { return UserFactsQuery(u.Name, c) }

// userFactsScript prints one record per line: a tag, then fields; a path
// is always the last field. It never fails: what it cannot read it reports.
//
// Every process costs (a small VM forks a few hundred a second), so it
// uses what UserFactsPrelude computed once for all users when it ran first
// (bg_client/bg_server/bg_port, bg_today, and sshd's configuration when no
// Match block can make it differ between users), and shell builtins where
// they do the job.
var userFactsScript = "bg_keymax=" + keyFileMaxStr + " bg_keymax64=" + keyFileMax64Str + "\n" + resolveScript + userFactsBody

// userFactsBody is userfacts.sh: what the user facts script runs after
// its settings and resolve.sh.
//
//go:embed userfacts.sh
var userFactsBody string

// ParseUserFacts parses the output of UserFactsQuery's script for user
// name.
func ParseUserFacts(name string, out []byte) (*UserFacts, error) {
	u := &UserFacts{Name: name, UID: -1, GID: -1}
	u.SSHD.Values = map[string][]string{}
	var (
		sawHeader, sawEnd, sawShadow bool
		sshdRC                       = -1
		sshdErr                      []string
		sshdSkip, shared             bool
		sshdLines                    []string
		shellPath, homePath          string
		stats                        = map[string]PathStat{}
		byIndex                      = map[int]*KeyFile{}
		walks                        = map[int][]string{}
		order                        []int
		links                        = map[string]*LinkError{}
	)
	keyFile := func(field string) (int, *KeyFile, error) {
		i, err := strconv.Atoi(field)
		if err != nil || i < 1 {
			return 0, nil, fmt.Errorf("bad key file index %q", field)
		}
		k, ok := byIndex[i]
		if !ok {
			k = &KeyFile{}
			byIndex[i] = k
			order = append(order, i)
		}
		return i, k, nil
	}
	for n, line := range strings.Split(string(out), "\n") {
		if line == "" {
			continue
		}
		tag, rest, _ := strings.Cut(line, " ")
		if !sawHeader && tag != "breakglass-user-facts" {
			return nil, fmt.Errorf("user facts of %s: line %d: missing header", name, n+1)
		}
		var err error
		switch tag {
		case "breakglass-user-facts":
			if rest != "2 "+name {
				err = fmt.Errorf("unexpected header %q", line)
			}
			sawHeader = true
		case "conn":
			f := strings.Fields(rest)
			if len(f) != 3 {
				err = errors.New("bad conn record")
				break
			}
			u.Conn = Conn{Client: dashNone(f[0]), Server: dashNone(f[1])}
			if f[2] != "-" {
				u.Conn.Port, err = strconv.Atoi(f[2])
			}
		case "today":
			u.Today, err = strconv.ParseInt(rest, 10, 64)
		case "passwd":
			err = u.parsePasswd(rest)
		case "newhome":
			u.Home = rest
		case "shell":
			shellPath = rest
		case "home":
			homePath = rest
		case "homereal":
			u.HomeReal = rest
		case "groups":
			u.Groups = strings.Fields(rest)
		case "gids":
			for _, g := range strings.Fields(rest) {
				id, aerr := strconv.Atoi(g)
				if aerr != nil {
					err = fmt.Errorf("bad gid %q", g)
					break
				}
				u.GIDs = append(u.GIDs, id)
			}
		case "shadow":
			u.Shadow, err = parseShadow(rest)
			sawShadow = true
		case "noshadow":
			sawShadow = true
		case "stat":
			var st PathStat
			if st, err = parseStatLine(rest); err == nil {
				stats[st.Path] = st
			}
		case "sshd-rc":
			sshdRC, err = strconv.Atoi(rest)
		case "sshd":
			u.SSHD.Add(rest)
			sshdLines = append(sshdLines, rest)
		case "sshd-shared":
			shared = true
		case "sshd-err":
			sshdErr = append(sshdErr, rest)
		case "sshd-skip":
			sshdSkip = true
		case "link":
			f := strings.SplitN(rest, " ", 3)
			if len(f) != 3 {
				err = errors.New("bad link record")
				break
			}
			var target, at []byte
			if target, err = base64.StdEncoding.DecodeString(f[0]); err != nil {
				break
			}
			if at, err = base64.StdEncoding.DecodeString(f[1]); err == nil {
				links[f[2]] = &LinkError{Path: string(at), Target: strconv.QuoteToGraphic(string(target))}
			}
		case "aktoolarge", "akunreadable":
			idx, val, _ := strings.Cut(rest, " ")
			_, k, kerr := keyFile(idx)
			if kerr != nil {
				err = kerr
				break
			}
			if tag == "akunreadable" {
				k.Unreadable = true
			} else if k.TooLarge, err = strconv.ParseInt(val, 10, 64); err == nil && k.TooLarge <= 0 {
				err = fmt.Errorf("bad size %q", val)
			}
		case "akf", "akpath", "akreal", "walk", "content":
			idx, val, _ := strings.Cut(rest, " ")
			i, k, kerr := keyFile(idx)
			if kerr != nil {
				err = kerr
				break
			}
			switch tag {
			case "akf":
				k.Pattern = val
			case "akpath":
				k.Path = val
			case "akreal":
				k.Real = val
			case "walk":
				walks[i] = append(walks[i], val)
			case "content":
				k.Content, err = base64.StdEncoding.DecodeString(val)
				if k.Content == nil && err == nil {
					k.Content = []byte{}
				}
			}
		case "end":
			sawEnd = true
		default:
			err = fmt.Errorf("unknown record %q", tag)
		}
		if err != nil {
			return nil, fmt.Errorf("user facts of %s: line %d: %w", name, n+1, err)
		}
	}
	switch {
	case !sawHeader:
		return nil, fmt.Errorf("user facts of %s: empty output", name)
	case !sawEnd:
		return nil, fmt.Errorf("user facts of %s: output ends early", name)
	case u.Exists && !sawShadow:
		return nil, fmt.Errorf("user facts of %s: no shadow record", name)
	case u.Exists && shellPath == "":
		return nil, fmt.Errorf("user facts of %s: no shell record", name)
	}
	statOf := func(p string) PathStat {
		if st, ok := stats[p]; ok {
			return st
		}
		return PathStat{Path: p}
	}
	if shellPath != "" {
		u.ShellStat = statOf(shellPath)
	}
	u.HomeStat = statOf(homePath)
	if u.HomeReal != "" && u.HomeReal != homePath {
		u.HomeStat = statOf(u.HomeReal)
		u.HomeStat.Path = homePath
	}
	u.HomeLink = links[homePath]
	if sshdSkip {
		return u, nil
	}
	if sshdRC != 0 {
		msg := strings.Join(sshdErr, "; ")
		if msg == "" {
			msg = "no error output"
		}
		u.SSHDErr = fmt.Sprintf("exit status %d: %s", sshdRC, msg)
		return u, nil
	}
	u.SSHD.Fill()
	if shared {
		u.sshdShared = strings.Join(sshdLines, "\n")
	}
	for _, i := range order {
		k := byIndex[i]
		if l := links[k.Path]; l != nil && k.Real == "" {
			k.Link, k.LinkTarget = l.Path, l.Target
		}
		for _, p := range walks[i] {
			k.Walk = append(k.Walk, statOf(p))
		}
		if k.Real != "" && (len(k.Walk) == 0 || k.Walk[0].Path != k.Real) {
			return nil, fmt.Errorf("user facts of %s: key file %d: walk does not start at %s", name, i, k.Real)
		}
		u.KeyFiles = append(u.KeyFiles, *k)
	}
	return u, nil
}

func dashNone(s string) string {
	if s == "-" {
		return ""
	}
	return s
}

func (u *UserFacts) parsePasswd(line string) error {
	f := strings.Split(line, ":")
	if len(f) != 7 || f[0] != u.Name {
		return fmt.Errorf("bad passwd record")
	}
	uid, err1 := strconv.Atoi(f[2])
	gid, err2 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("bad uid or gid in passwd record")
	}
	u.Exists, u.UID, u.GID, u.Gecos, u.Home, u.Shell = true, uid, gid, f[4], f[5], f[6]
	return nil
}

func parseShadow(rest string) (*Shadow, error) {
	f := strings.Fields(rest)
	if len(f) != 5 {
		return nil, fmt.Errorf("bad shadow record")
	}
	s := &Shadow{Password: PasswordState(f[0])}
	switch s.Password {
	case PasswordHash, PasswordLocked, PasswordStar, PasswordEmpty:
	default:
		return nil, fmt.Errorf("bad password state %q", f[0])
	}
	for i, p := range []*int64{&s.LastChange, &s.Max, &s.Inactive, &s.Expire} {
		if f[i+1] == "-" {
			*p = -1
			continue
		}
		v, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad shadow field %q", f[i+1])
		}
		*p = v
	}
	return s, nil
}

// parseStatLine parses "UID GID HEXMODE PATH" ("- - -" when missing).
func parseStatLine(rest string) (PathStat, error) {
	f := strings.SplitN(rest, " ", 4)
	if len(f) != 4 || f[3] == "" {
		return PathStat{}, errors.New("bad stat record")
	}
	st := PathStat{Path: f[3]}
	if f[0] == "-" {
		return st, nil
	}
	uid, err1 := strconv.Atoi(f[0])
	gid, err2 := strconv.Atoi(f[1])
	mode, err3 := strconv.ParseUint(f[2], 16, 32)
	if err1 != nil || err2 != nil || err3 != nil {
		return PathStat{}, errors.New("bad stat record")
	}
	st.Exists, st.UID, st.GID, st.Mode = true, uid, gid, uint32(mode)
	return st, nil
}

// staleFor reports whether the facts were gathered for another connection
// than c; an incomplete c accepts any.

// PathFactsKey is the Facts key of the stat of path p.
func PathFactsKey(p string) string { return "path:" + p }

// PathQuery returns the query gathering the stat (following symlinks) of
// absolute path p; its value is a PathStat.
func PathQuery(p string) Query {
	return Query{
		Key:    PathFactsKey(p),
		Script: "p=" + shell.Quote(p) + "\n" + pathStatScript,
		Parse: func(out []byte) (any, error) {
			st, err := parseStatLine(strings.TrimSuffix(string(out), "\n"))
			if err != nil || st.Path != p {
				return nil, fmt.Errorf("stat %s: unexpected output %q", p, out)
			}
			return st, nil
		},
	}
}

// pathStatScript is path_stat.sh, PathQuery's script after its header.
//
//go:embed path_stat.sh
var pathStatScript string

// GroupFactsKey is the Facts key of whether group g exists.
func GroupFactsKey(g string) string { return "group:" + g }

// GroupQuery returns the query telling whether group g exists; its value
// is a bool.
func GroupQuery(g string) Query {
	return Query{
		Key:    GroupFactsKey(g),
		Script: "g=" + shell.Quote(g) + "\n" + groupExistsScript,
		Parse: func(out []byte) (any, error) {
			switch strings.TrimSpace(string(out)) {
			case "present":
				return true, nil
			case "absent":
				return false, nil
			}
			return nil, fmt.Errorf("group %s: unexpected output %q", g, out)
		},
	}
}

// groupExistsScript is group_exists.sh, GroupQuery's script after its
// header.
//
//go:embed group_exists.sh
var groupExistsScript string
