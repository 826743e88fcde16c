package audit

import (
	_ "embed"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/sshdconf"
	"github.com/breakglass/breakglass/tasks"
)

// HostFactsKey is the Facts key of everything audit reads about the host
// as a whole (and of the users it finds only on the host: the session's
// user, and with --all-users every account that can log in).
const HostFactsKey = "audit:host"

// HostFacts is what the host query reads. File contents are public
// configuration (sshd_config, PAM stacks, sudoers, access.conf) without
// their comment and blank lines (line numbers kept); no secret is read.
type HostFacts struct {
	Now float64 // the host's clock, seconds since 1970
	TZ  string  // its UTC offset, "+0100"

	SSHDTestRC  int             // exit status of sshd -t
	SSHDTestOut []string        // its output
	Privsep     map[string]bool // candidate privilege separation dirs → exists
	PidFile     string
	Listener    *Listener          // nil when no running sshd was found through the pidfile
	Config      map[string][]byte  // sshd_config and every file it includes
	ConfigMTime map[string]float64 // their mtimes
	ConfigOrder []string           // as dumped

	SELinux string // getenforce's answer, "" when there is no getenforce

	PAMDir      string            // the multiarch security directory, "" when not found
	PAMModules  map[string]bool   // file names in PAMDir
	PAMFiles    map[string][]byte // every file of /etc/pam.d, by name
	PAMAbsolute map[string]bool   // module given by absolute path → exists
	AccessConf  map[string][]byte // access.conf, access.d/*.conf, accessfile= targets (and the other text files read)
	AccessOrder []string          // access.conf, then access.d/*.conf
	Faillock    []byte            // /etc/security/faillock.conf
	Nologin     []string          // the nologin files that exist

	// SocketActivated: ssh.socket is in charge (ssh.service not enabled),
	// and SocketListen is its Listen property ("ADDR:PORT (Stream) …").
	SocketActivated bool
	SocketListen    string

	SudoInstalled bool
	SudoFiles     []SudoFile // /etc/sudoers, then each includedir entry
	SudoDirs      []string   // its includedirs
	VisudoRC      int        // exit status of visudo -c (-1: not run)
	VisudoOut     []string   // its output

	UIDNames map[int]string // /etc/passwd: uid → name, for evidence

	// Revoked is every RevokedKeys file of the sshd configuration (any
	// Match block), by path; nil on recordings made before it was read.
	Revoked     map[string]*RevokedList
	TxtMissing  []string          // PAM modules' files (file=, conf=) that do not exist
	TxtMode     map[string]uint32 // their stat mode (type and permissions), by path; nil when not read
	SSHDVersion string            // sshd -V, then dpkg's package: "OpenSSH_9.2, OpenSSL 3.0.19 27 Jan 2026 openssh-server=1:9.2p1-2+deb12u10"
	// PrimaryGID is /etc/passwd's uid → gid, and GroupMembers /etc/group's
	// gid → member names (getent group); both nil when not read.
	PrimaryGID   map[int]int
	GroupMembers map[int][]string
	GroupGID     map[string]int // /etc/group's name → gid; nil when not read

	// What pam_limits counts maxlogins and maxsyslogins against: the
	// sessions logind knows (Linux-PAM built with logind, Debian 13) or
	// utmp's (Debian 12), as LimitsCount says; "" when not read. This
	// audit's own logind session is left out.
	LimitsCount string
	Logins      []Login
	NrOpen      int64 // /proc/sys/fs/nr_open: no nofile hard limit may exceed it; 0 when not read

	Session    string   // the user the host query ran for (sudo's SUDO_USER), "" when unknown
	Candidates []string // --all-users: accounts with a login shell, in passwd order

	Users  map[string]*tasks.UserFacts // facts gathered inside this query
	Extras map[string]*UserExtras
}

// RevokedList is a RevokedKeys file: "missing" (or unreadable: sshd then
// refuses every key), "krl" (binary; Listing is ssh-keygen -Q -l's
// listing) or "text" (its lines are in AccessConf).
type RevokedList struct {
	Path    string
	Kind    string
	Listing []string
}

// Login is a session pam_limits counts: a utmp USER_PROCESS entry (Class
// "utmp"; Alive: its process still runs) or a logind session (its class).
type Login struct {
	User  string
	Class string
	Alive bool
}

