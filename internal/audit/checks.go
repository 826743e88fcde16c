package audit

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/sshdconf"
	"github.com/breakglass/breakglass/tasks"
)

// checker accumulates the findings of one host.
type checker struct {
	h        *HostFacts
	conf     []sshdconf.Line
	findings []engine.Finding
	// sshdPAM is the sshd PAM stack; pamKnown is false when PAM's files
	// were not read.
	sshdPAM  []pamEntry
	pamKnown bool
	// dropInRead: the main sshd_config includes dropIn (Debian's
	// Include /etc/ssh/sshd_config.d/*.conf, on its first line).
	dropInRead bool
	// sudoers are the users expected to sudo, and "%GROUP" for each of
	// their groups: whom a sudo fix may give rights to (set by host).
	sudoers map[string]bool
	// commands is the host's answer about the programs forced commands
	// name (commandCheck.key); nil when none was asked.
	commands map[string]commandCheck
}

func newChecker(h *HostFacts) *checker {
	c := &checker{h: h, conf: sshdconf.Read(h.Config), dropInRead: includes(h.Config, dropIn)}
	if svc, ok := pamService(h, "sshd"); ok {
		c.sshdPAM, c.pamKnown = pamStack(h.PAMFiles, svc), true
	}
	return c
}

func (c *checker) add(user, id, severity, p, detail, fix string) {
	c.findings = append(c.findings, engine.Finding{ID: id, Severity: severity, User: user, Path: p, Detail: detail, Fix: fix})
}

// act gives the finding added last its fix as a typed action (argv for
// engine.RunAction), which recover may run.
func (c *checker) act(argv ...string) {
	c.findings[len(c.findings)-1].Action = argv
}

// has reports whether user has a finding of the given severity whose id
// satisfies match.
func (c *checker) has(user, severity string, match func(id string) bool) bool {
	for _, f := range c.findings {
		if f.User == user && f.Severity == severity && match(f.ID) {
			return true
		}
	}
	return false
}

// day formats a day count since 1970-01-01.
func day(d int64) string { return time.Unix(d*86400, 0).UTC().Format("2006-01-02") }

// describe formats a stat as evidence: "/home/bob (owner uid 1001, group
// gid 1001, mode 0777, directory)".
func describe(st tasks.PathStat, names map[int]string) string {
	kind := "file"
	switch {
	case st.IsDir():
		kind = "directory"
	case !st.IsRegular():
		kind = fmt.Sprintf("file type %06o", st.Mode&0o170000)
	}
	owner := "uid " + strconv.Itoa(st.UID)
	if n, ok := names[st.UID]; ok {
		owner = n + " (uid " + strconv.Itoa(st.UID) + ")"
	}
	return fmt.Sprintf("%s (owner %s, gid %d, mode %04o, %s)", st.Path, owner, st.GID, st.Perm(), kind)
}

// ---------------------------------------------------------------- host

