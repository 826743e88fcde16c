package tasks

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/go-multierror"
	"gopkg.in/yaml.v3"

	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/yamlx"
)

// SecondarySSHD keeps an emergency sshd running on another port, with its
// own minimal configuration file that includes nothing of the main one, so
// that a broken sshd_config (or drop-in) cannot lock out the break-glass
// users. It uses the host's own host keys (known_hosts entries match) and
// the main configuration's AuthorizedKeysFile. Where systemd runs it is a
// unit (enabled, Restart=always); otherwise a plain daemon that each run
// restarts when it is not running and reloads when its config changed.
type SecondarySSHD struct {
	name       string
	port       int
	listen     string // "" for every address
	allowUsers []string
}

var _ Module = (*SecondarySSHD)(nil)
var _ Gatherer = (*SecondarySSHD)(nil)

func init() { Register("secondary_sshd", NewSecondarySSHD) }

// DefaultSecondaryName names the emergency sshd when name is not given.
const DefaultSecondaryName = "breakglass"

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
	s := &SecondarySSHD{name: DefaultSecondaryName, port: a.Port}
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
		if err := shell.ValidUser(u); err != nil {
			n := sshdArgValue(args, "allow_users")
			if n != nil && n.Kind == yaml.SequenceNode && i < len(n.Content) {
				n = n.Content[i]
			}
			bad(n, "allow_users: %v", err)
			continue
		}
		if !seen[u] {
			seen[u] = true
			s.allowUsers = append(s.allowUsers, u)
		}
	}
	if err := errs.ErrorOrNil(); err != nil {
		return nil, err
	}
	return s, nil
}

// ConfigPath is the emergency sshd's own configuration file.
func (s *SecondarySSHD) ConfigPath() string { return "/etc/ssh/sshd_config_" + s.name }

// PidFile is where the emergency sshd writes its pid.
func (s *SecondarySSHD) PidFile() string { return "/run/sshd-" + s.name + ".pid" }

// Unit is the systemd unit that runs it where systemd is PID 1.
func (s *SecondarySSHD) Unit() string { return s.name + "-sshd.service" }

// UnitPath is the unit file.
func (s *SecondarySSHD) UnitPath() string { return "/etc/systemd/system/" + s.Unit() }

// secondaryMain is what the emergency sshd copies from the main sshd's
// effective configuration.
type secondaryMain struct {
	HostKeys           []string // existing host key files, in sshd's order
	HostCertificates   []string
	AuthorizedKeysFile string
	UsePAM             bool
	Subsystems         []string // "sftp /usr/lib/openssh/sftp-server"
	Listen             []netip.AddrPort
	// Fallback is set when sshd -T failed (a broken main config): the
	// values come from the existing emergency config or sshd's defaults.
	Fallback string
}

// render returns the emergency sshd's configuration.
func (s *SecondarySSHD) render(m secondaryMain) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Managed by breakglass (secondary_sshd %q): changes made here are overwritten.\n", s.name)
	b.WriteString("# An emergency sshd, independent of /etc/ssh/sshd_config: it reads no other\n")
	b.WriteString("# config file, so a broken main configuration cannot take it down.\n")
	fmt.Fprintf(&b, "Port %d\n", s.port)
	if s.listen != "" {
		fmt.Fprintf(&b, "ListenAddress %s\n", s.listen)
	}
	for _, k := range m.HostKeys {
		fmt.Fprintf(&b, "HostKey %s\n", k)
	}
	for _, c := range m.HostCertificates {
		fmt.Fprintf(&b, "HostCertificate %s\n", c)
	}
	fmt.Fprintf(&b, "PidFile %s\n", s.PidFile())
	fmt.Fprintf(&b, "AllowUsers %s\n", strings.Join(s.allowUsers, " "))
	b.WriteString("PubkeyAuthentication yes\n")
	b.WriteString("PasswordAuthentication no\n")
	b.WriteString("KbdInteractiveAuthentication no\n")
	b.WriteString("PermitRootLogin no\n")
	fmt.Fprintf(&b, "AuthorizedKeysFile %s\n", m.AuthorizedKeysFile)
	if m.UsePAM {
		b.WriteString("UsePAM yes\n")
	}
	b.WriteString("StrictModes yes\n")
	b.WriteString("LogLevel VERBOSE\n")
	b.WriteString("SyslogFacility AUTH\n")
	for _, sub := range m.Subsystems {
		fmt.Fprintf(&b, "Subsystem %s\n", sub)
	}
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

