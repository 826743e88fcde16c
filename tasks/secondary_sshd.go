package tasks

import (
	"bufio"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/go-multierror"
	"gopkg.in/yaml.v3"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/sshdconf"
	"github.com/breakglass/breakglass/internal/yamlx"
)

// SecondarySSHD keeps an emergency sshd running on another port that
// shares none of the main path's weak points, so that one fault cannot cut
// both ways in:
//
//   - its own minimal configuration file, with no Include and no Match, so
//     a broken sshd_config (or drop-in) cannot take it down;
//   - keys from a root-owned store outside the homes (KeyDir, one file per
//     user, directories root 0755, files root 0644), holding exactly the
//     keys the play's authorized_key tasks give each allowed user (options
//     and probe restrictions included): nothing a user or a chmod in /home
//     does reaches it, and StrictModes still holds;
//   - UsePAM no (unless use_pam: true), so a PAM stack that refuses
//     cannot refuse here; sshd then does the account checks itself, and
//     the task reports an allowed account that sshd would refuse (password
//     field starting with "!", expired) with its fix;
//   - its own copies of the main host keys (HostKeyDir): the same keys, so
//     the port presents the host's identity, but regenerating or deleting
//     /etc/ssh/ssh_host_* changes nothing here;
//   - root_login: true lets root in by key on this port only (root's keys
//     being the allowed users' keys in the same store);
//   - key-only, AllowUsers just the named users, DisableForwarding,
//     MaxAuthTries and LoginGraceTime set.
//
// Where systemd runs it is a unit (enabled, Restart=always); otherwise a
// plain daemon that each run starts when it is not running and reloads
// when its config changed. After it runs, the run reads the key the port
// presents and records [addr]:port in its known_hosts file when that key
// is the one verified on the main connection (PortPinner), so plain
// `ssh -p PORT` works with strict host key checking.
type SecondarySSHD struct {
	name       string
	port       int
	listen     string // "" for every address
	allowUsers []string
	rootLogin  bool
	usePAM     bool

	// Where the task was written, for LinkPlay's positioned errors.
	file      string
	portNode  *yaml.Node
	userNodes map[string]*yaml.Node

	// taskKeys are the keys: and key_file: of the task, by user: exactly
	// that user's keys on this port (the play's authorized_key tasks are
	// not consulted for that user).
	taskKeys map[string][]string
	// store is the key lines of each allowed user, from taskKeys or the
	// play's authorized_key tasks (LinkPlay); linked says LinkPlay ran.
	store  map[string][]string
	linked bool
	// audit: the run is an audit, which reports the second path's state
	// as findings with stable ids.
	audit bool
}

// Auditor is implemented by modules that report findings of their own
// when the run is an audit (read-only, the nightly compliance run).
type Auditor interface{ Audit() }

// Audit implements Auditor.
func (s *SecondarySSHD) Audit() { s.audit = true }

// Finding ids of the second way in.
const (
	// FindingSecondNotRunning: the emergency sshd is not running (or was
	// never set up).
	FindingSecondNotRunning = "second-path-not-running"
	// FindingSecondShared: its config shares a dependency with the main
	// path (keys under a home, UsePAM yes, the main host key files, an
	// Include).
	FindingSecondShared = "second-path-shared"
	// FindingSecondKeys: its key store differs from what the play gives.
	FindingSecondKeys = "second-path-keys-differ"
	// FindingSecondKnownHosts: [addr]:port is not in the known_hosts file,
	// so plain ssh with strict checking refuses it.
	FindingSecondKnownHosts = "second-path-known-hosts"
	// FindingSecondNoBoot: nothing starts the emergency sshd at boot (its
	// unit is not enabled, its init script or cron entry is missing, or the
	// host runs neither systemd, sysv-rc nor a cron daemon).
	FindingSecondNoBoot = "second-path-no-boot"
	// FindingSecondSudo: without root_login the second path gives root
	// only through sudo, which it then shares with the main path.
	FindingSecondSudo = "second-path-needs-sudo"
)

var _ Module = (*SecondarySSHD)(nil)
var _ Module = (*SecondarySSHD)(nil)
var _ PlayLinker = (*SecondarySSHD)(nil)
var _ engine.Planner = (*SecondarySSHD)(nil)

func init() { Register("secondary_sshd", NewSecondarySSHD) }

// defaultSecondaryName names the emergency sshd when name is not given.
const defaultSecondaryName = "breakglass"

// Debian's ssh.service declares RuntimeDirectory=sshd, so systemd removes
// /run/sshd whenever ssh.service stops or fails, even while another sshd
// needs it (systemd does not reference-count runtime directories). Without
// it the secondary sshd refuses every connection exactly when it is
// needed. This drop-in keeps the directory.
const (
	secondaryPrivsepDropIn = "/etc/systemd/system/ssh.service.d/50-breakglass-keep-privsep-dir.conf"
	secondaryPrivsepConf   = "# Managed by breakglass (secondary_sshd task): keep /run/sshd when ssh.service\n" +
		"# stops, because the emergency sshd needs it too.\n[Service]\nRuntimeDirectoryPreserve=yes\n"
)

type secondaryArgs struct {
	Port       int      `yaml:"port"`
	AllowUsers []string `yaml:"allow_users"`
	Listen     string   `yaml:"listen"`
	Name       string   `yaml:"name"`
	RootLogin  bool     `yaml:"root_login"`
	UsePAM     bool     `yaml:"use_pam"`
	// Keys and KeyFile give allowed users their keys on this port
	// directly (user → public key lines, user → .pub file); a user named
	// in neither gets the keys the play's authorized_key tasks give it.
	Keys    map[string][]string `yaml:"keys"`
	KeyFile map[string]string   `yaml:"key_file"`
}

var secondaryName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

// NewSecondarySSHD decodes the arguments of a secondary_sshd task.
func NewSecondarySSHD(file string, args *yaml.Node) (Module, error) {
	var a secondaryArgs
	if err := yamlx.Decode(file, args, &a); err != nil {
		return nil, err
	}
	args = yamlx.Resolve(args)
	var errs *multierror.Error
	bad := argError(file, "secondary_sshd", args, &errs)
	s := &SecondarySSHD{name: defaultSecondaryName, port: a.Port, rootLogin: a.RootLogin, usePAM: a.UsePAM,
		file: file, portNode: sshdArgValue(args, "port"), userNodes: map[string]*yaml.Node{}}
	if s.portNode == nil {
		s.portNode = args
	}
	switch {
	case sshdArgValue(args, "port") == nil:
		bad(nil, "port is required (e.g. 2222)")
	case a.Port < 1 || a.Port > 65535:
		bad(sshdArgValue(args, "port"), "port %d out of range 1-65535", a.Port)
	}
	if a.Name != "" {
		if !secondaryName.MatchString(a.Name) {
			bad(sshdArgValue(args, "name"), "name %q: want [a-z][a-z0-9-]*, at most 31 characters", a.Name)
		} else {
			s.name = a.Name
		}
	}
	if a.Listen != "" {
		addr, err := netip.ParseAddr(a.Listen)
		if err != nil || addr.Zone() != "" {
			bad(sshdArgValue(args, "listen"), "listen %q: want an IP address (leave it out to listen on every address)", a.Listen)
		} else {
			s.listen = addr.String()
		}
	}
	if len(a.AllowUsers) == 0 {
		bad(sshdArgValue(args, "allow_users"), "allow_users: name the break-glass users who may log in on this sshd")
	}
	seen := map[string]bool{}
	for i, u := range a.AllowUsers {
		n := sshdArgValue(args, "allow_users")
		if n != nil && n.Kind == yaml.SequenceNode && i < len(n.Content) {
			n = n.Content[i]
		}
		if err := shell.ValidUser(u); err != nil {
			bad(n, "allow_users: %v", err)
			continue
		}
		if u == "root" {
			bad(n, "allow_users: root is not a break-glass user; use root_login: true, which lets root in with the allowed users' keys")
			continue
		}
		if !seen[u] {
			seen[u] = true
			s.allowUsers = append(s.allowUsers, u)
			s.userNodes[u] = n
		}
	}
	s.taskKeys = map[string][]string{}
	taskKey := func(u string, n *yaml.Node, where, line string, seen map[string]bool) {
		pk, comment, err := parsePublicKeyLine(line)
		if err != nil {
			bad(n, "%s: %v", where, err)
			return
		}
		k := newAuthKey(pk, comment, nil)
		if seen[k.blob] {
			bad(n, "%s: the same key is given to %s twice", where, u)
			return
		}
		seen[k.blob] = true
		s.taskKeys[u] = append(s.taskKeys[u], k.line)
	}
	seenKeys := map[string]map[string]bool{}
	userKeyNode := func(arg, u string) (key, val *yaml.Node) {
		m := sshdArgValue(args, arg)
		for i := 0; m != nil && m.Kind == yaml.MappingNode && i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == u {
				return m.Content[i], yamlx.Resolve(m.Content[i+1])
			}
		}
		return m, m
	}
	checkUser := func(arg, u string) bool {
		kn, _ := userKeyNode(arg, u)
		if !seen[u] {
			bad(kn, "%s: %s is not in allow_users", arg, u)
			return false
		}
		if seenKeys[u] == nil {
			seenKeys[u] = map[string]bool{}
		}
		return true
	}
	for _, u := range slices.Sorted(maps.Keys(a.Keys)) {
		if !checkUser("keys", u) {
			continue
		}
		_, vn := userKeyNode("keys", u)
		if len(a.Keys[u]) == 0 {
			bad(vn, "keys: %s: give at least one key", u)
		}
		for i, line := range a.Keys[u] {
			n := vn
			if vn != nil && vn.Kind == yaml.SequenceNode && i < len(vn.Content) {
				n = vn.Content[i]
			}
			taskKey(u, n, fmt.Sprintf("keys: %s[%d]", u, i), line, seenKeys[u])
		}
	}
	for _, u := range slices.Sorted(maps.Keys(a.KeyFile)) {
		if !checkUser("key_file", u) {
			continue
		}
		_, vn := userKeyNode("key_file", u)
		readKeyFile(file, a.KeyFile[u], func(format string, v ...any) { bad(vn, format, v...) },
			func(where, line string) { taskKey(u, vn, where, line, seenKeys[u]) })
	}
	if err := errs.ErrorOrNil(); err != nil {
		return nil, err
	}
	return s, nil
}