// Listener is the running sshd that accepts connections.
type Listener struct {
	PID  int
	Comm string
	// Start is when it last read its configuration, seconds since 1970:
	// the later of its process start and the pidfile's mtime (a SIGHUP
	// re-executes sshd in the same process and rewrites the pidfile).
	Start        float64
	ProcessStart float64
	PidFileMTime float64
}

// SudoFile is a sudoers file: stat and content.
type SudoFile struct {
	Path    string
	Dir     string // the includedir it was found in, "" for /etc/sudoers and @include files
	Stat    tasks.PathStat
	Content []byte
}

// UserExtras is what audit reads about a user besides the shared user
// facts.
type UserExtras struct {
	Exists   bool
	HomeKeys int      // non-comment lines in ~/.ssh/authorized_keys; -1 when absent
	SudoRC   int      // exit status of sudo -l -U; -1 when not run
	SudoTrue int      // exit status of sudo -l -U U true (what the probe runs); -1 when not run
	SudoOut  []string // its output (rules, Defaults)
	Faillock []string // faillock --user U (TZ=UTC)
	SELinux  []string // restorecon -nvR ~/.ssh: what it would relabel
}

// userSpec is a user the host query reads: its facts (unless the shared
// query does) and its extras, with sudo or without.
type userSpec struct {
	Name  string
	Facts bool
	Sudo  bool
}