// --- facts ---

type secondaryFacts struct {
	Systemd        bool
	SSHD           string // absolute path of the sshd binary
	PrivsepMissing bool
	T              map[string][]string // main effective config: keyword → values, in order
	TErr           string
	Exists         map[string]bool // host key files that exist
	Config         *sshdFile
	Unit           *sshdFile
	PrivsepDropIn  *sshdFile
	DebianSSH      bool   // ssh.service exists (systemd): it removes /run/sshd when it stops
	Enabled        string // systemctl is-enabled
	Active         string // systemctl is-active
	PID            int    // the running emergency sshd (0: none)
}

func (s *SecondarySSHD) factKey() string { return "secondary_sshd:" + s.name }

// secondaryFuncs finds the running emergency sshd: the pid in its PidFile
// when that process runs `sshd ... -f CONFIG`, else any such listener.
const secondaryFuncs = `bg_is_ours() {
	c=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
	case "$c " in *sshd*" -f $F "*) return 0 ;; esac
	return 1
}
bg_secondary_pid() {
	pid=$(cat "$P" 2>/dev/null)
	case $pid in ''|*[!0-9]*) pid= ;; esac
	if [ -n "$pid" ] && bg_is_ours "$pid"; then echo "$pid"; return 0; fi
	for d in /proc/[0-9]*; do
		p=${d#/proc/}
		case $(tr '\0' ' ' <"$d/cmdline" 2>/dev/null) in *"[listener]"*) bg_is_ours "$p" && { echo "$p"; return 0; } ;; esac
	done
	return 1
}
# bg_wait_pidfile PID: wait until the daemon wrote its PidFile (it does so
# after binding its port) and runs; PID, when given, must stay alive.
bg_wait_pidfile() {
	i=0
	while [ ! -s "$P" ]; do
		if [ -n "$1" ] && ! kill -0 "$1" 2>/dev/null; then return 1; fi
		i=$((i + 1)); [ "$i" -le 200 ] || return 1
		sleep 0.05
	done
	bg_is_ours "$(cat "$P")"
}
`

func (s *SecondarySSHD) vars() string {
	return fmt.Sprintf("F=%s P=%s U=%s unit=%s\n", shell.Quote(s.ConfigPath()), shell.Quote(s.PidFile()), shell.Quote(s.UnitPath()), shell.Quote(s.Unit()))
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
	b.WriteString(`echo "breakglass-secondary-facts 1"
[ -d /run/systemd/system ] && echo "systemd"
printf 'sshd %s\n' "$(command -v sshd 2>/dev/null || echo /usr/sbin/sshd)"
[ -d /run/sshd ] || echo "privsep-missing"
if out=$(sshd -T 2>&1); then
	printf '%s\n' "$out" | awk '$1 == "hostkey" || $1 == "hostcertificate" || $1 == "authorizedkeysfile" || $1 == "usepam" || $1 == "subsystem" || $1 == "listenaddress" { print "T " $0 }'
	printf '%s\n' "$out" | awk '$1 == "hostkey" { print $2 }' | while read -r k; do [ -f "$k" ] && printf 'exists %s\n' "$k"; done
else
	echo "sshd-T-failed"
	printf '%s\n' "$out" | sed 's/^/| /'
fi
for k in /etc/ssh/ssh_host_ecdsa_key /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_rsa_key; do
	[ -f "$k" ] && printf 'exists %s\n' "$k"
done
bg_file "$F"
if [ -d /run/systemd/system ]; then
	bg_file "$U"
	bg_file "$dropin"
	for d in /etc/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
		if [ -f "$d/ssh.service" ]; then echo "debian-ssh"; break; fi
	done
	printf 'enabled %s\n' "$(systemctl is-enabled "$unit" 2>/dev/null)"
	printf 'active %s\n' "$(systemctl is-active "$unit" 2>/dev/null)"
fi
if pid=$(bg_secondary_pid); then printf 'running %s\n' "$pid"; fi
exit 0
`)
	return Query{Key: s.factKey(), Script: string(txnScript(b.String())), Parse: parseSecondaryFacts}
}