// PlayLinker is implemented by modules that depend on the other tasks a
// host runs. Before any host is contacted, the CLI calls LinkPlay with
// every module built for the host (every play, in order) and the port of
// the host's main SSH connection; an error is an input error.
type PlayLinker interface {
	LinkPlay(mods []Module, mainPort int) error
}

// LinkPlay fills the key store: an allowed user named in the task's keys:
// or key_file: gets exactly those keys; any other gets exactly the keys the
// play's authorized_key tasks give it (a later task's
// options win for the same key, state: absent removes it). An allowed user
// that gets no key, or a port equal to the main port, is an error at its
// position in the playbook.
func (s *SecondarySSHD) LinkPlay(mods []Module, mainPort int) error {
	var errs *multierror.Error
	bad := argError(s.file, "secondary_sshd", s.portNode, &errs)
	if mainPort == 0 {
		mainPort = 22
	}
	if s.port == mainPort {
		bad(s.portNode, "port %d is the host's main SSH port: the emergency sshd needs a port of its own", s.port)
	}
	allowed := map[string]bool{}
	for _, u := range s.allowUsers {
		allowed[u] = true
	}
	type entry struct{ blob, line string }
	byUser := map[string][]entry{}
	for _, m := range mods {
		g, ok := m.(KeyGiver)
		if !ok {
			continue
		}
		user, keys, absent := g.GivenKeys()
		if !allowed[user] {
			continue
		}
		for _, k := range keys {
			blob, line := k[0], k[1]
			cur := byUser[user]
			i := slices.IndexFunc(cur, func(e entry) bool { return e.blob == blob })
			switch {
			case absent && i >= 0:
				cur = slices.Delete(cur, i, i+1)
			case absent:
			case i >= 0:
				cur[i].line = line
			default:
				cur = append(cur, entry{blob, line})
			}
			byUser[user] = cur
		}
	}
	s.store = map[string][]string{}
	for _, u := range s.allowUsers {
		if keys, ok := s.taskKeys[u]; ok {
			s.store[u] = keys
			continue
		}
		if len(byUser[u]) == 0 {
			bad(s.userNodes[u], "allow_users: %s gets no key from the play's authorized_key tasks (nor from keys: or key_file: on this task); the emergency sshd reads keys only from its own store (%s/%s), which holds what the play gives each user", u, s.KeyDir(), u)
			continue
		}
		for _, e := range byUser[u] {
			s.store[u] = append(s.store[u], e.line)
		}
	}
	s.linked = true
	return errs.ErrorOrNil()
}

// ListUsers implements UserLister: audit examines the allowed users.
func (s *SecondarySSHD) ListUsers() []string { return s.allowUsers }

// ConfigPath is the emergency sshd's own configuration file.
func (s *SecondarySSHD) ConfigPath() string { return "/etc/ssh/sshd_config_" + s.name }

// PidFile is where the emergency sshd writes its pid.
func (s *SecondarySSHD) PidFile() string { return "/run/sshd-" + s.name + ".pid" }

// Unit is the systemd unit that runs it where systemd is PID 1.
func (s *SecondarySSHD) Unit() string { return s.name + "-sshd.service" }

// UnitPath is the unit file.
func (s *SecondarySSHD) UnitPath() string { return "/etc/systemd/system/" + s.Unit() }

// InitName is the name of its init script and cron entry where systemd
// does not run.
func (s *SecondarySSHD) InitName() string { return s.name + "-sshd" }

// InitPath is the sysv init script that starts it at boot (sysv-rc).
func (s *SecondarySSHD) InitPath() string { return "/etc/init.d/" + s.InitName() }

// CronPath is the cron entry that starts it at boot (@reboot) where a cron
// daemon runs but neither systemd nor sysv-rc.
func (s *SecondarySSHD) CronPath() string { return "/etc/cron.d/" + s.InitName() }

// BaseDir holds the emergency sshd's key store and host keys; only root
// can change anything in it.
func (s *SecondarySSHD) BaseDir() string {
	if s.name == defaultSecondaryName {
		return "/etc/breakglass"
	}
	return "/etc/breakglass/sshd-" + s.name
}

// KeyDir is the key store: one authorized_keys file per user, named after
// the user.
func (s *SecondarySSHD) KeyDir() string { return s.BaseDir() + "/keys" }

// HostKeyDir holds the emergency sshd's copies of the host keys.
func (s *SecondarySSHD) HostKeyDir() string { return s.BaseDir() + "/hostkeys" }

// users are the accounts the emergency sshd lets in.
func (s *SecondarySSHD) users() []string {
	if s.rootLogin {
		return append(slices.Clone(s.allowUsers), "root")
	}
	return s.allowUsers
}