// host runs the host-wide checks. users are the audited users (their
// effective UsePAM decides whether the PAM stack matters).
func (c *checker) host(users []auditedUser) {
	h := c.h
	privsepMissing, privsepDir := c.privsep()
	if privsepMissing {
		c.add("", "privsep-dir", SeverityRisk, privsepDir,
			fmt.Sprintf("sshd's privilege separation directory %s does not exist: sshd -t and sshd -T fail, and sshd will not start again after a stop or reboot (the running listener keeps working)", privsepDir),
			shell.Join("install", "-d", "-m", "0755", "-o", "root", "-g", "root", privsepDir))
		c.act("install", "-d", "-m", "0755", "-o", "root", "-g", "root", privsepDir)
	}
	invalid := false
	if h.SSHDTestRC != 0 {
		var msg []string
		for _, l := range h.SSHDTestOut {
			if !strings.Contains(l, "Missing privilege separation directory") {
				msg = append(msg, l)
			}
		}
		if len(msg) > 0 || !privsepMissing {
			invalid = true
			file, line := sshdErrorPlace(msg)
			detail := fmt.Sprintf("sshd -t exits %d: %s. The running sshd keeps its old configuration, but the next restart or reboot starts no sshd: everyone is locked out", h.SSHDTestRC, strings.Join(msg, "; "))
			if len(msg) == 0 {
				detail = fmt.Sprintf("sshd -t exits %d with no message", h.SSHDTestRC)
			}
			detail += ". Checks that need sshd's effective configuration were skipped"
			fix := "edit the configuration until sshd -t passes"
			switch {
			case file != "" && file != mainSSHDConfig:
				// Renamed so that no Include reads it any more.
				to := file + ".invalid"
				if includes(h.Config, to) {
					to = "/root/" + path.Base(file) + ".invalid"
				}
				fix = fmt.Sprintf("%s && sshd -t", shell.Join("mv", "--", file, to))
			case file != "":
				fix = fmt.Sprintf("restore %s from its backup (line %d is refused), then run sshd -t", file, line)
			}
			c.add("", "config-invalid", SeverityRisk, file, detail, fix)
		}
	}
	if !invalid && !privsepMissing {
		c.configPending()
	}
	c.penalties(users)
	c.socketPorts(users)
	usePAM := len(users) == 0
	for _, u := range users {
		if u.uf.SSHDKnown() != nil || u.uf.SSHD.UsePAM {
			usePAM = true
		}
	}
	if usePAM {
		c.pamBroken()
	}
	c.sudoers = map[string]bool{}
	for _, u := range users {
		if u.sudo {
			c.sudoers[u.uf.Name] = true
			for _, g := range u.uf.Groups {
				c.sudoers["%"+g] = true
			}
		}
	}
	c.sudoFiles()
}

// privsep reports whether sshd's privilege separation directory is
// missing, and which it is.
func (c *checker) privsep() (bool, string) {
	for _, l := range c.h.SSHDTestOut {
		if _, d, ok := strings.Cut(l, "Missing privilege separation directory: "); ok {
			return true, strings.TrimSpace(d)
		}
	}
	run, rok := c.h.Privsep["/run/sshd"]
	empty := c.h.Privsep["/var/empty/sshd"]
	if rok && !run && !empty {
		return true, "/run/sshd"
	}
	return false, ""
}

// sshdErrorPlace finds "FILE: line N:" or "FILE line N:" in sshd's
// messages.
func sshdErrorPlace(msg []string) (string, int) {
	for _, m := range msg {
		f := strings.Fields(m)
		for i := 0; i+2 < len(f); i++ {
			if f[i+1] == "line" && strings.HasPrefix(f[i], "/") {
				n, err := strconv.Atoi(strings.TrimSuffix(f[i+2], ":"))
				if err == nil {
					return strings.TrimSuffix(f[i], ":"), n
				}
			}
		}
	}
	return "", 0
}

// configPending: a configuration file changed after the listener last read
// the configuration (its start, or its last SIGHUP, which rewrites the
// pidfile).
func (c *checker) configPending() {
	l := c.h.Listener
	if l == nil || l.Comm != "sshd" {
		return
	}
	var newer []string
	var first string
	for _, f := range c.h.ConfigOrder {
		if mt := c.h.ConfigMTime[f]; mt > l.Start {
			newer = append(newer, fmt.Sprintf("%s (changed %s)", f, stamp(mt)))
			if first == "" {
				first = f
			}
		}
	}
	if len(newer) == 0 {
		return
	}
	c.add("", "config-pending", SeverityRisk, first,
		fmt.Sprintf("changed after the running sshd (pid %d, from %s) last read its configuration at %s: %s. What runs is not what a reload or restart will run",
			l.PID, c.h.PidFile, stamp(l.Start), strings.Join(newer, ", ")),
		"sshd -t && kill -HUP \"$(cat "+shell.Quote(c.h.PidFile)+")\"  # validate, then reload with a second session open (or breakglass apply, which reloads under its safety net)")
}

func stamp(t float64) string {
	sec := int64(t)
	return time.Unix(sec, int64((t-float64(sec))*1e9)).UTC().Format("2006-01-02 15:04:05.000Z")
}