// Queries implements Gatherer.
func (s *SecondarySSHD) Queries() []Query { return []Query{s.query()} }

func parseSecondaryFacts(out []byte) (any, error) {
	f := &secondaryFacts{T: map[string][]string{}, Exists: map[string]bool{}}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	header := false
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
		case "debian-ssh":
			f.DebianSSH = true
		case "enabled":
			f.Enabled = rest
		case "active":
			f.Active = rest
		case "running":
			f.PID, _ = strconv.Atoi(rest)
		case "file", "other":
			file, err := parseSSHDFile(sc, k, rest)
			if err != nil {
				return nil, err
			}
			switch {
			case strings.HasPrefix(file.Path, "/etc/ssh/"):
				f.Config = &file
			case file.Path == secondaryPrivsepDropIn:
				f.PrivsepDropIn = &file
			default:
				f.Unit = &file
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !header {
		return nil, fmt.Errorf("unexpected output %q", probeFirstLine(string(out)))
	}
	if f.TErr != "" && len(terr) > 0 {
		f.TErr += ": " + strings.Join(terr, "\n")
	}
	if !strings.HasPrefix(f.SSHD, "/") || strings.ContainsAny(f.SSHD, " \t\n'\"\\$`") {
		f.SSHD = "/usr/sbin/sshd"
	}
	return f, nil
}

// mainConfig picks what the emergency sshd copies from the main one. When
// sshd -T fails (the main config is broken: the very case this sshd is
// for), it keeps the values of its existing config, or sshd's defaults.
func (s *SecondarySSHD) mainConfig(f *secondaryFacts) (secondaryMain, error) {
	var m secondaryMain
	if f.TErr == "" {
		for _, k := range f.T["hostkey"] {
			if f.Exists[k] {
				m.HostKeys = append(m.HostKeys, k)
			}
		}
		m.HostCertificates = f.T["hostcertificate"]
		m.AuthorizedKeysFile = strings.Join(f.T["authorizedkeysfile"], " ")
		_, m.UsePAM = f.T["usepam"]
		m.Subsystems = f.T["subsystem"]
		for _, la := range f.T["listenaddress"] {
			if ap, err := netip.ParseAddrPort(la); err == nil {
				m.Listen = append(m.Listen, ap)
			}
		}
	} else {
		m.Fallback = f.TErr
		m.UsePAM = true
		if f.Config != nil {
			for _, l := range sshdParse(f.Config.Content) {
				switch l.Keyword {
				case "hostkey":
					if len(l.Args) == 1 && f.Exists[l.Args[0]] {
						m.HostKeys = append(m.HostKeys, l.Args[0])
					}
				case "hostcertificate":
					m.HostCertificates = append(m.HostCertificates, l.Args...)
				case "authorizedkeysfile":
					m.AuthorizedKeysFile = strings.Join(l.Args, " ")
				case "usepam":
					m.UsePAM = len(l.Args) == 1 && strings.EqualFold(l.Args[0], "yes")
				case "subsystem":
					m.Subsystems = append(m.Subsystems, strings.Join(l.Args, " "))
				}
			}
		}
		if len(m.HostKeys) == 0 {
			for _, k := range []string{"/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key"} {
				if f.Exists[k] {
					m.HostKeys = append(m.HostKeys, k)
				}
			}
		}
	}
	if m.AuthorizedKeysFile == "" {
		m.AuthorizedKeysFile = ".ssh/authorized_keys .ssh/authorized_keys2"
	}
	if len(m.HostKeys) == 0 {
		return m, fmt.Errorf("no host key file exists (the main sshd's HostKey lines name none that exist)")
	}
	for _, v := range append(append(append([]string{m.AuthorizedKeysFile}, m.HostKeys...), m.HostCertificates...), m.Subsystems...) {
		if strings.ContainsAny(v, "\x00\r\n#") {
			return m, fmt.Errorf("unexpected value %q in the main sshd configuration", v)
		}
	}
	return m, nil
}

// --- plan ---

type secondaryPlan struct {
	mkPrivsep     bool
	config        string // the wanted config
	writeConfig   bool
	unit          string
	writeUnit     bool
	writeDropIn   bool
	enable        bool
	start         bool // not running: start (systemd: start the unit)
	reload        bool // running and the config changed
	restart       bool // systemd: running and the unit changed
	changes       []Change
	fallbackNotes string
}

func (s *SecondarySSHD) plan(f *secondaryFacts, diff bool) (*secondaryPlan, error) {
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
	if m.Fallback != "" {
		p.fallbackNotes = "the main sshd configuration does not load (" + m.Fallback + "): host keys and AuthorizedKeysFile kept from the existing emergency config or sshd's defaults"
	}
	p.config = s.render(m)
	cfg := s.ConfigPath()
	summary := fmt.Sprintf("port %d, users %s", s.port, strings.Join(s.allowUsers, " "))
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
		case p.writeConfig:
			p.reload = true
			add("reload "+s.Unit()+" (its config changed)", "", "", "")
		}
		return p, nil
	}
	switch {
	case f.PID == 0:
		p.start = true
		add(fmt.Sprintf("start %s -f %s (not running)", f.SSHD, cfg), s.PidFile(), "", "")
	case p.writeConfig:
		p.reload = true
		add(fmt.Sprintf("reload the emergency sshd (pid %d): its config changed", f.PID), s.PidFile(), "", "")
	}
	return p, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// --- apply ---