// hostQuery returns the query reading the host and, in the same round trip,
// the users in users, the session's user (session) and, with all, every
// account that can log in. conn is the connection sshd's Match blocks are
// evaluated for; when incomplete, the embedded user facts script learns it
// from the SSH session it runs in.
func hostQuery(conn engine.Conn, users []userSpec, session, all bool) (engine.Query, error) {
	body, err := userFactsBody()
	if err != nil {
		return engine.Query{}, err
	}
	var b strings.Builder
	names := make([]string, len(users))
	for i, u := range users {
		names[i] = u.Name
	}
	b.WriteString(tasks.UserFactsPrelude(conn, names...))
	var spec []string
	for _, u := range users {
		if err := shell.ValidUser(u.Name); err != nil {
			return engine.Query{}, err
		}
		f := ":"
		if u.Facts {
			f += "f"
		}
		if u.Sudo {
			f += "s"
		}
		spec = append(spec, u.Name+f)
	}
	fmt.Fprintf(&b, "bg_users=%s bg_session=%d bg_all=%d\n", shell.Quote(strings.Join(spec, " ")), b2i(session), b2i(all))
	b.WriteString("bg_uf() (\nu=$1 client=$bg_client server=$bg_server port=$bg_port\n")
	b.WriteString(body)
	b.WriteString(")\n")
	b.WriteString(sshdconf.Shell)
	b.WriteString(hostScript)
	return engine.Query{
		Key:    HostFactsKey,
		Script: b.String(),
		Parse:  func(out []byte) (any, error) { return ParseHostFacts(out) },
	}, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// userFactsBody is the shared user facts script without its first line,
// which sets u, client, server and port: the host query runs it as a
// function for users it finds on the host.
func userFactsBody() (string, error) {
	s := tasks.UserFactsQuery("root", engine.Conn{}).Script
	first, body, ok := strings.Cut(s, "\n")
	if !ok || !strings.HasPrefix(first, "u=root client= server= port=") {
		return "", errors.New("internal error: the user facts script does not start by setting u, client, server and port")
	}
	return body, nil
}

// hostScript reads the host. The query is one part of the wire framing
// (internal/wire), which runs it with stdin from /dev/null (the shell
// itself reads the script from stdin) and says whether it ran to its end.
// Lines are "tag fields…", a path last; file contents come as one record
// per line ("cfgline N PATH<TAB>TEXT"), each kind of file dumped by one
// awk, as every process costs (a small VM forks a few hundred a second).
// A user's facts are records too: "uf NAME LINE" for each line the user
// facts script printed, so nothing a user controls on the host can end
// that user's facts or start anything else.
//
//go:embed host.sh
var hostScript string

// hostFormat is the first line of the host query's output: the version of
// its records (2: a user's facts are "uf" records).
const hostFormat = "audit-host 2"

var (
	errNoHeader = errors.New("host facts: missing header")
	candidateRe = regexp.MustCompile(`^[A-Za-z0-9._][A-Za-z0-9._-]*$`)
)

// ParseHostFacts parses the output of the host query.
func ParseHostFacts(out []byte) (*HostFacts, error) {
	h := &HostFacts{
		ConfigMTime: map[string]float64{}, Privsep: map[string]bool{},
		PAMModules: map[string]bool{}, PAMFiles: map[string][]byte{}, PAMAbsolute: map[string]bool{},
		AccessConf: map[string][]byte{},
		Users:      map[string]*tasks.UserFacts{}, Extras: map[string]*UserExtras{}, UIDNames: map[int]string{},
		SSHDTestRC: -1, VisudoRC: -1,
	}
	var (
		sawHeader, sawEnd bool
		ufOrder           []string
		ufLines           = map[string][]string{}
		sudoStat          = map[string]tasks.PathStat{}
		sudoOrder         []string
		dumps             = map[string]*fileDump{"cfg": newDump(), "pam": newDump(), "txt": newDump()}
		lastRevoked       *RevokedList
	)
	lines := strings.Split(string(out), "\n")
	for n, line := range lines {
		if line == "" {
			continue
		}
		tag, rest, _ := strings.Cut(line, " ")
		if !sawHeader {
			if line != hostFormat {
				return nil, errNoHeader
			}
			sawHeader = true
			continue
		}
		var err error
		switch tag {
		case "cfgfile", "pamfile", "txtfile":
			dumps[strings.TrimSuffix(tag, "file")].file(rest)
		case "cfgline", "pamline", "txtline":
			err = dumps[strings.TrimSuffix(tag, "line")].line(rest)
		case "now":
			f := strings.Fields(rest)
			if len(f) != 2 {
				err = errors.New("bad now record")
				break
			}
			h.Now, err = strconv.ParseFloat(f[0], 64)
			h.TZ = f[1]
		case "sshd-t":
			h.SSHDTestRC, err = strconv.Atoi(rest)
		case "sshd-t-out":
			if rest != "" {
				h.SSHDTestOut = append(h.SSHDTestOut, rest)
			}
		case "privsep":
			state, p, _ := strings.Cut(rest, " ")
			h.Privsep[p] = state == "present"
		case "pidfile":
			h.PidFile = rest
		case "cfgstat":
			mt, p, _ := strings.Cut(rest, " ")
			var v float64
			if v, err = strconv.ParseFloat(mt, 64); err == nil {
				h.ConfigMTime[p] = v
				dumps["cfg"].file(p)
			}
		case "listener":
			h.Listener, err = parseListener(rest)
		case "selinux":
			h.SELinux = rest
		case "pamdir":
			h.PAMDir = rest
		case "pammod":
			h.PAMModules[rest] = true
		case "pamabs":
			ok, p, _ := strings.Cut(rest, " ")
			h.PAMAbsolute[p] = ok == "1"
		case "sshsocket":
			h.SocketActivated = true
			h.SocketListen = rest
		case "nologin":
			if !slices.Contains(h.Nologin, rest) {
				h.Nologin = append(h.Nologin, rest)
			}
		case "sudo-bin":
			h.SudoInstalled = rest == "present"
		case "sudostat":
			var st tasks.PathStat
			if st, err = parseStat(rest); err == nil {
				if _, dup := sudoStat[st.Path]; !dup {
					sudoOrder = append(sudoOrder, st.Path)
				}
				sudoStat[st.Path] = st
			}
		case "sudodir":
			h.SudoDirs = append(h.SudoDirs, rest)
		case "visudo-rc":
			h.VisudoRC, err = strconv.Atoi(rest)
		case "visudo":
			if rest != "" {
				h.VisudoOut = append(h.VisudoOut, rest)
			}
		case "uid":
			id, name, _ := strings.Cut(rest, " ")
			var uid int
			if uid, err = strconv.Atoi(id); err == nil {
				if _, dup := h.UIDNames[uid]; !dup {
					h.UIDNames[uid] = name
				}
			}
		case "session":
			h.Session = rest
		case "revoked":
			kind, p, _ := strings.Cut(rest, " ")
			if h.Revoked == nil {
				h.Revoked = map[string]*RevokedList{}
			}
			lastRevoked = &RevokedList{Path: p, Kind: kind}
			h.Revoked[p] = lastRevoked
		case "revkrl":
			if lastRevoked == nil || lastRevoked.Kind != "krl" {
				err = errors.New("KRL listing without its file")
				break
			}
			lastRevoked.Listing = append(lastRevoked.Listing, rest)
		case "txtstat":
			m, p, _ := strings.Cut(rest, " ")
			var mode uint64
			if mode, err = strconv.ParseUint(m, 16, 32); err == nil {
				if h.TxtMode == nil {
					h.TxtMode = map[string]uint32{}
				}
				h.TxtMode[p] = uint32(mode)
			}
		case "txtmissing":
			h.TxtMissing = append(h.TxtMissing, rest)
		case "sshd-version":
			h.SSHDVersion = rest
		case "pwgid":
			u, g, _ := strings.Cut(rest, " ")
			uid, err1 := strconv.Atoi(u)
			gid, err2 := strconv.Atoi(g)
			if err = errors.Join(err1, err2); err == nil {
				if h.PrimaryGID == nil {
					h.PrimaryGID = map[int]int{}
				}
				h.PrimaryGID[uid] = gid
			}
		case "group":
			g, members, _ := strings.Cut(rest, " ")
			var gid int
			if gid, err = strconv.Atoi(g); err == nil {
				if h.GroupMembers == nil {
					h.GroupMembers = map[int][]string{}
				}
				if _, dup := h.GroupMembers[gid]; !dup {
					h.GroupMembers[gid] = strings.FieldsFunc(members, func(r rune) bool { return r == ',' })
				}
			}
		case "grname":
			g, name, _ := strings.Cut(rest, " ")
			var gid int
			if gid, err = strconv.Atoi(g); err == nil {
				if h.GroupGID == nil {
					h.GroupGID = map[string]int{}
				}
				if _, dup := h.GroupGID[name]; !dup {
					h.GroupGID[name] = gid
				}
			}
		case "limits-count":
			h.LimitsCount = rest
		case "login":
			f := strings.Fields(rest)
			if len(f) != 3 {
				err = errors.New("bad login record")
				break
			}
			h.Logins = append(h.Logins, Login{User: f[0], Class: f[1], Alive: f[2] == "1"})
		case "nr-open":
			h.NrOpen, err = strconv.ParseInt(rest, 10, 64)
		case "candidate":
			if candidateRe.MatchString(rest) {
				h.Candidates = append(h.Candidates, rest)
			}
		case "uf":
			name, text, _ := strings.Cut(rest, " ")
			if !candidateRe.MatchString(name) {
				err = fmt.Errorf("bad user name %q", name)
				break
			}
			if _, seen := ufLines[name]; !seen {
				ufOrder = append(ufOrder, name)
			}
			ufLines[name] = append(ufLines[name], text)
		case "ux":
			err = h.parseExtra(rest)
		case "audit-end":
			sawEnd = true
		default:
			err = fmt.Errorf("unknown record %q", tag)
		}
		if err != nil {
			return nil, fmt.Errorf("host facts: line %d: %w", n+1, err)
		}
	}
	switch {
	case !sawHeader:
		return nil, errNoHeader
	case !sawEnd:
		return nil, errors.New("host facts: output ends early")
	}
	for _, name := range ufOrder {
		uf, err := tasks.ParseUserFacts(name, []byte(strings.Join(ufLines[name], "\n")))
		if err != nil {
			return nil, fmt.Errorf("host facts: %w", err)
		}
		h.Users[name] = uf
	}
	h.Config, h.ConfigOrder = dumps["cfg"].content(), dumps["cfg"].order
	for p, b := range dumps["pam"].content() {
		h.PAMFiles[strings.TrimPrefix(p, "/etc/pam.d/")] = b
	}
	txt := dumps["txt"].content()
	for _, p := range dumps["txt"].order {
		if p == "/etc/security/access.conf" || strings.HasPrefix(p, "/etc/security/access.d/") {
			h.AccessOrder = append(h.AccessOrder, p)
		}
	}
	h.AccessConf = txt
	h.Faillock = txt["/etc/security/faillock.conf"]
	for _, p := range sudoOrder {
		h.SudoFiles = append(h.SudoFiles, SudoFile{Path: p, Dir: currentDir(h.SudoDirs, p), Stat: sudoStat[p], Content: txt[p]})
	}
	return h, nil
}

// fileDump collects files sent as one record per line.
type fileDump struct {
	order []string
	lines map[string][]string
}

func newDump() *fileDump { return &fileDump{lines: map[string][]string{}} }

func (d *fileDump) file(p string) {
	if _, ok := d.lines[p]; !ok {
		d.lines[p] = nil
		d.order = append(d.order, p)
	}
}

// line takes "N PATH<TAB>TEXT".
func (d *fileDump) line(rest string) error {
	no, rest, _ := strings.Cut(rest, " ")
	p, text, ok := strings.Cut(rest, "\t")
	n, err := strconv.Atoi(no)
	if !ok || err != nil || n < 1 {
		return errors.New("bad file line record")
	}
	d.file(p)
	for len(d.lines[p]) < n-1 {
		d.lines[p] = append(d.lines[p], "")
	}
	d.lines[p] = append(d.lines[p], text)
	return nil
}

func (d *fileDump) content() map[string][]byte {
	m := make(map[string][]byte, len(d.lines))
	for p, l := range d.lines {
		if len(l) == 0 {
			m[p] = []byte{}
			continue
		}
		m[p] = []byte(strings.Join(l, "\n") + "\n")
	}
	return m
}

// currentDir returns the includedir p lies directly in, or "".
func currentDir(dirs []string, p string) string {
	for _, d := range dirs {
		if strings.HasPrefix(p, strings.TrimSuffix(d, "/")+"/") && !strings.Contains(p[len(strings.TrimSuffix(d, "/"))+1:], "/") {
			return d
		}
	}
	return ""
}

func (h *HostFacts) parseExtra(rest string) error {
	name, rest, _ := strings.Cut(rest, " ")
	key, val, _ := strings.Cut(rest, " ")
	x := h.Extras[name]
	if x == nil {
		x = &UserExtras{HomeKeys: -1, SudoRC: -1, SudoTrue: -1}
		h.Extras[name] = x
	}
	var err error
	switch key {
	case "nouser":
	case "user":
		x.Exists = true
	case "homekeys":
		x.HomeKeys, err = strconv.Atoi(val)
	case "sudo-rc":
		x.SudoRC, err = strconv.Atoi(val)
	case "sudo":
		x.SudoOut = append(x.SudoOut, val)
	case "sudo-true":
		x.SudoTrue, err = strconv.Atoi(val)
	case "faillock":
		x.Faillock = append(x.Faillock, val)
	case "selinux":
		if strings.TrimSpace(val) != "" {
			x.SELinux = append(x.SELinux, val)
		}
	default:
		err = fmt.Errorf("unknown user record %q", key)
	}
	return err
}

func parseListener(rest string) (*Listener, error) {
	f := strings.SplitN(rest, " ", 7)
	if len(f) != 7 {
		return nil, errors.New("bad listener record")
	}
	pid, err1 := strconv.Atoi(f[0])
	ticks, err2 := strconv.ParseFloat(f[1], 64)
	hz, err3 := strconv.ParseFloat(f[2], 64)
	up, err4 := strconv.ParseFloat(f[3], 64)
	now, err5 := strconv.ParseFloat(f[4], 64)
	pfm, err6 := strconv.ParseFloat(f[5], 64)
	if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil || hz <= 0 {
		return nil, errors.New("bad listener record")
	}
	l := &Listener{PID: pid, Comm: f[6], PidFileMTime: pfm}
	l.ProcessStart = now - (up - ticks/hz)
	l.Start = max(l.ProcessStart, pfm)
	return l, nil
}

// parseStat parses "UID GID HEXMODE PATH".
func parseStat(rest string) (tasks.PathStat, error) {
	f := strings.SplitN(rest, " ", 4)
	if len(f) != 4 {
		return tasks.PathStat{}, errors.New("bad stat record")
	}
	uid, err1 := strconv.Atoi(f[0])
	gid, err2 := strconv.Atoi(f[1])
	mode, err3 := strconv.ParseUint(f[2], 16, 32)
	if err1 != nil || err2 != nil || err3 != nil {
		return tasks.PathStat{}, errors.New("bad stat record")
	}
	return tasks.PathStat{Path: f[3], Exists: true, UID: uid, GID: gid, Mode: uint32(mode)}, nil
}