// pamBroken: a module of the sshd stack that cannot be loaded.
func (c *checker) pamBroken() {
	if !c.pamKnown {
		return
	}
	for _, e := range c.sshdPAM {
		exists, known := moduleExists(c.h, e)
		if !known || exists || e.Dash || e.ignoresFailure(true) {
			continue
		}
		sev, what := SeverityLockout, "every login is denied"
		switch e.Type {
		case "session":
			what = "sshd accepts the key, then closes the session at once"
		case "auth":
			sev, what = SeverityRisk, "password and keyboard-interactive logins fail (key logins do not run this stack's authentication)"
		case "password":
			sev, what = SeverityRisk, "password changes fail"
		}
		where := c.h.PAMDir
		if strings.HasPrefix(e.Module, "/") {
			where = path.Dir(e.Module)
		}
		c.add("", "pam-broken", sev, e.File,
			fmt.Sprintf("%s: module %s does not exist in %s: %s", e, e.base(), where, what),
			fmt.Sprintf("install the package that ships %s (dpkg -S %s), or remove line %d of %s", e.base(), e.base(), e.Line, e.File))
	}
}

// sudoFiles: sudoers files sudo skips (name, owner, mode) and syntax
// errors.
func (c *checker) sudoFiles() {
	h := c.h
	for _, f := range h.SudoFiles {
		name := path.Base(f.Path)
		if f.Dir != "" && engine.OwnFile(name) {
			// breakglass's own backup or a killed run's temp file: what an
			// apply replaced, never rules meant to be in force.
			continue
		}
		if f.Dir != "" && (strings.Contains(name, ".") || strings.HasSuffix(name, "~")) {
			if hasRules(f.Content) {
				detail := fmt.Sprintf("%s holds sudo rules, but sudo skips every file in %s whose name contains '.' or ends in '~'", describe(f.Stat, c.h.UIDNames), f.Dir)
				if sev, d, fix := c.othersSkipped(f, detail); fix != "" {
					c.add("", "sudo-file-ignored", sev, f.Path, d, fix)
				} else {
					c.add("", "sudo-file-ignored", SeverityRisk, f.Path, detail,
						sudoInstallFix(f.Path, path.Join(f.Dir, ignoredFixName(name)), true))
				}
			}
			continue
		}
		if why := sudoUnsafe(f.Stat); why != "" {
			sev, effect := SeverityRisk, "sudo ignores this file"
			if f.Path == "/etc/sudoers" {
				sev, effect = SeverityLockout, "sudo refuses to run at all, for every user"
			}
			detail := fmt.Sprintf("%s is %s: %s", describe(f.Stat, c.h.UIDNames), why, effect)
			if s, d, fix := c.othersSkipped(f, detail); fix != "" && f.Path != "/etc/sudoers" {
				c.add("", "sudo-file-unsafe", s, f.Path, d, fix)
				continue
			}
			c.add("", "sudo-file-unsafe", sev, f.Path, detail,
				shell.Join("chown", "root:root", f.Path)+" && "+shell.Join("chmod", "0440", f.Path))
		}
	}
	var syntax []string
	for _, l := range h.VisudoOut {
		if strings.Contains(l, "syntax error") || strings.Contains(l, "parse error") {
			syntax = append(syntax, strings.TrimSpace(l))
		}
	}
	if len(syntax) > 0 {
		file := strings.SplitN(syntax[0], ":", 2)[0]
		if !strings.HasPrefix(file, "/") {
			file = ""
		}
		fix := "visudo"
		if file != "" {
			fix = shell.Join("visudo", "-f", file)
		}
		c.add("", "sudo-syntax", SeverityRisk, file,
			fmt.Sprintf("visudo -c: %s. sudo 1.9.3 and later silently drop the broken part (the rights on that line are gone); older sudo refuses to run", strings.Join(syntax, "; ")),
			fix+" && visudo -c")
	}
}