// Run implements Module.
func (s *SecondarySSHD) Run(ctx context.Context, r Runner, env *Env) (*Result, error) {
	facts, err := s.gather(ctx, r, env)
	if err != nil {
		return nil, err
	}
	if facts.PrivsepMissing && facts.TErr != "" && !env.Check {
		// sshd -T cannot run without /run/sshd: create it, then look again.
		if _, err := r.Run(ctx, "/bin/sh -s", txnScript("mkdir -p -m 0755 /run/sshd")); err != nil {
			return nil, fmt.Errorf("secondary_sshd %s: create /run/sshd: %w", s.name, err)
		}
		env.Facts.Delete(s.factKey())
		if facts, err = s.gather(ctx, r, env); err != nil {
			return nil, err
		}
		facts.PrivsepMissing = true // report that it was created
	}
	p, err := s.plan(facts, env.Diff)
	if err != nil {
		return nil, fmt.Errorf("secondary_sshd %s: %w", s.name, err)
	}
	res := &Result{Changed: len(p.changes) > 0, Changes: p.changes}
	if env.Check || !res.Changed {
		return res, nil
	}
	out, err := r.Run(ctx, "/bin/sh -s", s.script(p, facts))
	env.Facts.Delete(s.factKey())
	if err != nil {
		return nil, fmt.Errorf("secondary_sshd %s: apply did not finish, check %s and %s: %w", s.name, s.ConfigPath(), s.PidFile(), err)
	}
	st := parseTxnOutput(out)
	switch st.status {
	case "ok":
	case "invalid":
		return &Result{}, fmt.Errorf("secondary_sshd %s: sshd -t rejected the new config; nothing was installed: %s", s.name, st.describe())
	default:
		return &Result{Changed: st.status == "installed-not-running"}, fmt.Errorf("secondary_sshd %s: %s", s.name, st.describe())
	}
	if p.fallbackNotes != "" {
		res.Changes = append(res.Changes, Change{What: "note: " + p.fallbackNotes})
	}
	return res, nil
}

func (s *SecondarySSHD) gather(ctx context.Context, r Runner, env *Env) (*secondaryFacts, error) {
	if env.Facts == nil {
		env.Facts = &Facts{}
	}
	v, err := env.Fact(ctx, r, s.query())
	if err != nil {
		return nil, fmt.Errorf("secondary_sshd %s: %w", s.name, err)
	}
	f, ok := v.(*secondaryFacts)
	if !ok {
		return nil, fmt.Errorf("secondary_sshd %s: fact %s has type %T", s.name, s.factKey(), v)
	}
	return f, nil
}