// storeContent is the key file of user in the store.
func (s *SecondarySSHD) storeContent(user string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Managed by breakglass (secondary_sshd %q, port %d): changes made here are overwritten.\n", s.name, s.port)
	var lines []string
	if user == "root" {
		fmt.Fprintf(&b, "# root_login: the keys of %s.\n", strings.Join(s.allowUsers, ", "))
		seen := map[string]bool{}
		for _, u := range s.allowUsers {
			for _, l := range s.store[u] {
				if !seen[l] {
					seen[l] = true
					lines = append(lines, l)
				}
			}
		}
	} else if _, ok := s.taskKeys[user]; ok {
		fmt.Fprintf(&b, "# The keys the secondary_sshd task gives %s (keys:, key_file:).\n", user)
		lines = s.store[user]
	} else {
		fmt.Fprintf(&b, "# The keys the play's authorized_key tasks give %s.\n", user)
		lines = s.store[user]
	}
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// secondaryMain is what the emergency sshd takes from the host's main
// sshd: which host keys to copy, and where it listens.
type secondaryMain struct {
	HostKeys []string // main host key files that exist, in sshd's order
	// HostCerts are the main HostCertificate files that exist.
	HostCerts []string
	Listen    []netip.AddrPort
	// Fallback is set when sshd -T failed (a broken main config): host
	// keys are the copies already made, or, when there are none, the
	// default host key files that exist.
	Fallback string
}

// render returns the emergency sshd's configuration; hostKeys are the
// copies it serves, hostCerts the certificate copies it presents.
func (s *SecondarySSHD) render(hostKeys []string, hostCerts ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Managed by breakglass (secondary_sshd %q): changes made here are overwritten.\n", s.name)
	b.WriteString("# An emergency sshd that shares nothing with /etc/ssh/sshd_config: no other\n")
	b.WriteString("# config file, its own copies of the host keys, keys from a root-owned store\n")
	b.WriteString("# outside the homes, no PAM.\n")
	fmt.Fprintf(&b, "Port %d\n", s.port)
	if s.listen != "" {
		fmt.Fprintf(&b, "ListenAddress %s\n", s.listen)
	}
	for _, k := range hostKeys {
		fmt.Fprintf(&b, "HostKey %s\n", k)
	}
	for _, c := range hostCerts {
		fmt.Fprintf(&b, "HostCertificate %s\n", c)
	}
	fmt.Fprintf(&b, "PidFile %s\n", s.PidFile())
	fmt.Fprintf(&b, "AllowUsers %s\n", strings.Join(s.users(), " "))
	b.WriteString("AuthenticationMethods publickey\n")
	b.WriteString("PubkeyAuthentication yes\n")
	b.WriteString("PasswordAuthentication no\n")
	b.WriteString("KbdInteractiveAuthentication no\n")
	b.WriteString("HostbasedAuthentication no\n")
	b.WriteString("GSSAPIAuthentication no\n")
	if s.rootLogin {
		b.WriteString("PermitRootLogin prohibit-password\n")
	} else {
		b.WriteString("PermitRootLogin no\n")
	}
	fmt.Fprintf(&b, "AuthorizedKeysFile %s/%%u\n", s.KeyDir())
	b.WriteString("AuthorizedKeysCommand none\n")
	b.WriteString("AuthorizedPrincipalsFile none\n")
	if s.usePAM {
		b.WriteString("UsePAM yes\n")
	} else {
		b.WriteString("UsePAM no\n")
	}
	b.WriteString("StrictModes yes\n")
	b.WriteString("DisableForwarding yes\n")
	b.WriteString("PermitUserEnvironment no\n")
	b.WriteString("MaxAuthTries 6\n")
	b.WriteString("LoginGraceTime 30\n")
	b.WriteString("MaxStartups 10:30:60\n")
	b.WriteString("UseDNS no\n")
	b.WriteString("PrintMotd no\n")
	b.WriteString("LogLevel VERBOSE\n")
	b.WriteString("SyslogFacility AUTH\n")
	b.WriteString("Subsystem sftp internal-sftp\n")
	return b.String()
}

// renderUnit returns the systemd unit running the emergency sshd.
func (s *SecondarySSHD) renderUnit(sshd string) string {
	f := s.ConfigPath()
	return fmt.Sprintf(`# Managed by breakglass (secondary_sshd %q): changes made here are overwritten.
[Unit]
Description=breakglass emergency OpenSSH server (%s, port %d)
Documentation=man:sshd(8)
After=network.target auditd.service

[Service]
ExecStartPre=/bin/mkdir -p -m 0755 /run/sshd
ExecStartPre=%s -t -f %s
ExecStart=%s -D -f %s
ExecReload=%s -t -f %s
ExecReload=/bin/kill -HUP $MAINPID
KillMode=process
Restart=always
RestartSec=5s

[Install]
WantedBy=multi-user.target
`, s.name, s.name, s.port, sshd, f, sshd, f, sshd, f)
}

//go:embed secondary_sshd_init.sh
var secondaryInitScript string

// renderInit returns the sysv init script that starts the emergency sshd
// at boot where the host's rc scripts run (sysvinit, OpenRC): the embedded
// script with this sshd's name, binary, config and pid file.
func (s *SecondarySSHD) renderInit(sshd string) string {
	start := strings.Index(secondaryInitScript, "# breakglass:vars\n")
	end := strings.Index(secondaryInitScript, "# breakglass:end\n")
	vars := fmt.Sprintf("S=%s\nF=%s\nP=%s\n", shell.Quote(sshd), shell.Quote(s.ConfigPath()), shell.Quote(s.PidFile()))
	out := secondaryInitScript[:start] + vars + secondaryInitScript[end+len("# breakglass:end\n"):]
	out = strings.Replace(out, "# Provides:          breakglass-sshd\n", "# Provides:          "+s.InitName()+"\n", 1)
	out = strings.Replace(out, "# Short-Description: breakglass emergency OpenSSH server\n",
		fmt.Sprintf("# Short-Description: breakglass emergency OpenSSH server (%s, port %d)\n", s.name, s.port), 1)
	return strings.Replace(out, "# Managed by breakglass (secondary_sshd):", fmt.Sprintf("# Managed by breakglass (secondary_sshd %q):", s.name), 1)
}

// renderCron returns the cron entry that starts the emergency sshd at boot
// (@reboot) where a cron daemon runs but neither systemd nor sysv-rc.
func (s *SecondarySSHD) renderCron(sshd string) string {
	return fmt.Sprintf(`# Managed by breakglass (secondary_sshd %q): changes made here are overwritten.
# Starts the emergency sshd (port %d) when cron starts at boot: this host
# runs neither systemd nor sysv-rc.
SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
@reboot root mkdir -p -m 0755 /run/sshd && %s -f %s
`, s.name, s.port, shell.Quote(sshd), shell.Quote(s.ConfigPath()))
}

// Boot mechanisms where systemd does not run, as the facts detect them.
const (
	bootSysv = "sysv-rc" // /etc/init.d and update-rc.d: rc links run at boot
	bootCron = "cron"    // a cron daemon and /etc/cron.d: @reboot
)

// bootMechanism is how this host starts the emergency sshd at boot when
// systemd is not PID 1: sysv-rc where the host has it (its rc scripts run
// /etc/init.d scripts linked in /etc/rcN.d), else cron's @reboot where a
// cron daemon is installed, else "" (nothing: a finding).
func (f *secondaryFacts) bootMechanism() string {
	switch {
	case f.Systemd:
		return ""
	case f.SysvRC:
		return bootSysv
	case f.Cron != "":
		return bootCron
	}
	return ""
}

// bootFileMode is the mode of a boot file: an init script runs, a cron
// entry is read.
func bootFileMode(p string) uint32 {
	if strings.HasPrefix(p, "/etc/init.d/") {
		return 0o755
	}
	return 0o644
}

// rcEnabled says the init script is linked to start in runlevels 2-5.
func (s *SecondarySSHD) rcEnabled(f *secondaryFacts) bool {
	for _, lvl := range []string{"2", "3", "4", "5"} {
		ok := false
		for l, target := range f.RCLinks {
			if path.Dir(l) == "/etc/rc"+lvl+".d" && strings.HasPrefix(path.Base(l), "S") &&
				(target == "../init.d/"+s.InitName() || target == s.InitPath()) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// --- facts ---

// secondaryDir is a directory of the store as the facts saw it.
type secondaryDir struct {
	Exists, Dir, Link bool
	UID, GID          int
	Mode              uint32
}

type secondaryFacts struct {
	Systemd        bool
	SSHD           string // absolute path of the sshd binary
	PrivsepMissing bool
	T              map[string][]string // main effective config: keyword → values, in order
	TErr           string
	Exists         map[string]bool // host key files that exist
	// HostKeySame says, for each main host key file (or, when sshd -T
	// failed, each default one) that exists, whether the emergency copy
	// has the same content.
	HostKeySame   map[string]bool
	Copies        map[string]sshdFile // existing files in HostKeyDir, by path (no content)
	Dirs          map[string]secondaryDir
	Store         map[string]sshdFile // files in KeyDir, by name
	Config        *sshdFile
	Unit          *sshdFile
	PrivsepDropIn *sshdFile
	DebianSSH     bool   // ssh.service exists (systemd): it removes /run/sshd when it stops
	Enabled       string // systemctl is-enabled
	// Where systemd is not PID 1: what starts things at boot.
	PID1       string            // /proc/1/comm
	SysvRC     bool              // /etc/init.d and update-rc.d
	CronRuns   bool              // a cron daemon runs now
	Cron       string            // the cron daemon's path, when one is installed with /etc/cron.d
	InitScript *sshdFile         // InitPath
	CronFile   *sshdFile         // CronPath
	RCLinks    map[string]string // /etc/rcN.d/[SK]NNname → its target
	Active     string            // systemctl is-active
	PID        int               // the running emergency sshd (0: none)
}

func (s *SecondarySSHD) factKey() string { return "secondary_sshd:" + s.name }

// secondaryFuncs finds the running emergency sshd: the pid in its PidFile
// when that process runs `sshd ... -f CONFIG`, else any such listener.
//
//go:embed secondary.sh
var secondaryFuncs string

// secondaryFactsScript is secondary_facts.sh: the facts query after its
// settings, bg_file and secondaryFuncs.
//
//go:embed secondary_facts.sh
var secondaryFactsScript string

// secondaryApplyScript is secondary_apply.sh: the apply script's functions
// (bg_fail, bg_install_config, bg_unit_restart, bg_unit_reload,
// bg_rc_enable, bg_rc_start, …), defined after its settings.
//
//go:embed secondary_apply.sh
var secondaryApplyScript string

func (s *SecondarySSHD) vars() string {
	return fmt.Sprintf("F=%s P=%s U=%s unit=%s B=%s K=%s H=%s I=%s C=%s\n", shell.Quote(s.ConfigPath()), shell.Quote(s.PidFile()),
		shell.Quote(s.UnitPath()), shell.Quote(s.Unit()), shell.Quote(s.BaseDir()), shell.Quote(s.KeyDir()), shell.Quote(s.HostKeyDir()),
		shell.Quote(s.InitPath()), shell.Quote(s.CronPath()))
}

func (s *SecondarySSHD) query() Query {
	var b strings.Builder
	fmt.Fprintf(&b, "# breakglass secondary_sshd %s: facts\n", s.name)
	b.WriteString(`PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; export PATH
LC_ALL=C; export LC_ALL
`)
	b.WriteString(s.vars())
	b.WriteString(sshdFileFunc)
	b.WriteString(secondaryFuncs)
	fmt.Fprintf(&b, "dropin=%s\n", shell.Quote(secondaryPrivsepDropIn))
	b.WriteString(secondaryFactsScript)
	return Query{Key: s.factKey(), Script: string(engine.Script(b.String())), Parse: parseSecondaryFacts}
}

// Queries implements Module: the emergency sshd's state, and the
// accounts it lets in (whose lock and expiry sshd judges itself without
// PAM).
func (s *SecondarySSHD) Queries() []Query { return s.PlanQueries(Conn{}) }

func parseSecondaryFacts(out []byte) (any, error) {
	f := &secondaryFacts{T: map[string][]string{}, Exists: map[string]bool{}, HostKeySame: map[string]bool{},
		Copies: map[string]sshdFile{}, Dirs: map[string]secondaryDir{}, Store: map[string]sshdFile{}, RCLinks: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	header := false
	store := false
	var terr []string
	for sc.Scan() {
		k, rest, _ := strings.Cut(sc.Text(), " ")
		switch k {
		case "breakglass-secondary-facts":
			header = true
		case "systemd":
			f.Systemd = true
		case "sshd":
			f.SSHD = rest
		case "privsep-missing":
			f.PrivsepMissing = true
		case "T":
			kw, val, _ := strings.Cut(rest, " ")
			f.T[kw] = append(f.T[kw], val)
		case "sshd-T-failed":
			f.TErr = "sshd -T failed"
		case "|":
			terr = append(terr, rest)
		case "exists":
			f.Exists[rest] = true
		case "hostkey":
			st, p, _ := strings.Cut(rest, " ")
			f.HostKeySame[p] = st == "same"
		case "dir":
			var d secondaryDir
			fields := strings.SplitN(rest, " ", 4)
			switch {
			case len(fields) == 2 && fields[0] == "link":
				d = secondaryDir{Exists: true, Link: true}
				f.Dirs[fields[1]] = d
			case len(fields) == 2 && fields[0] == "other":
				f.Dirs[fields[1]] = secondaryDir{Exists: true}
			case len(fields) == 4:
				d = secondaryDir{Exists: true, Dir: true}
				var err1, err2 error
				d.UID, err1 = strconv.Atoi(fields[0])
				d.GID, err2 = strconv.Atoi(fields[1])
				m, err3 := strconv.ParseUint(fields[2], 8, 32)
				if err1 != nil || err2 != nil || err3 != nil {
					return nil, fmt.Errorf("bad dir line %q", rest)
				}
				d.Mode = uint32(m)
				f.Dirs[fields[3]] = d
			default:
				return nil, fmt.Errorf("bad dir line %q", rest)
			}
		case "copy", "copy-other":
			kind := "file"
			if k == "copy-other" {
				kind = "other"
			}
			c, err := parseSSHDFileHeader(kind, rest)
			if err != nil {
				return nil, err
			}
			f.Copies[c.Path] = c
		case "store":
			store = true
		case "debian-ssh":
			f.DebianSSH = true
		case "enabled":
			f.Enabled = rest
		case "active":
			f.Active = rest
		case "running":
			f.PID, _ = strconv.Atoi(rest)
		case "pid1":
			f.PID1 = rest
		case "cron-running":
			f.CronRuns = true
		case "sysv-rc":
			f.SysvRC = true
		case "cron":
			f.Cron = rest
		case "rc-link":
			l, target, _ := strings.Cut(rest, " ")
			f.RCLinks[l] = target
		case "file", "other":
			file, err := parseSSHDFile(sc, k, rest)
			if err != nil {
				return nil, err
			}
			switch {
			case store:
				f.Store[path.Base(file.Path)] = file
			case strings.HasPrefix(file.Path, "/etc/ssh/"):
				f.Config = &file
			case file.Path == secondaryPrivsepDropIn:
				f.PrivsepDropIn = &file
			case strings.HasPrefix(file.Path, "/etc/init.d/"):
				f.InitScript = &file
			case strings.HasPrefix(file.Path, "/etc/cron.d/"):
				f.CronFile = &file
			default:
				f.Unit = &file
			}
			store = false
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
	if !strings.HasPrefix(f.SSHD, "/") || strings.ContainsAny(f.SSHD, " \t\n'\"\\$`") {
		f.SSHD = "/usr/sbin/sshd"
	}
	return f, nil
}

// mainConfig picks the host keys to copy and the main sshd's listeners.
// When sshd -T fails (the main config is broken: the very case this sshd
// is for), it uses the default host key files that exist.
func (s *SecondarySSHD) mainConfig(f *secondaryFacts) (secondaryMain, error) {
	var m secondaryMain
	if f.TErr == "" {
		for _, k := range f.T["hostkey"] {
			if f.Exists[k] && !slices.Contains(m.HostKeys, k) {
				m.HostKeys = append(m.HostKeys, k)
			}
		}
		for _, c := range f.T["hostcertificate"] {
			if f.Exists[c] && !slices.Contains(m.HostCerts, c) {
				m.HostCerts = append(m.HostCerts, c)
			}
		}
		for _, la := range f.T["listenaddress"] {
			if ap, err := netip.ParseAddrPort(la); err == nil {
				m.Listen = append(m.Listen, ap)
			}
		}
	} else {
		m.Fallback = f.TErr
		for _, k := range []string{"/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key"} {
			if f.Exists[k] {
				m.HostKeys = append(m.HostKeys, k)
			}
		}
	}
	names := map[string]string{}
	for _, k := range m.HostKeys {
		if err := engine.ValidTxnPath(k); err != nil {
			return m, fmt.Errorf("host key %s: %w", k, err)
		}
		b := path.Base(k)
		if other, dup := names[b]; dup {
			return m, fmt.Errorf("host keys %s and %s have the same file name: the emergency copies would collide", other, k)
		}
		names[b] = k
	}
	for _, c := range m.HostCerts {
		if err := engine.ValidTxnPath(c); err != nil {
			return m, fmt.Errorf("host certificate %s: %w", c, err)
		}
		b := path.Base(certCopyName(c))
		if other, dup := names[b]; dup {
			return m, fmt.Errorf("%s and %s have the same file name: the emergency copies would collide", other, c)
		}
		names[b] = c
	}
	return m, nil
}

// certCopyName is the name of the emergency copy of host certificate c:
// its own name, ending in -cert.pub (which tells copies of certificates
// from copies of keys).
func certCopyName(c string) string {
	b := path.Base(c)
	if !strings.HasSuffix(b, "-cert.pub") {
		b += "-cert.pub"
	}
	return b
}

// --- plan ---

// secondaryDirMode is the mode of each directory the emergency sshd owns.
func (s *SecondarySSHD) dirModes() [][2]string {
	return [][2]string{{s.BaseDir(), "755"}, {s.KeyDir(), "755"}, {s.HostKeyDir(), "700"}}
}

type storeWrite struct{ name, content string }

type secondaryPlan struct {
	mkPrivsep    bool
	dirs         [][2]string // path, octal mode: create when missing, then chown root and chmod
	copyKeys     []string    // main host key files to copy into HostKeyDir
	hostKeys     []string    // the copies the config serves
	copyCerts    []string    // main HostCertificate files to copy into HostKeyDir
	hostCerts    []string    // the certificate copies the config presents
	storeWrites  []storeWrite
	storeRemoves []string
	config       string // the wanted config
	writeConfig  bool
	unit         string
	writeUnit    bool
	writeDropIn  bool
	enable       bool
	start        bool // not running: start (systemd: start the unit)
	reload       bool // running and the config changed
	restart      bool // systemd: running and the unit changed
	// Where systemd is not PID 1: how it starts at boot.
	boot          string // bootSysv, bootCron, or "" (nothing on this host starts it: a finding)
	initFile      string // the wanted init script (sysv-rc)
	writeInit     bool
	rcEnable      bool // update-rc.d: link the init script into the runlevels
	cronFile      string
	writeCron     bool
	changes       []Change
	fallbackNotes string
}

var storeName = regexp.MustCompile(`^\.?[A-Za-z0-9_][A-Za-z0-9._@+-]*$`)

// planChanges decides from the emergency sshd's facts what must change.
func (s *SecondarySSHD) planChanges(f *secondaryFacts, diff bool) (*secondaryPlan, error) {
	if !s.linked {
		return nil, errors.New("internal error: the key store was not linked to the play's authorized_key tasks")
	}
	p := &secondaryPlan{}
	add := func(what, path, before, after string) {
		c := Change{What: what, Path: path}
		if diff {
			c.Before, c.After = before, after
		}
		p.changes = append(p.changes, c)
	}
	if f.PrivsepMissing {
		p.mkPrivsep = true
		add("create /run/sshd (sshd's privilege separation directory: without it no sshd accepts a connection)", "/run/sshd", "", "")
	}
	m, err := s.mainConfig(f)
	if err != nil {
		return nil, err
	}
	for _, la := range m.Listen {
		if int(la.Port()) == s.port && (s.listen == "" || la.Addr().IsUnspecified() || la.Addr().String() == s.listen) {
			return nil, fmt.Errorf("port %d: the main sshd listens on %s already", s.port, la)
		}
	}

	// The directories: root's alone.
	for _, dm := range s.dirModes() {
		d := f.Dirs[dm[0]]
		want, _ := strconv.ParseUint(dm[1], 8, 32)
		switch {
		case d.Link || d.Exists && !d.Dir:
			return nil, fmt.Errorf("%s is not a directory (a symbolic link or another file): remove it by hand", dm[0])
		case !d.Exists:
			p.dirs = append(p.dirs, dm)
			add(fmt.Sprintf("create %s (root 0%s)", dm[0], dm[1]), dm[0], "", "")
		case d.UID != 0 || d.GID != 0 || d.Mode != uint32(want):
			p.dirs = append(p.dirs, dm)
			add(fmt.Sprintf("chown root:root, chmod 0%s %s (was %d:%d %04o)", dm[1], dm[0], d.UID, d.GID, d.Mode), dm[0], "", "")
		}
	}

	// Host keys: its own copies of the main ones.
	copies := map[string]sshdFile{}
	certCopies := map[string]sshdFile{}
	for p, c := range f.Copies {
		if c.Link || !c.Regular {
			return nil, fmt.Errorf("%s is not a regular file: remove it by hand", p)
		}
		switch {
		case strings.HasSuffix(p, "-cert.pub"):
			certCopies[p] = c
		case !strings.HasSuffix(p, ".pub"):
			copies[p] = c
		}
	}
	serve := map[string]bool{}
	copyKey := func(k, why string) {
		dst := s.HostKeyDir() + "/" + path.Base(k)
		p.copyKeys = append(p.copyKeys, k)
		serve[dst] = true
		add(fmt.Sprintf("copy the host key %s to %s (%s)", k, dst, why), dst, "", "")
	}
	if m.Fallback != "" && len(copies) > 0 {
		p.fallbackNotes = "the main sshd configuration does not load (" + m.Fallback + "): the emergency sshd keeps its own host key copies"
	} else {
		if m.Fallback != "" {
			p.fallbackNotes = "the main sshd configuration does not load (" + m.Fallback + "): copied sshd's default host keys that exist"
		}
		for _, k := range m.HostKeys {
			dst := s.HostKeyDir() + "/" + path.Base(k)
			c, have := copies[dst]
			switch {
			case !have:
				copyKey(k, "the emergency sshd's own copy: the same identity, whatever happens to "+k)
			case !f.HostKeySame[k]:
				copyKey(k, "the main host key changed; the host's key was verified on this run's connection")
			case c.UID != 0 || c.GID != 0 || c.Mode != 0o600:
				copyKey(k, fmt.Sprintf("the copy was %d:%d %04o, want root 0600", c.UID, c.GID, c.Mode))
			default:
				serve[dst] = true
			}
		}
	}
	for c := range copies {
		serve[c] = true // a copy whose main key is gone stays: that is what it is for
	}
	// Host certificates: its own copies of those the main sshd presents
	// (all it has when the main config does not load).
	if m.Fallback != "" {
		for c := range certCopies {
			p.hostCerts = append(p.hostCerts, c)
		}
	}
	for _, c := range m.HostCerts {
		dst := s.HostKeyDir() + "/" + certCopyName(c)
		cur, have := certCopies[dst]
		why := ""
		switch {
		case !have:
			why = "the emergency sshd's own copy: it presents the same certificate, whatever happens to " + c
		case !f.HostKeySame[c]:
			why = "the main host certificate changed"
		case cur.UID != 0 || cur.GID != 0 || cur.Mode != 0o644:
			why = fmt.Sprintf("the copy was %d:%d %04o, want root 0644", cur.UID, cur.GID, cur.Mode)
		}
		if why != "" {
			p.copyCerts = append(p.copyCerts, c)
			add(fmt.Sprintf("copy the host certificate %s to %s (%s)", c, dst, why), dst, "", "")
		}
		p.hostCerts = append(p.hostCerts, dst)
	}
	for _, c := range f.T["hostcertificate"] {
		// Listed but gone: the copy stays, as a host key's does.
		dst := s.HostKeyDir() + "/" + certCopyName(c)
		if _, have := certCopies[dst]; have && !f.Exists[c] && !slices.Contains(p.hostCerts, dst) {
			p.hostCerts = append(p.hostCerts, dst)
		}
	}
	slices.Sort(p.hostCerts)
	for k := range serve {
		p.hostKeys = append(p.hostKeys, k)
	}
	slices.Sort(p.hostKeys)
	if len(p.hostKeys) == 0 {
		return nil, errors.New("no host key to copy: none of the main sshd's HostKey files exists")
	}

	// The key store: exactly the play's keys for each user it lets in.
	want := map[string]bool{}
	for _, u := range s.users() {
		want[u] = true
		content := s.storeContent(u)
		kp := s.KeyDir() + "/" + u
		cur, have := f.Store[u]
		n := strings.Count(content, "\n") - 2
		switch {
		case !have:
			p.storeWrites = append(p.storeWrites, storeWrite{u, content})
			add(fmt.Sprintf("create %s (%d keys for %s on port %d)", kp, n, u, s.port), kp, "", content)
		case cur.Link || !cur.Regular:
			p.storeWrites = append(p.storeWrites, storeWrite{u, content})
			add(fmt.Sprintf("replace %s (not a regular file)", kp), kp, "", content)
		case cur.Content != content:
			p.storeWrites = append(p.storeWrites, storeWrite{u, content})
			add(fmt.Sprintf("update %s (%d keys for %s on port %d, as the play gives)", kp, n, u, s.port), kp, cur.Content, content)
		case cur.UID != 0 || cur.GID != 0 || cur.Mode != 0o644:
			p.storeWrites = append(p.storeWrites, storeWrite{u, content})
			add(fmt.Sprintf("chown root:root, chmod 0644 %s (was %d:%d %04o)", kp, cur.UID, cur.GID, cur.Mode), kp, "", "")
		}
	}
	var extra []string
	for name := range f.Store {
		if !want[name] {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	for _, name := range extra {
		if !storeName.MatchString(name) {
			return nil, fmt.Errorf("unexpected file %q in %s: remove it by hand", name, s.KeyDir())
		}
		p.storeRemoves = append(p.storeRemoves, name)
		before := ""
		if f.Store[name].Regular {
			before = f.Store[name].Content
		}
		add(fmt.Sprintf("remove %s/%s (no key of this emergency sshd's users)", s.KeyDir(), name), s.KeyDir()+"/"+name, before, "")
	}

	p.config = s.render(p.hostKeys, p.hostCerts...)
	cfg := s.ConfigPath()
	summary := fmt.Sprintf("port %d, users %s", s.port, strings.Join(s.users(), " "))
	switch {
	case f.Config == nil:
		p.writeConfig = true
		add(fmt.Sprintf("create %s (%s)", cfg, summary), cfg, "", p.config)
	case f.Config.Link || !f.Config.Regular:
		return nil, fmt.Errorf("%s is not a regular file: remove it by hand", cfg)
	case f.Config.Content != p.config:
		p.writeConfig = true
		add(fmt.Sprintf("update %s (%s)", cfg, summary), cfg, f.Config.Content, p.config)
	case f.Config.UID != 0 || f.Config.GID != 0 || f.Config.Mode != 0o644:
		p.writeConfig = true
		add(fmt.Sprintf("chown root:root, chmod 0644 %s (was %d:%d %04o)", cfg, f.Config.UID, f.Config.GID, f.Config.Mode), cfg, "", "")
	}
	// A new host key copy is read only when sshd starts or reloads.
	reloadKeys := len(p.copyKeys)+len(p.copyCerts) > 0

	if f.Systemd {
		p.unit = s.renderUnit(f.SSHD)
		switch {
		case f.Unit == nil:
			p.writeUnit = true
			add("create "+s.UnitPath(), s.UnitPath(), "", p.unit)
		case f.Unit.Content != p.unit || f.Unit.Link || !f.Unit.Regular:
			p.writeUnit = true
			before := ""
			if f.Unit.Regular {
				before = f.Unit.Content
			}
			add("update "+s.UnitPath(), s.UnitPath(), before, p.unit)
		}
		if f.DebianSSH && (f.PrivsepDropIn == nil || f.PrivsepDropIn.Content != secondaryPrivsepConf) {
			p.writeDropIn = true
			add("keep /run/sshd when ssh.service stops ("+secondaryPrivsepDropIn+")", secondaryPrivsepDropIn, "", secondaryPrivsepConf)
		}
		if f.Enabled != "enabled" {
			p.enable = true
			add("enable "+s.Unit(), "", "", "")
		}
		switch {
		case f.Active != "active" || f.PID == 0:
			p.start = true
			add(fmt.Sprintf("start %s (was %s)", s.Unit(), orUnknown(f.Active)), "", "", "")
		case p.writeUnit:
			p.restart = true
			add("restart "+s.Unit()+" (its unit changed; open sessions stay)", "", "", "")
		case p.writeConfig || reloadKeys:
			p.reload = true
			add("reload "+s.Unit()+" (its config or host keys changed)", "", "", "")
		}
		return p, nil
	}
	// Started again at boot by what the host runs at boot.
	p.boot = f.bootMechanism()
	fileChange := func(cur *sshdFile, file, want string) (bool, error) {
		switch {
		case cur == nil:
			add("create "+file+" (starts the emergency sshd at boot)", file, "", want)
		case cur.Link || !cur.Regular:
			return false, fmt.Errorf("%s is not a regular file: remove it by hand", file)
		case cur.Content != want:
			add("update "+file+" (starts the emergency sshd at boot)", file, cur.Content, want)
		case cur.UID != 0 || cur.GID != 0 || cur.Mode != bootFileMode(file):
			add(fmt.Sprintf("chown root:root, chmod %04o %s (was %d:%d %04o)", bootFileMode(file), file, cur.UID, cur.GID, cur.Mode), file, "", "")
		default:
			return false, nil
		}
		return true, nil
	}
	switch p.boot {
	case bootSysv:
		p.initFile = s.renderInit(f.SSHD)
		if p.writeInit, err = fileChange(f.InitScript, s.InitPath(), p.initFile); err != nil {
			return nil, err
		}
		if !s.rcEnabled(f) {
			p.rcEnable = true
			add(fmt.Sprintf("update-rc.d %s defaults: start it at boot in runlevels 2-5 (no systemd here; PID 1 is %s)", s.InitName(), orUnknown(f.PID1)), "", "", "")
		}
	case bootCron:
		if strings.Contains(f.SSHD, "%") { // cron turns % into a newline
			return nil, fmt.Errorf("sshd binary %s: a cron entry cannot run a path with %%", f.SSHD)
		}
		p.cronFile = s.renderCron(f.SSHD)
		if p.writeCron, err = fileChange(f.CronFile, s.CronPath(), p.cronFile); err != nil {
			return nil, err
		}
	}
	switch {
	case f.PID == 0:
		p.start = true
		add(fmt.Sprintf("start %s -f %s (not running)", f.SSHD, cfg), s.PidFile(), "", "")
	case p.writeConfig || reloadKeys:
		p.reload = true
		add(fmt.Sprintf("reload the emergency sshd (pid %d): its config or host keys changed", f.PID), s.PidFile(), "", "")
	}
	return p, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// accountFindings reports each account the emergency sshd lets in that
// sshd itself would refuse: without PAM a password field starting with "!"
// is a lock, and an account past its expiry day is refused either way.
func (s *SecondarySSHD) accountFindings(ufs []*UserFacts, check bool) []Finding {
	var out []Finding
	pam := "UsePAM no"
	if s.usePAM {
		pam = "UsePAM yes"
	}
	for _, uf := range ufs {
		if !uf.Exists {
			if !check {
				out = append(out, Finding{ID: "user-missing", Severity: "lockout", User: uf.Name, Path: "/etc/passwd",
					Detail: fmt.Sprintf("secondary_sshd %s lets %s in on port %d, but the account does not exist", s.name, uf.Name, s.port),
					Fix:    "add a user task for " + uf.Name + " before the secondary_sshd task"})
			}
			continue
		}
		sp := uf.Shadow
		if sp == nil {
			continue
		}
		if !s.usePAM && sp.Password == PasswordLocked {
			out = append(out, Finding{ID: "account-locked", Severity: "lockout", User: uf.Name, Path: "/etc/shadow",
				Detail: fmt.Sprintf("the password field of %s starts with '!' and the emergency sshd on port %d runs with %s: sshd refuses the account before trying any key", uf.Name, s.port, pam),
				Fix:    shell.Join("usermod", "-p", "*", uf.Name) + "  # key-only: '*' is no lock"})
		}
		if sp.Expire != -1 && (uf.Today > sp.Expire || s.usePAM && uf.Today >= sp.Expire) {
			out = append(out, Finding{ID: "account-expired", Severity: "lockout", User: uf.Name, Path: "/etc/shadow",
				Detail: fmt.Sprintf("account %s expired (shadow expire day %d, today is day %d): no login works, on any port", uf.Name, sp.Expire, uf.Today),
				Fix:    shell.Join("chage", "-E", "-1", uf.Name)})
		}
	}
	return out
}

// --- known_hosts ---

// --- the plan the runner executes ---

// PlanQueries implements engine.Planner: the emergency sshd's state, then the facts
// of each account it lets in (accountFindings), in users' order.
func (s *SecondarySSHD) PlanQueries(c Conn) []Query {
	qs := []Query{s.query()}
	for _, u := range s.users() {
		qs = append(qs, UserFactsQuery(u, c))
	}
	return qs
}

// sshdFacts: the accounts are judged by their shadow entries, not by the
// main sshd's settings.
func (*SecondarySSHD) ConnFacts() bool { return false }

// task names the task in errors.
func (s *SecondarySSHD) task() string { return "secondary_sshd " + s.name }

// privsepChange is the change of creating /run/sshd.
var privsepChange = Change{What: "create /run/sshd (sshd's privilege separation directory: without it no sshd accepts a connection)", Path: "/run/sshd"}

// Plan implements engine.Planner. Everything the task does on the host is one
// script (scriptOp, judged by secondaryReport); then, where the run can
// dial, the port's host key is pinned in known_hosts (pinPortOp: in check
// mode it only looks). Without /run/sshd, sshd -T cannot run, so the
// main sshd's host keys are not known yet: outside check mode the plan
// is then only to create it and look Again.
func (s *SecondarySSHD) Plan(env *Env, facts []any) (*Plan, error) {
	f, ok := facts[0].(*secondaryFacts)
	if !ok {
		return nil, fmt.Errorf("%s: fact %s has type %T", s.task(), s.factKey(), facts[0])
	}
	ufs := make([]*UserFacts, 0, len(facts)-1)
	for i, v := range facts[1:] {
		uf, ok := v.(*UserFacts)
		if !ok {
			return nil, fmt.Errorf("%s: fact %s has type %T, not user facts", s.task(), UserFactsKey(s.users()[i]), v)
		}
		ufs = append(ufs, uf)
	}
	if f.PrivsepMissing && f.TErr != "" && !env.Check {
		return &Plan{Stale: []string{s.factKey()}, Again: true,
			Ops: []Op{&scriptOp{Task: s.task(), What: "create /run/sshd, then look again", Script: engine.Script("mkdir -p -m 0755 /run/sshd"), Unfinished: "create /run/sshd", Changes: []Change{privsepChange}}}}, nil
	}
	p, err := s.planChanges(f, env.Diff)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.task(), err)
	}
	plan := &Plan{Findings: s.accountFindings(ufs, env.Check)}
	apply := "breakglass apply -i INVENTORY PLAYBOOK --limit " + env.Host
	if len(p.changes) > 0 {
		op := &scriptOp{Task: s.task(), What: "apply", Script: s.script(p, f), Report: secondaryReport, Stale: []string{s.factKey()},
			Unfinished: fmt.Sprintf("apply did not finish, check %s and %s", s.ConfigPath(), s.PidFile()), Changes: p.changes}
		if p.fallbackNotes != "" {
			op.Notes = []Change{{What: "note: " + p.fallbackNotes}}
		}
		plan.Ops = append(plan.Ops, op)
	}
	if env.Check {
		if s.audit {
			plan.Findings = append(plan.Findings, s.auditFindings(f, p, env.Host)...)
		}
		// A port that is down presents no key to look up.
		if !p.start {
			op := &pinPortOp{Task: s.task(), Addr: s.listen, Port: s.port}
			if s.audit {
				op.Found, op.Finds = knownHostsFinding(s.port, apply), FindingSecondKnownHosts+" when it is not listed"
			}
			plan.Ops = append(plan.Ops, op)
		}
		return plan, nil
	}
	plan.Ops = append(plan.Ops, &pinPortOp{Task: s.task(), Addr: s.listen, Port: s.port, Record: true,
		Found: s.commandFinding(), Finds: "emergency-access (the ssh command that uses the port)"})
	if !f.Systemd && p.boot == "" {
		fd, _ := s.bootFinding(f, p, apply)
		plan.Findings = append(plan.Findings, fd)
	}
	return plan, nil
}

// secondaryReport reads the apply script's report (scriptOp.Report):
// "status ok"; "status invalid" and sshd -t's words (nothing was
// installed); or another status and a message, the host changed when the
// config was installed but the daemon does not run.
func secondaryReport(out []byte) (bool, error) {
	st := engine.ParseStatus(out)
	switch st.Word() {
	case "ok":
		return false, nil
	case "invalid":
		return false, fmt.Errorf("sshd -t rejected the new config; nothing was installed: %s", st.Describe())
	}
	return st.Word() == "installed-not-running", errors.New(st.Describe())
}

// auditFindings reports the second path's state with stable ids and exact
// fixes: not running, sharing a dependency with the main path, a key store
// other than the play's, and, without root_login, that root on this path
// needs sudo. Whether [addr]:port is in known_hosts is the pin's to tell
// (knownHostsFinding).
func (s *SecondarySSHD) auditFindings(f *secondaryFacts, p *secondaryPlan, host string) []Finding {
	var out []Finding
	apply := "breakglass apply -i INVENTORY PLAYBOOK --limit " + host
	add := func(id, sev, path, detail, fix string) {
		out = append(out, Finding{ID: id, Severity: sev, Path: path, Detail: detail, Fix: fix})
	}
	switch {
	case f.Config == nil:
		add(FindingSecondNotRunning, "risk", s.ConfigPath(), fmt.Sprintf("the emergency sshd %s (port %d) is not set up: %s does not exist", s.name, s.port, s.ConfigPath()), apply)
	case p.start && f.Systemd:
		add(FindingSecondNotRunning, "risk", s.UnitPath(), fmt.Sprintf("the emergency sshd %s (port %d) is not running: %s is %s", s.name, s.port, s.Unit(), orUnknown(f.Active)), shell.Join("systemctl", "restart", s.Unit()))
	case p.start:
		add(FindingSecondNotRunning, "risk", s.PidFile(), fmt.Sprintf("the emergency sshd %s (port %d) is not running (no sshd -f %s)", s.name, s.port, s.ConfigPath()), shell.Join(f.SSHD, "-f", s.ConfigPath()))
	}
	if f.Config != nil {
		if fd, ok := s.bootFinding(f, p, apply); ok {
			out = append(out, fd)
		}
	}
	if f.Config != nil && f.Config.Regular {
		for _, l := range sshdconf.ParseFile(f.Config.Path, f.Config.Content, "") {
			why := ""
			switch l.Keyword {
			case "include":
				why = "it includes other config files, which the main path shares"
			case "match":
				why = "it has a Match block, so its effective settings depend on more than this file"
			case "authorizedkeysfile":
				for _, a := range l.Args {
					if !strings.HasPrefix(a, s.KeyDir()+"/") {
						why = "it reads keys from " + a + ", not only from its root-owned store " + s.KeyDir()
					}
				}
			case "usepam":
				if !s.usePAM && len(l.Args) == 1 && strings.EqualFold(l.Args[0], "yes") {
					why = "UsePAM yes: a PAM stack that refuses the main path refuses this one too"
				}
			case "hostkey":
				if len(l.Args) == 1 && !strings.HasPrefix(l.Args[0], s.HostKeyDir()+"/") {
					why = "it serves " + l.Args[0] + ", the main sshd's host key file: regenerating or deleting it changes this port too"
				}
			case "hostcertificate":
				if len(l.Args) == 1 && !strings.HasPrefix(l.Args[0], s.HostKeyDir()+"/") {
					why = "it presents " + l.Args[0] + ", the main sshd's host certificate file: replacing or deleting it changes this port too"
				}
			}
			if why != "" {
				add(FindingSecondShared, "risk", s.ConfigPath(), fmt.Sprintf("%s line %d (%s): %s", s.ConfigPath(), l.Line, strings.TrimSpace(l.Keyword+" "+strings.Join(l.Args, " ")), why), apply)
			}
		}
	}
	if len(p.storeWrites)+len(p.storeRemoves) > 0 {
		var files []string
		for _, w := range p.storeWrites {
			files = append(files, s.KeyDir()+"/"+w.name)
		}
		for _, n := range p.storeRemoves {
			files = append(files, s.KeyDir()+"/"+n+" (extra)")
		}
		add(FindingSecondKeys, "risk", s.KeyDir(), "the emergency sshd's key store differs from the keys the play's authorized_key tasks give: "+strings.Join(files, ", "), apply)
	}
	if !s.rootLogin {
		add(FindingSecondSudo, "info", s.ConfigPath(), fmt.Sprintf("root through the emergency sshd %s needs sudo, which it shares with the main path (a broken /etc/sudoers or sudo binary cuts both)", s.name),
			"root_login: true on the secondary_sshd task lets root in by the allowed users' keys on that port only")
	}
	return out
}

// bootFinding reports when nothing starts the emergency sshd at boot: its
// unit is not enabled, its init script or cron entry is missing or not
// linked, or the host runs nothing this task can use (no systemd, no
// sysv-rc, no cron daemon).
func (s *SecondarySSHD) bootFinding(f *secondaryFacts, p *secondaryPlan, apply string) (Finding, bool) {
	fd := Finding{ID: FindingSecondNoBoot, Severity: "risk"}
	switch {
	case f.Systemd && f.Enabled != "enabled":
		fd.Path = s.UnitPath()
		fd.Detail = fmt.Sprintf("the emergency sshd %s (port %d) does not start at boot: %s is %s, not enabled", s.name, s.port, s.Unit(), orUnknown(f.Enabled))
		fd.Fix = shell.Join("systemctl", "enable", s.Unit())
	case f.Systemd:
		return fd, false
	case p.boot == "":
		fd.Path = s.ConfigPath()
		fd.Detail = fmt.Sprintf("nothing starts the emergency sshd %s (port %d) at boot: this host runs no systemd (PID 1 is %s), has no sysv-rc (/etc/init.d and update-rc.d) and no cron daemon; after a reboot it stays down until the next apply", s.name, s.port, orUnknown(f.PID1))
		fd.Fix = "apt-get install cron, then " + apply + "  # installs an @reboot entry in " + s.CronPath()
	case p.writeInit || p.rcEnable:
		fd.Path = s.InitPath()
		why := s.InitPath() + " is missing or differs from what apply installs"
		if !p.writeInit {
			why = s.InitPath() + " is not linked to start in runlevels 2-5 (update-rc.d)"
		}
		fd.Detail = fmt.Sprintf("the emergency sshd %s (port %d) does not start at boot: %s", s.name, s.port, why)
		fd.Fix = apply
	case p.writeCron:
		fd.Path = s.CronPath()
		fd.Detail = fmt.Sprintf("the emergency sshd %s (port %d) does not start at boot: the @reboot entry %s is missing or differs from what apply installs", s.name, s.port, s.CronPath())
		fd.Fix = apply
	// In place, but is it run? sysv-rc's scripts run only under sysvinit's
	// init (a container's PID 1 — tini, a shell — runs none), and an
	// @reboot entry only when a cron daemon starts.
	case p.boot == bootSysv && f.PID1 != "" && f.PID1 != "init":
		// info, not risk: some container inits (my_init, s6) do run the
		// rc scripts, and only the host's owner knows whether this one does.
		fd.Severity = "info"
		fd.Path = s.InitPath()
		fd.Detail = fmt.Sprintf("the emergency sshd %s (port %d) may not start at boot: %s is installed and linked, but PID 1 is %s, not sysvinit's init, and runs the rc scripts only if it was made to; after a restart it stays down until the next apply", s.name, s.port, s.InitPath(), f.PID1)
		fd.Fix = "have PID 1 (" + f.PID1 + ") run " + shell.Join(s.InitPath(), "start") + " when the host starts, or run the host under an init"
	case p.boot == bootCron && !f.CronRuns:
		fd.Path = s.CronPath()
		fd.Detail = fmt.Sprintf("the emergency sshd %s (port %d) may not start at boot: the @reboot entry %s is in place, but no cron daemon runs now (PID 1 is %s), and @reboot runs only when one starts", s.name, s.port, s.CronPath(), orUnknown(f.PID1))
		fd.Fix = "start " + path.Base(f.Cron) + " when the host starts (it runs the @reboot entry then)"
	default:
		return fd, false
	}
	return fd, true
}

// knownHostsFinding is the pin's finding in audit mode (pinPortOp.Found):
// [addr]:port missing from known_hosts, so plain ssh with strict checking
// refuses the second way in; apply is the command that records it.
func knownHostsFinding(port int, apply string) func(engine.PortPin) []Finding {
	return func(pin engine.PortPin) []Finding {
		if pin.Present {
			return nil
		}
		return []Finding{{ID: FindingSecondKnownHosts, Severity: "risk", Path: pin.KnownHosts,
			Detail: fmt.Sprintf("%s is not in %s: plain ssh -p %d with strict host key checking refuses the second way in", pin.Host, pin.KnownHosts, port),
			Fix:    apply + "  # records it after checking the port presents the host key verified on the main connection"}}
	}
}

// commandFinding tells the operator how to use the second way in: the
// exact plain OpenSSH command, to the address and known_hosts file of the
// pin (pinPortOp.Found). It holds the task's words, not the task.
func (s *SecondarySSHD) commandFinding() func(engine.PortPin) []Finding {
	user := s.allowUsers[0]
	if s.rootLogin {
		user = "root"
	}
	port := s.port
	detail := fmt.Sprintf("second way in (secondary_sshd %s, port %d, users %s; keys in %s, not in the homes)", s.name, s.port, strings.Join(s.users(), " "), s.KeyDir())
	return func(pin engine.PortPin) []Finding {
		cmd := shell.Join("ssh", "-p", strconv.Itoa(port), "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+pin.KnownHosts, user+"@"+pin.Addr)
		return []Finding{{ID: "emergency-access", Severity: "info", User: user, Detail: detail, Fix: cmd}}
	}
}

// script applies p in one round trip. It prints "status ok", "status
// invalid" (sshd -t's words follow: nothing was installed), or "status
// failed" / "status installed-not-running" with a message.
func (s *SecondarySSHD) script(p *secondaryPlan, f *secondaryFacts) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# breakglass secondary_sshd %s: apply\n", s.name)
	b.WriteString(engine.TxnPrelude)
	b.WriteString("umask 022\n")
	b.WriteString(s.vars())
	fmt.Fprintf(&b, "S=%s\n", shell.Quote(f.SSHD))
	b.WriteString(secondaryFuncs)
	if p.writeConfig || p.writeUnit || p.writeDropIn || p.writeInit || p.writeCron || len(p.storeWrites)+len(p.copyKeys)+len(p.copyCerts) > 0 {
		b.WriteString(engine.Nofollow) // the one writer (bg_write, bg_temp, bg_commit), bg_copy_root
	}
	if len(p.copyKeys)+len(p.copyCerts) > 0 {
		b.WriteString(resolveScript) // bg_resolve, for bg_copy_root
	}
	fmt.Fprintf(&b, "port=%d\n", s.port)
	b.WriteString(secondaryApplyScript) // bg_fail and the steps below; creates /run/sshd
	for _, dm := range p.dirs {
		d := shell.Quote(dm[0])
		fmt.Fprintf(&b, "if [ -L %[1]s ] || { [ -e %[1]s ] && [ ! -d %[1]s ]; }; then bg_fail %[2]s; fi\n[ -d %[1]s ] || mkdir -m %[3]s -- %[1]s || bg_fail %[4]s\nchown 0:0 -- %[1]s && chmod %[3]s -- %[1]s || bg_fail %[5]s\n",
			d, shell.Quote(dm[0]+" is not a directory"), dm[1], shell.Quote("create "+dm[0]), shell.Quote("chown/chmod "+dm[0]))
	}
	// Host keys and certificates are read only where no user can steer
	// the read (bg_copy_root): a certificate copy is world-readable.
	for _, k := range p.copyKeys {
		dst := s.HostKeyDir() + "/" + path.Base(k)
		fmt.Fprintf(&b, "out=$(bg_copy_root %s %s 0600 2>&1) || bg_fail %s \"$out\"\n", shell.Quote(k), shell.Quote(dst), shell.Quote("copy "+k+" to "+dst))
	}
	for _, w := range p.storeWrites {
		// No backup: the store is remade from the playbook, and a
		// previous key list kept beside it is one more to audit.
		b.WriteString(s.writeFileShell(s.KeyDir()+"/"+w.name, w.content, false))
	}
	for _, name := range p.storeRemoves {
		fmt.Fprintf(&b, "rm -f -- %s || bg_fail %s\n", shell.Quote(s.KeyDir()+"/"+name), shell.Quote("remove "+s.KeyDir()+"/"+name))
	}
	for _, c := range p.copyCerts {
		dst := s.HostKeyDir() + "/" + certCopyName(c)
		fmt.Fprintf(&b, "out=$(bg_copy_root %s %s 0644 2>&1) || bg_fail %s \"$out\"\n", shell.Quote(c), shell.Quote(dst), shell.Quote("copy "+c+" to "+dst))
	}
	if len(p.copyKeys)+len(p.copyCerts)+len(p.storeWrites)+len(p.storeRemoves) > 0 {
		fmt.Fprintf(&b, "sync -- %s %s 2>/dev/null\n", shell.Quote(s.KeyDir()), shell.Quote(s.HostKeyDir()))
	}
	if p.writeConfig {
		// The fixed temp name of breakglass before the one writer, should
		// a run killed then have left it.
		fmt.Fprintf(&b, "rm -f -- %s\n", shell.Quote(engine.TmpPath(s.ConfigPath(), "tmp")))
		b.WriteString(engine.WriteTemp("tmp", s.ConfigPath(), "0:0", "0644", []byte(p.config)) + "bg_install_config\n")
	}
	if len(p.copyKeys)+len(p.copyCerts) > 0 && !f.Systemd {
		b.WriteString("keys_changed=1\n")
	}
	if f.Systemd {
		reload := false
		if p.writeUnit {
			b.WriteString(s.writeFileShell(s.UnitPath(), p.unit, true))
			reload = true
		}
		if p.writeDropIn {
			b.WriteString(s.writeFileShell(secondaryPrivsepDropIn, secondaryPrivsepConf, true))
			reload = true
		}
		if reload {
			b.WriteString(`systemctl daemon-reload || bg_fail "systemctl daemon-reload failed"
`)
		}
		if p.enable {
			b.WriteString(`systemctl enable --quiet "$unit" 2>&1 || bg_fail "systemctl enable $unit failed"
`)
		}
		switch {
		case p.start, p.restart:
			b.WriteString("bg_unit_restart\n")
		case p.reload:
			b.WriteString("bg_unit_reload\n")
		}
	} else {
		if p.writeInit {
			// The previous version is kept beside it under a dot name,
			// which insserv, run-parts and systemd's sysv generator skip:
			// no second script provides the same service.
			fmt.Fprintf(&b, "out=$(bg_write %s root 0755 %s 2>&1) || bg_fail %s \"$out\"\n", shell.Quote(s.InitPath()), shell.Quote(p.initFile), shell.Quote("write "+s.InitPath()))
		}
		if p.rcEnable {
			b.WriteString("bg_rc_enable\n")
		}
		if p.writeCron {
			// The previous version is kept beside it under a dot name:
			// Debian's cron skips names with dots, cronie names that start
			// with one, so the old @reboot line never runs.
			fmt.Fprintf(&b, "out=$(bg_write %s root 0644 %s 2>&1) || bg_fail %s \"$out\"\n", shell.Quote(s.CronPath()), shell.Quote(p.cronFile), shell.Quote("write "+s.CronPath()))
		}
		b.WriteString("bg_rc_start\n")
	}
	b.WriteString("echo \"status ok\"\n")
	return engine.Script(b.String())
}

// writeFileShell is shell that writes content to p (root 0644) with the
// one writer (bg_temp, bg_commit), keeping the previous version as
// engine.BackupPath(p) when backup is set.
func (s *SecondarySSHD) writeFileShell(p, content string, backup bool) string {
	var b strings.Builder
	if path.Dir(p) != s.KeyDir() { // the store's directories are made first, with their modes
		fmt.Fprintf(&b, "[ -d %[1]s ] || mkdir -p %[1]s || bg_fail %[2]s\n", shell.Quote(path.Dir(p)), shell.Quote("create "+path.Dir(p)))
	}
	b.WriteString(engine.WriteTemp("t", p, "0:0", "0644", []byte(content)))
	keep := ""
	if !backup {
		keep = " nobak"
	}
	fmt.Fprintf(&b, "out=$(bg_commit \"$t\" %s%s 2>&1) || { rm -f -- \"$t\"; bg_fail %s \"$out\"; }\n", shell.Quote(p), keep, shell.Quote("rename to "+p))
	return b.String()
}