// othersSkipped judges a sudoers file sudo skips whose rules grant rights
// to someone the playbook gives no sudo: putting it in force would grant
// them, so that is never the fix. It returns the finding's severity
// (info: nothing the playbook asks for is missing), detail and advice, or
// fix "" when the file grants no one else.
func (c *checker) othersSkipped(f SudoFile, detail string) (sev, d, fix string) {
	others := grantsOthers(f.Content, c.sudoers)
	if len(others) == 0 {
		return "", "", ""
	}
	return SeverityInfo,
		fmt.Sprintf("%s; its rules are not in force, and would grant sudo to %s, whom the playbook gives none", detail, strings.Join(others, ", ")),
		fmt.Sprintf("none needed for the playbook's users; remove it (%s) unless its rules are meant to be in force, and give sudo through a sudoers task", shell.Join("rm", "-f", "--", f.Path))
}

// grantsOthers returns the principals (user names, %groups, aliases, ALL)
// that the rules of a sudoers file grant rights to and that are not in
// allowed, in order of appearance. Defaults, aliases' definitions and
// includes grant nothing by themselves.
func grantsOthers(b []byte, allowed map[string]bool) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == '@' {
			continue
		}
		first, _, _ := strings.Cut(l, " ")
		if strings.HasPrefix(first, "Defaults") || strings.HasSuffix(first, "_Alias") {
			continue
		}
		spec, _, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		// The user list: the first word, and each word joined to it by a
		// comma ("gina, hank ALL=…").
		words := strings.Fields(spec)
		if len(words) == 0 {
			continue
		}
		list := words[0]
		for _, w := range words[1:] {
			if !strings.HasSuffix(list, ",") && !strings.HasPrefix(w, ",") {
				break
			}
			list += w
		}
		for _, p := range strings.Split(list, ",") {
			p = strings.TrimSpace(p)
			if p == "" || p[0] == '!' || allowed[p] || slices.Contains(out, p) {
				continue
			}
			out = append(out, p)
		}
	}
	return out
}

// sudoInstallFix validates src and installs it as dst, root:root 0440,
// removing src when it is another file.
func sudoInstallFix(src, dst string, remove bool) string {
	s := shell.Join("visudo", "-cf", src) + " && " + shell.Join("install", "-o", "root", "-g", "root", "-m", "0440", src, dst)
	if remove {
		s += " && " + shell.Join("rm", "-f", "--", src)
	}
	return s
}

// ignoredFixName is a name sudo reads for an ignored sudoers.d file.
func ignoredFixName(name string) string {
	n := strings.TrimRight(name, "~")
	if i := strings.IndexByte(n, '.'); i > 0 {
		n = n[:i]
	}
	n = strings.ReplaceAll(n, ".", "_")
	if n == "" {
		n = "breakglass"
	}
	return n
}

// sudoUnsafe says why sudo refuses a sudoers file (sudo_secure_path):
// owner not root, world-writable, or group-writable by a group other than
// root.
func sudoUnsafe(st tasks.PathStat) string {
	switch {
	case st.UID != 0:
		return fmt.Sprintf("owned by uid %d, not root", st.UID)
	case st.Perm()&0o002 != 0:
		return "world-writable"
	case st.Perm()&0o020 != 0 && st.GID != 0:
		return fmt.Sprintf("writable by group gid %d", st.GID)
	}
	return ""
}

// hasRules reports whether a sudoers file holds anything but comments
// (#include and #includedir are directives, not comments).
func hasRules(b []byte) bool {
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if l[0] != '#' || strings.HasPrefix(l, "#include") {
			return true
		}
	}
	return false
}

// mentions returns the non-comment lines of a sudoers file that name
// user as a word.
func mentions(b []byte, user string) []int {
	var out []int
	for i, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' {
			continue
		}
		for _, w := range strings.FieldsFunc(l, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') }) {
			if w == user {
				out = append(out, i+1)
				break
			}
		}
	}
	return out
}