// script applies p in one round trip. It prints "status ok", "status
// invalid" (sshd -t's words follow: nothing was installed), or "status
// failed" / "status installed-not-running" with a message.
func (s *SecondarySSHD) script(p *secondaryPlan, f *secondaryFacts) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# breakglass secondary_sshd %s: apply\n", s.name)
	b.WriteString(txnPrelude)
	b.WriteString("umask 022\n")
	b.WriteString(s.vars())
	fmt.Fprintf(&b, "S=%s\n", shell.Quote(f.SSHD))
	b.WriteString(secondaryFuncs)
	b.WriteString(`bg_fail() { echo "status ${st:-failed}"; printf '| %s\n' "$@"; exit 0; }
[ -d /run/sshd ] || mkdir -m 0755 /run/sshd || bg_fail "create /run/sshd"
`)
	if p.writeConfig {
		tmp := shell.Quote(txnTmpPath(s.ConfigPath(), "tmp"))
		fmt.Fprintf(&b, "tmp=%s\nrm -f -- \"$tmp\"\n", tmp)
		b.WriteString(txnHeredoc([]byte(p.config), `"$tmp"`, `|| bg_fail "write $tmp"`) + `
chown 0:0 "$tmp" && chmod 0644 "$tmp" || bg_fail "chown/chmod $tmp"
if ! out=$("$S" -t -f "$tmp" 2>&1); then
	rm -f -- "$tmp"
	echo "status invalid"
	printf '%s\n' "$out" | sed 's/^/| /'
	exit 0
fi
if [ -f "$F" ]; then cp -a -- "$F" "$F.breakglass-bak" || bg_fail "back up $F"; fi
sync -- "$tmp" 2>/dev/null
mv -f -- "$tmp" "$F" || bg_fail "rename $tmp to $F"
sync -- "${F%/*}" 2>/dev/null
st=installed-not-running
`)
	}
	if f.Systemd {
		reload := false
		if p.writeUnit {
			b.WriteString(s.writeFileShell(s.UnitPath(), p.unit))
			reload = true
		}
		if p.writeDropIn {
			b.WriteString(s.writeFileShell(secondaryPrivsepDropIn, secondaryPrivsepConf))
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
			b.WriteString(`rm -f -- "$P"
out=$(systemctl restart "$unit" 2>&1) || bg_fail "systemctl restart $unit failed: $out" "$(systemctl status --no-pager "$unit" 2>&1 | tail -n 5)"
bg_wait_pidfile "" || bg_fail "$unit did not come up: $(systemctl status --no-pager "$unit" 2>&1 | tail -n 5)"
`)
		case p.reload:
			b.WriteString(`pid=$(bg_secondary_pid) || pid=
rm -f -- "$P"
out=$(systemctl reload "$unit" 2>&1) || bg_fail "systemctl reload $unit failed: $out"
bg_wait_pidfile "$pid" || bg_fail "$unit did not come back after the reload: $(systemctl status --no-pager "$unit" 2>&1 | tail -n 5)"
`)
		}
	} else {
		// Decided again here from what runs now, not from the facts: the
		// daemon may have died or come up since.
		b.WriteString(`if pid=$(bg_secondary_pid); then
	if [ "${st-}" = installed-not-running ]; then
		rm -f -- "$P"
		kill -HUP "$pid" || bg_fail "kill -HUP $pid failed"
		bg_wait_pidfile "$pid" || bg_fail "the emergency sshd (pid $pid) did not come back after the reload"
	fi
else
	rm -f -- "$P"
	out=$("$S" -f "$F" 2>&1 </dev/null) || bg_fail "$S -f $F failed: $out"
	bg_wait_pidfile "" || bg_fail "$S -f $F did not write $P: it is not running"
fi
`)
	}
	b.WriteString("echo \"status ok\"\n")
	return txnScript(b.String())
}

// writeFileShell is shell that writes content atomically to p (root 0644),
// keeping the previous version as p.breakglass-bak.
func (s *SecondarySSHD) writeFileShell(p, content string) string {
	tmp := shell.Quote(txnTmpPath(p, "tmp"))
	q := shell.Quote(p)
	dir := shell.Quote(path.Dir(p))
	return fmt.Sprintf(`mkdir -p -m 0755 %s || bg_fail "create %s"
%s
chown 0:0 %s && chmod 0644 %s || bg_fail "chown/chmod %s"
if [ -f %s ]; then cp -a -- %s %s.breakglass-bak || bg_fail "back up %s"; fi
sync -- %s 2>/dev/null
mv -f -- %s %s || bg_fail "rename to %s"
`, dir, path.Dir(p), txnHeredoc([]byte(content), tmp, `|| bg_fail "write `+p+`"`), tmp, tmp, p, q, q, q, p, tmp, tmp, q, p)
}