// penalties reports OpenSSH ≥ 9.8's PerSourcePenalties when this run's
// address is not exempt: after a few refused logins from here (one user
// locked out, a check repeated), sshd closes every connection from this
// address before authentication for a while, and healthy users look
// locked out. sshd -T of older versions prints no such keyword.
func (c *checker) penalties(users []auditedUser) {
	for _, u := range users {
		cfg := &u.uf.SSHD
		if u.uf.SSHDKnown() != nil {
			continue
		}
		pen := cfg.Get("persourcepenalties")
		if pen == "" || pen == "no" {
			return
		}
		client := u.uf.Conn.Client
		exempt := cfg.Get("persourcepenaltyexemptlist")
		if engine.PenaltyExempt(client, exempt) {
			return
		}
		list := exempt
		if list == "" || list == "none" {
			list = "empty"
		}
		c.add("", "penalty-not-exempt", SeverityRisk, "",
			fmt.Sprintf("sshd penalises refused logins per source address (PerSourcePenalties %s) and this controller's address %s is not in PerSourcePenaltyExemptList (%s): once a locked-out user's key is refused a few times from here, sshd closes every connection from %s before authentication, and healthy users look locked out or the host unreachable", pen, client, list, client),
			fmt.Sprintf("exempt the controller, e.g. breakglass apply with sshd: {settings: {PerSourcePenaltyExemptList: %s}}", shell.Quote(client)))
		return
	}
}

// socketPorts reports where sshd's configuration says sshd listens but
// the socket unit does not, under socket activation: ssh.socket's
// ListenStream decides where sshd listens, and what sshd_config says
// (Port, ListenAddress; sshd -T prints both as listenaddress ADDR:PORT)
// takes effect only when something rewrites the socket from it (Ubuntu's
// generator, at boot or daemon-reload), so the listener changes then.
func (c *checker) socketPorts(users []auditedUser) {
	if !c.h.SocketActivated {
		return
	}
	socket := socketListens(c.h.SocketListen)
	for _, u := range users {
		if u.uf.SSHDKnown() != nil {
			continue
		}
		listens := u.uf.SSHD.Values["listenaddress"]
		if len(listens) == 0 {
			// No listenaddress printed: judge the ports alone.
			for _, p := range u.uf.SSHD.Values["port"] {
				listens = append(listens, "[::]:"+p)
			}
		}
		var missing []string
		for _, l := range listens {
			if !socketCovers(socket, l) {
				missing = append(missing, l)
			}
		}
		if len(missing) == 0 {
			return
		}
		evidence := setting(c.conf, "port", u.uf.SSHD.Values["port"]...)
		if len(u.uf.SSHD.Values["listenaddress"]) > 0 {
			evidence += "; " + setting(c.conf, "listenaddress", u.uf.SSHD.Values["listenaddress"]...)
		}
		c.add("", "socket-overrides-port", SeverityRisk, "ssh.socket",
			fmt.Sprintf("sshd is socket-activated (ssh.socket, ssh.service not enabled) and the socket listens on %s, but sshd's configuration says it listens on %s (%s): the socket decides, so sshd_config's Port and ListenAddress do nothing now, and the listener changes when the socket is rewritten from them (at boot or daemon-reload on Ubuntu)",
				strings.TrimSpace(c.h.SocketListen), strings.Join(missing, ", "), evidence),
			"make them agree: set ListenStream in a ssh.socket drop-in to the addresses and port sshd_config names (or the other way round), then systemctl daemon-reload && systemctl restart ssh.socket")
		return
	}
}

// socketListens reads the stream addresses of a socket unit's Listen
// property ("127.0.0.5:22 (Stream) [::]:2222 (Stream)").
func socketListens(listen string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, f := range strings.Fields(listen) {
		if ap, err := netip.ParseAddrPort(f); err == nil {
			out = append(out, ap)
		}
	}
	return out
}

// socketCovers reports whether a socket listening on socket accepts what
// sshd would listen on at listen (sshd -T's ADDR:PORT): the same port,
// and the same address or a wildcard one. The IPv6 wildcard takes IPv4
// too, as Linux binds it by default (BindIPv6Only=both).
func socketCovers(socket []netip.AddrPort, listen string) bool {
	l, err := netip.ParseAddrPort(listen)
	if err != nil {
		return true // nothing to judge
	}
	for _, s := range socket {
		if s.Port() != l.Port() {
			continue
		}
		switch {
		case s.Addr() == l.Addr().Unmap():
			return true
		case s.Addr().IsUnspecified() && s.Addr().Is6():
			return true
		case s.Addr().IsUnspecified() && l.Addr().Unmap().Is4():
			return true
		}
	}
	return false
}
