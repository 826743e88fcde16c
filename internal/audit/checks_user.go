package audit

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/sshdconf"
	"github.com/breakglass/breakglass/tasks"
)

// user runs the checks of one user.
func (c *checker) user(u auditedUser) {
	uf := u.uf
	if !uf.Exists {
		if u.expected {
			c.add(uf.Name, "user-missing", SeverityLockout, "",
				fmt.Sprintf("user %s does not exist on this host", uf.Name),
				shell.Join("useradd", "-m", "-s", "/bin/bash", "-p", "*", uf.Name)+"  # key-only; then install its key (or: breakglass apply)")
		}
		return
	}
	known := uf.SSHDKnown() == nil
	if uf.SSHDErr != "" && c.h.SSHDTestRC == 0 {
		c.add(uf.Name, "config-invalid", SeverityRisk, "",
			fmt.Sprintf("sshd -T for %s from %s fails although sshd -t passes: %s. Checks that need sshd's effective configuration were skipped for %s", uf.Name, uf.Conn.Client, uf.SSHDErr, uf.Name),
			"sshd -T -C "+shell.Quote(fmt.Sprintf("user=%s,host=%s,addr=%s,laddr=%s,lport=%d", uf.Name, uf.Conn.Client, uf.Conn.Client, uf.Conn.Server, uf.Conn.Port))+"  # fix what it reports")
	}
	// Unknown only when sshd's configuration does not load (config-invalid
	// says so): then judge as Debian's default, UsePAM yes.
	usePAM := !known || uf.SSHD.UsePAM
	c.account(u, usePAM)
	c.loginShell(u, known)
	c.home(u, known)
	if known {
		c.sshdGate(u)
		c.session(u)
		c.nologin(u, usePAM)
		if usePAM {
			c.pamAccess(u)
			c.pamRefusals(u)
		}
		c.keyFiles(u)
	}
	c.selinux(u)
	if u.sudo && uf.UID != 0 {
		c.sudo(u) // root needs no sudo; a user the playbook gives no sudo is not judged by sudo
	}
}

// reload is the command that makes the running sshd read its
// configuration again, after checking it.
func (c *checker) reload() string {
	pf := c.h.PidFile
	if pf == "" {
		pf = "/run/sshd.pid"
	}
	return "sshd -t && kill -HUP \"$(cat " + shell.Quote(pf) + ")\""
}

// dropIn is where a fix adds a global sshd setting: a drop-in read before
// the main file's own lines (Debian's sshd_config includes
// sshd_config.d/*.conf on its first line).
const dropIn = "/etc/ssh/sshd_config.d/00-breakglass.conf"

// ---------------------------------------------------------------- account

// acctStatus is what pam_unix's account stage answers (Linux-PAM 1.5
// passverify.c check_shadow_expiry).
type acctStatus int

const (
	acctOK         acctStatus = iota
	acctExpired               // PAM_ACCT_EXPIRED
	acctChangeNow             // PAM_NEW_AUTHTOK_REQD: last change 0 or the password aged out
	acctInactive              // PAM_AUTHTOK_EXPIRED: aged out longer than the inactive period
	acctChangeZero            // PAM_NEW_AUTHTOK_REQD because the last change day is 0
)

// pamAccount mirrors check_shadow_expiry; -1 is an empty field.
func pamAccount(sp *tasks.Shadow, today int64) acctStatus {
	switch {
	case sp.Expire != -1 && today >= sp.Expire:
		return acctExpired
	case sp.LastChange == 0:
		return acctChangeZero
	case today < sp.LastChange:
		return acctOK
	case sp.Max != -1 && sp.Inactive != -1 && today-sp.LastChange > sp.Max && today-sp.LastChange > sp.Inactive && today-sp.LastChange > sp.Max+sp.Inactive:
		return acctInactive
	case sp.Max != -1 && today-sp.LastChange > sp.Max:
		return acctChangeNow
	}
	return acctOK
}

// shadowFields formats the shadow fields that matter, never the hash.
func shadowFields(sp *tasks.Shadow, today int64) string {
	f := func(v int64) string {
		if v == -1 {
			return "empty"
		}
		return strconv.FormatInt(v, 10)
	}
	return fmt.Sprintf("shadow: password field %s, last change %s, max %s, inactive %s, expire %s; today is day %d (%s)",
		sp.Password, f(sp.LastChange), f(sp.Max), f(sp.Inactive), f(sp.Expire), today, day(today))
}

func (c *checker) account(u auditedUser, usePAM bool) {
	uf, sp := u.uf, u.uf.Shadow
	if sp == nil {
		return
	}
	name, today := uf.Name, uf.Today
	pam := setting(c.conf, "usepam", yesNo(usePAM))
	if !usePAM && sp.Password == tasks.PasswordLocked {
		c.add(name, "account-locked", SeverityLockout, "/etc/shadow",
			fmt.Sprintf("the password field of %s starts with '!' (locked: useradd's default, passwd -l) and %s: sshd refuses the account before trying any key (%s)", name, pam, shadowFields(sp, today)),
			shell.Join("usermod", "-p", "*", name)+"  # key-only; to keep a password instead: "+shell.Join("usermod", "-U", name))
		c.act("usermod", "-p", "*", name)
	}
	// sshd's own check (UsePAM no) counts the expiry day as still valid;
	// pam_unix does not.
	expired := sp.Expire != -1 && (today > sp.Expire || usePAM && today >= sp.Expire)
	switch {
	case expired:
		c.add(name, "account-expired", SeverityLockout, "/etc/shadow",
			fmt.Sprintf("account %s expired on %s (%s)", name, day(sp.Expire), shadowFields(sp, today)),
			shell.Join("chage", "-E", "-1", name))
		c.act("chage", "-E", "-1", name)
	case sp.Expire != -1:
		c.add(name, "account-expired", SeverityRisk, "/etc/shadow",
			fmt.Sprintf("account %s will expire on %s, and then no login works (%s)", name, day(sp.Expire), shadowFields(sp, today)),
			shell.Join("chage", "-E", "-1", name))
		c.act("chage", "-E", "-1", name)
	}
	if !usePAM || expired {
		// Without PAM, sshd checks neither password ageing nor
		// inactivity for key logins.
		return
	}
	today8 := `"$(date +%F)"`
	switch pamAccount(sp, today) {
	case acctInactive:
		c.add(name, "password-inactive", SeverityLockout, "/etc/shadow",
			fmt.Sprintf("the password of %s aged out on %s and the account was disabled %d days later, on %s: PAM's account stage refuses every login (%s)",
				name, day(sp.LastChange+sp.Max), sp.Inactive, day(sp.LastChange+sp.Max+sp.Inactive), shadowFields(sp, today)),
			"chage -d "+today8+" -M -1 -I -1 "+shell.Quote(name))
		c.act("chage", "-d", day(today), "-M", "-1", "-I", "-1", name)
	case acctChangeZero, acctChangeNow:
		why := "the last password change day is 0, which forces a change"
		if sp.LastChange != 0 {
			why = fmt.Sprintf("the password aged out on %s (last change %s + max %d days)", day(sp.LastChange+sp.Max), day(sp.LastChange), sp.Max)
		}
		c.add(name, "password-change-required", SeverityLockout, "/etc/shadow",
			fmt.Sprintf("%s: sshd logs \"Accepted publickey\", then the session ends with \"Password change required but no TTY available\" (a key-only account cannot change it at all) (%s)", why, shadowFields(sp, today)),
			"chage -d "+today8+" -M -1 "+shell.Quote(name))
		c.act("chage", "-d", day(today), "-M", "-1", name)
	default:
		if u.expected && sp.KeyOnly() && sp.Ageing() && sp.LastChange > 0 {
			c.add(name, "password-change-required", SeverityRisk, "/etc/shadow",
				fmt.Sprintf("%s has no password but password ageing: on %s PAM will demand a password change no key login can make (%s)", name, day(sp.LastChange+sp.Max), shadowFields(sp, today)),
				shell.Join("chage", "-M", "-1", name))
			c.act("chage", "-M", "-1", name)
		}
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// ---------------------------------------------------------------- shell and home

func (c *checker) loginShell(u auditedUser, known bool) {
	uf := u.uf
	if known {
		if ch := uf.SSHD.Get("chrootdirectory"); ch != "" && ch != "none" {
			return // sshd does not check the shell of chrooted users
		}
	}
	sh := uf.Shell
	if sh == "" {
		sh = "/bin/sh"
	}
	st := uf.ShellStat
	fix := shell.Join("usermod", "-s", "/bin/bash", uf.Name)
	switch {
	case !st.Exists:
		c.add(uf.Name, "shell-missing", SeverityLockout, sh,
			fmt.Sprintf("login shell %s of %s does not exist: sshd refuses the user before trying any key (\"shell %s does not exist\")", sh, uf.Name, sh), fix)
	case !st.Executable():
		c.add(uf.Name, "shell-missing", SeverityLockout, sh,
			fmt.Sprintf("login shell %s is not an executable file: sshd refuses the user before trying any key", describe(st, c.h.UIDNames)), fix)
	case u.expected && noLoginShell(sh):
		c.add(uf.Name, "shell-missing", SeverityLockout, sh,
			fmt.Sprintf("login shell of %s is %s: sshd accepts the key, then the session ends at once", uf.Name, sh), fix)
	default:
		return
	}
	c.act("usermod", "-s", "/bin/bash", uf.Name)
}

// home reports a missing home directory. Without one, every home-relative
// AuthorizedKeysFile is missing too; a key file elsewhere still works
// (sshd logs "Could not chdir to home directory" and starts in /).
func (c *checker) home(u auditedUser, known bool) {
	uf := u.uf
	if uf.HomeStat.Exists || uf.Home == "" {
		return
	}
	outside := false
	if known {
		for i := range uf.KeyFiles {
			kf := &uf.KeyFiles[i]
			if kf.Path != "" && !strings.HasPrefix(kf.Path, strings.TrimSuffix(uf.Home, "/")+"/") && kf.File().IsRegular() {
				outside = true
			}
		}
	}
	sev := SeverityLockout
	what := "every home-relative AuthorizedKeysFile is missing with it, so no key is found"
	if outside {
		sev, what = SeverityRisk, "keys outside home still work, but the session starts in / and anything kept in home is gone"
	}
	group := strconv.Itoa(uf.GID)
	if len(uf.Groups) > 0 {
		group = uf.Groups[0]
	}
	c.add(uf.Name, "home-missing", sev, uf.Home,
		fmt.Sprintf("home directory %s of %s (passwd) does not exist: %s", uf.Home, uf.Name, what),
		shell.Join("install", "-d", "-m", "0700", "-o", uf.Name, "-g", group, uf.Home))
	at := uf.Home
	if uf.HomeReal != "" {
		at = uf.HomeReal
	}
	c.act("bg_mkdir", "0700", at, uf.Name+":")
}

// ---------------------------------------------------------------- sshd

// sshdGate: the checks sshd makes on the user and its methods before a key
// is accepted.
func (c *checker) sshdGate(u auditedUser) {
	uf, cfg := u.uf, &u.uf.SSHD
	name := uf.Name
	ip := uf.Conn.Client
	useDNS := cfg.Get("usedns") == "yes"
	if v, refused := cfg.Refuses(name, uf.Groups, ip, ip); refused {
		kw := strings.ToLower(v.Keyword)
		ev := evidence(c.conf, kw, cfg.Values[kw])
		if ev == "" {
			ev = "no file line found"
		}
		detail := fmt.Sprintf("sshd refuses %s from %s before trying any key: %s %s [%s] (logged as \"not allowed because …\")", name, ip, name, v.Why, ev)
		if useDNS {
			detail += "; UseDNS yes: sshd also matches host patterns against the client's name, which was not resolved here"
		}
		var fix string
		switch {
		case v.Keyword == "AllowUsers" && c.dropInRead:
			fix = fmt.Sprintf("echo %s >> %s && %s", shell.Quote("AllowUsers "+name), dropIn, c.reload())
		case v.Keyword == "AllowGroups" && c.dropInRead:
			g := strconv.Itoa(uf.GID)
			if len(uf.Groups) > 0 {
				g = uf.Groups[0]
			}
			fix = fmt.Sprintf("echo %s >> %s && %s", shell.Quote("AllowGroups "+g), dropIn, c.reload())
		case v.Keyword == "AllowUsers" || v.Keyword == "AllowGroups":
			fix = fmt.Sprintf("add %s to %s (%s), then %s", name, v.Keyword, ev, c.reload())
		default:
			fix = fmt.Sprintf("remove the %s pattern that matches %s (%s), then %s", v.Keyword, name, ev, c.reload())
		}
		c.add(name, "user-filtered", SeverityLockout, firstFile(c.conf, kw, cfg.Values[kw]), detail, fix)
	}
	if uf.UID == 0 {
		switch p := cfg.PermitRootLogin; p {
		case "no", "forced-commands-only":
			c.add(name, "root-refused", SeverityLockout, firstFile(c.conf, "permitrootlogin", []string{p}),
				fmt.Sprintf("%s has uid 0 and %s: sshd refuses root logins with a key (better: a non-root break-glass user with sudo)", name, setting(c.conf, "permitrootlogin", p)),
				c.commentOut("permitrootlogin", p)+"  # sshd's default, prohibit-password, lets keys in")
		}
	}
	if !cfg.PubkeyAuthentication {
		c.add(name, "pubkey-disabled", SeverityLockout, firstFile(c.conf, "pubkeyauthentication", []string{"no"}),
			fmt.Sprintf("%s for %s from %s: no key is even tried", setting(c.conf, "pubkeyauthentication", "no"), name, ip),
			c.commentOut("pubkeyauthentication", "no"))
	}
	if am := cfg.AuthenticationMethods; am != "" && am != "any" {
		keyAlone, withKey := false, ""
		for _, alt := range strings.Fields(am) {
			ms := strings.Split(alt, ",")
			if len(ms) == 1 && ms[0] == "publickey" {
				keyAlone = true
			}
			if slices.Contains(ms, "publickey") && withKey == "" {
				withKey = alt
			}
		}
		if !keyAlone {
			why := "publickey is in none of its lists"
			if withKey != "" {
				why = "a key alone is not enough: " + withKey + " (\"Partial publickey\")"
			}
			c.add(name, "second-factor-required", SeverityLockout, firstFile(c.conf, "authenticationmethods", []string{am}),
				fmt.Sprintf("%s: %s", setting(c.conf, "authenticationmethods", am), why),
				fmt.Sprintf("printf %s >> %s && %s  # a Match exemption for %s, at the end of the main file", shell.Quote(`\nMatch User `+name+`\n\tAuthenticationMethods publickey\n`), mainSSHDConfig, c.reload(), name))
		}
	}
	if n := cfg.MaxAuthTries; n > 0 && n < 6 || cfg.Get("maxauthtries") == "0" {
		sev := SeverityInfo
		if n <= 1 {
			sev = SeverityRisk
		}
		c.add(name, "max-auth-tries", sev, firstFile(c.conf, "maxauthtries", []string{strconv.Itoa(n)}),
			fmt.Sprintf("%s: every key the client offers counts; a client that offers %d other key(s) (an ssh-agent) first is refused. Log in with -o IdentitiesOnly=yes -i KEY", setting(c.conf, "maxauthtries", strconv.Itoa(n)), n),
			"offer only the break-glass key: ssh -o IdentitiesOnly=yes -i KEY USER@HOST (or raise MaxAuthTries)")
	}
}

// firstFile is the file the effective value of keyword comes from, or "".
func firstFile(lines []sshdconf.Line, keyword string, effective []string) string {
	if s := sshdconf.Sources(lines, keyword, effective); len(s) > 0 {
		return s[0].File
	}
	return ""
}

// commentOut is the fix that comments out the line setting keyword to
// value, then reloads.
func (c *checker) commentOut(keyword, value string) string {
	s := sshdconf.Sources(c.conf, keyword, []string{value})
	if len(s) != 1 {
		return fmt.Sprintf("remove every %s %s line of the sshd configuration, then %s", sshdconf.Spelling(keyword), value, c.reload())
	}
	return fmt.Sprintf("sed -i %s %s && %s", shell.Quote(strconv.Itoa(s[0].Line)+`s/^/# breakglass: /`), shell.Quote(s[0].File), c.reload())
}

// nologin: /run/nologin or /etc/nologin blocks everyone but root.
func (c *checker) nologin(u auditedUser, usePAM bool) {
	uf := u.uf
	if uf.UID == 0 || len(c.h.Nologin) == 0 {
		return
	}
	var files []string
	via := "sshd (UsePAM no)"
	if usePAM {
		if !c.pamKnown {
			return
		}
		es := enforcing(c.sshdPAM, "account", "pam_nologin.so")
		if len(es) == 0 {
			return
		}
		via = "pam_nologin (" + es[0].String() + ")"
		files = []string{"/run/nologin", "/var/run/nologin", "/etc/nologin"}
		for _, a := range es[0].Args {
			if f, ok := strings.CutPrefix(a, "file="); ok {
				files = []string{f}
			}
		}
	} else {
		files = []string{"/etc/nologin"}
	}
	for _, f := range files {
		if slices.Contains(c.h.Nologin, f) {
			c.add(uf.Name, "nologin-file", SeverityLockout, f,
				fmt.Sprintf("%s exists: %s refuses every user but root", f, via),
				shell.Join("rm", "-f", "--", f))
			c.act("rm", "-f", "--", f)
			return
		}
	}
}

// pamAccess: pam_access in the sshd stack, and the first access.conf rule
// that matches the user and the client denies.
func (c *checker) pamAccess(u auditedUser) {
	if !c.pamKnown {
		return
	}
	uf := u.uf
	for _, e := range enforcing(c.sshdPAM, "account", "pam_access.so") {
		files := slices.Clone(c.h.AccessOrder)
		sep := ":"
		w := accessWho{User: uf.Name, Groups: uf.Groups, From: uf.Conn.Client}
		explicit := false
		for _, a := range e.Args {
			switch {
			case strings.HasPrefix(a, "accessfile="):
				if !explicit {
					files = nil
				}
				explicit = true
				files = append(files, strings.TrimPrefix(a, "accessfile="))
			case strings.HasPrefix(a, "fieldsep="):
				if s := strings.TrimPrefix(a, "fieldsep="); s != "" {
					sep = s[:1]
				}
			case a == "nodefgroup":
				w.NoDefGroup = true
			}
		}
		if !explicit {
			files = slices.DeleteFunc(files, func(f string) bool {
				return f != "/etc/security/access.conf" && !strings.HasPrefix(f, "/etc/security/access.d/")
			})
		}
		var rules []accessRule
		for _, f := range files {
			rules = append(rules, parseAccessRules(f, c.h.AccessConf[f], sep)...)
		}
		if r, ok := accessVerdict(rules, w); !ok {
			c.add(uf.Name, "pam-access", SeverityLockout, r.File,
				fmt.Sprintf("pam_access (%s) denies %s from %s: the first matching rule is %s:%d: %s", e, uf.Name, w.From, r.File, r.Line, r.Text),
				fmt.Sprintf("sed -i %s %s", shell.Quote(strconv.Itoa(r.Line)+"i +:"+uf.Name+":ALL"), shell.Quote(r.File)))
			return
		}
	}
}

// ---------------------------------------------------------------- key files

// keyProblem is one reason a key file or key is not usable.
type keyProblem struct {
	id, path, detail, fix string
	action                []string // the fix as a typed action, when it is exact
	blocks                bool     // makes keys unusable (StrictModes off: it does not, yet)
	severity              string   // fixed severity, "" to judge by blocks and the other keys
}

// keyFiles: each effective AuthorizedKeysFile as sshd reads it.
func (c *checker) keyFiles(u auditedUser) {
	uf, cfg := u.uf, &u.uf.SSHD
	name := uf.Name
	names := c.h.UIDNames
	ke := keyEnv{
		Accepted: cfg.PubkeyAcceptedAlgorithms, ClientIP: uf.Conn.Client, UseDNS: cfg.Get("usedns") == "yes",
		Now: c.h.Now, TZOffset: parseTZ(c.h.TZ), Revoked: c.revokedBy(cfg.Get("revokedkeys")),
		CommandFails: func(cmd string) string { return c.commandFails(name, cmd) },
	}
	ke.RequiredRSA, _ = strconv.Atoi(cfg.Get("requiredrsasize"))
	var (
		problems            []keyProblem
		valid, usable, cmts int
		states              []string
		seen                = map[[3]string]bool{}
	)
	add := func(p keyProblem) {
		// One finding per problem and path, but a component both owned
		// by someone else and writable gets both fixes (a finding's
		// action is one command, and recover runs each).
		k := [3]string{p.id, p.path}
		if len(p.action) > 0 {
			k[2] = p.action[0]
		}
		if !seen[k] {
			seen[k] = true
			problems = append(problems, p)
		}
	}
	if l := uf.HomeLink; l != nil {
		add(keyProblem{id: "symlink-in-path", path: l.Path, severity: SeverityRisk,
			detail: fmt.Sprintf("the home directory %s of %s leads through %s, a symbolic link to %s in a directory users can change: breakglass does not follow it, so it cannot judge or repair what sshd reads there", uf.Home, name, l.Path, l.Target),
			fix:    fmt.Sprintf("check where %s points; if that is meant, make it a directory owned by root in a directory only root can change, or set %s's home to the real directory (usermod -d)", l.Path, name)})
	}
	for i := range uf.KeyFiles {
		kf := &uf.KeyFiles[i]
		if kf.Link != "" {
			states = append(states, fmt.Sprintf("%s leads through the symbolic link %s (not followed)", kf.Path, kf.Link))
			valid++ // unknown: sshd may well find keys through it
			add(keyProblem{id: "symlink-in-path", path: kf.Link, severity: SeverityRisk,
				detail: fmt.Sprintf("%s, on the way to the key file %s of %s, is a symbolic link to %s in a directory users can change: breakglass does not follow it, so it cannot judge or repair what sshd reads there, and a link planted by the user could point root's writes anywhere", kf.Link, kf.Path, name, kf.LinkTarget),
				fix:    fmt.Sprintf("check where %s points; if the keys belong there, replace the link with the file or directory itself (owned by %s, not writable by group or others), e.g. with breakglass apply (authorized_key)", kf.Link, name)})
			continue
		}
		if kf.TooLarge > 0 {
			states = append(states, fmt.Sprintf("%s is %d bytes (not read)", kf.Path, kf.TooLarge))
			valid++ // unknown
			// sshd judges its path all the same.
			c.strictModes(uf, kf, add)
			add(keyProblem{id: "key-file-too-large", path: kf.Real, severity: SeverityRisk,
				detail: fmt.Sprintf("%s is %d bytes, more than the %d breakglass reads of a key file: its keys were not checked", kf.Real, kf.TooLarge, tasks.KeyFileMax),
				fix:    fmt.Sprintf("look at what fills %s; an authorized_keys file holds one short line per key", kf.Real)})
			continue
		}
		if kf.Real == "" {
			states = append(states, fmt.Sprintf("%s cannot be expanded (sshd skips it)", kf.Pattern))
			continue
		}
		st := kf.File()
		shown := kf.Path
		if kf.Real != kf.Path {
			shown += " (→ " + kf.Real + ")"
		}
		switch {
		case !st.Exists:
			states = append(states, shown+" does not exist")
			continue
		case !st.IsRegular():
			states = append(states, shown+" is not a regular file")
			add(keyProblem{id: "not-regular", path: kf.Real, blocks: true,
				detail: fmt.Sprintf("%s is not a regular file: sshd reads no key from it", describe(st, names)),
				fix:    fmt.Sprintf("%s  # then install the keys in %s", shell.Join("mv", "--", kf.Real, kf.Real+".not-a-file"), kf.Real)})
			continue
		}
		v, refused := c.strictModes(uf, kf, add)
		fileOK := !refused
		// Readability as the user, once the ownership repairs above are
		// made: a file owned by someone else is unreadable too, and the
		// chown fixes both.
		repaired := kf.Walk
		if cfg.StrictModes && v != nil {
			repaired = v.Repaired(kf, uf)
		}
		if p, ok := readable(uf, repaired); !ok {
			fileOK = false
			fix, action := accessFix(uf, p, p.Path == kf.Real)
			add(keyProblem{id: "unreadable", path: p.Path, blocks: true,
				detail: fmt.Sprintf("sshd opens %s as %s, who cannot %s %s", kf.Real, name, map[bool]string{true: "read", false: "traverse"}[p.Path == kf.Real], describe(p, names)),
				fix:    fix, action: action})
		}
		if kf.Unreadable {
			states = append(states, shown+" cannot be read as "+name)
			valid++ // unknown: the findings above say why sshd cannot read it
			continue
		}
		keys, parsed, opts, commented := keyFileLines(kf.Content)
		cmts += commented
		valid += len(keys)
		states = append(states, fmt.Sprintf("%s: %d key(s)", shown, len(keys)))
		for i := range keys {
			judgeKey(&keys[i], parsed[i], opts[i], ke, kf.Real)
			if keys[i].Problem != "" {
				add(keyProblem{id: keys[i].ID, path: kf.Real, blocks: true,
					detail: fmt.Sprintf("%s line %d (%s %s): %s", kf.Real, keys[i].Line, keys[i].Type, keys[i].Comment, keys[i].Problem),
					fix:    keys[i].Fix})
				continue
			}
			if fileOK {
				usable++
			}
		}
	}
	command := cfg.AuthorizedKeysCommand != "" && cfg.AuthorizedKeysCommand != "none"
	for _, p := range problems {
		sev := SeverityRisk
		switch {
		case p.severity != "":
			sev = p.severity
		case !p.blocks:
			sev = SeverityInfo
			p.detail += "; StrictModes is off, so sshd accepts it now, but not once StrictModes is on again (the default)"
		case usable > 0:
			p.detail += "; another key still works"
		case command:
			p.detail += "; keys may still come from AuthorizedKeysCommand " + cfg.AuthorizedKeysCommand
		default:
			sev = SeverityLockout
		}
		c.add(name, p.id, sev, p.path, p.detail, p.fix)
		if p.action != nil {
			c.act(p.action...)
		}
	}
	if valid > 0 || command || !uf.HomeStat.Exists {
		return
	}
	akf := setting(c.conf, "authorizedkeysfile", cfg.AuthorizedKeysFile...)
	detail := fmt.Sprintf("no key line in any file sshd reads for %s: %s; %s", name, akf, strings.Join(states, "; "))
	if cmts > 0 {
		detail += fmt.Sprintf("; %d key(s) are commented out", cmts)
	}
	target := ""
	for _, kf := range uf.KeyFiles {
		if kf.Real != "" {
			target = kf.Path
			break
		}
	}
	def := path.Join(uf.Home, ".ssh/authorized_keys")
	effectiveDefault := slices.ContainsFunc(uf.KeyFiles, func(k tasks.KeyFile) bool { return k.Path == def })
	fix := fmt.Sprintf("add %s's public key to %s (owner %s, mode 0600), e.g. with breakglass apply (authorized_key)", name, target, name)
	if u.x.HomeKeys > 0 && !effectiveDefault && target != "" {
		detail += fmt.Sprintf("; %s holds %d key line(s), but sshd does not read it", def, u.x.HomeKeys)
		fix = shell.Join("install", "-D", "-o", name, "-m", "0600", def, target)
	}
	if target == "" {
		fix = fmt.Sprintf("set AuthorizedKeysFile to .ssh/authorized_keys for %s, then add its key", name)
	}
	c.add(name, "key-absent", SeverityLockout, target, detail, fix)
}

// strictModes adds the unsafe-path problems of key file kf (a regular
// file) from the one StrictModes judgement (tasks.UserFacts.StrictModes),
// each with its typed fix, and reports whether sshd, with StrictModes on
// as configured, ignores the file. v is nil when the walk cannot be
// judged (not reached for a regular file: its parents are directories).
func (c *checker) strictModes(uf *tasks.UserFacts, kf *tasks.KeyFile, add func(keyProblem)) (v *tasks.StrictModesVerdict, refused bool) {
	v, err := uf.StrictModes(kf, c.debianGroups())
	if err != nil {
		return nil, false
	}
	strict, name, names := uf.SSHD.StrictModes, uf.Name, c.h.UIDNames
	where := "inside home"
	if !v.InHome {
		where = "on the way to / (the file is outside home)"
	}
	for _, comp := range v.Walk {
		own, mod := comp.Fix(name)
		if own != nil {
			add(keyProblem{id: "unsafe-path", path: comp.Path, blocks: strict,
				detail: fmt.Sprintf("%s, which StrictModes checks for %s (%s): sshd accepts only %s or root as owner, and ignores %s (\"bad ownership or modes\")", describe(comp.PathStat, names), kf.Real, where, name, kf.Real),
				fix:    own.Text(), action: own.Argv()})
		}
		if !comp.Writable() {
			continue
		}
		p := keyProblem{id: "unsafe-path", path: comp.Path, blocks: strict,
			detail: fmt.Sprintf("%s is writable by group or others, which StrictModes checks for %s (%s): sshd ignores %s (\"bad ownership or modes\")", describe(comp.PathStat, names), kf.Real, where, kf.Real)}
		if mod != nil {
			p.fix, p.action = mod.Text(), mod.Argv()
		} else { // a shared sticky directory: no chmod
			p.fix = fmt.Sprintf("move %s out of the shared sticky directory %s (and set AuthorizedKeysFile accordingly)", kf.Real, comp.Path)
		}
		if comp.DebianAccepted && strict {
			// Debian's sshd accepts it now: a risk, not a lockout.
			p.severity = SeverityRisk
			p.detail = fmt.Sprintf("%s is writable by its group, which StrictModes checks for %s (%s); this host's sshd (Debian's build: %s) accepts group-write while the group's only member is %s, but upstream OpenSSH and RHEL refuse it (\"bad ownership or modes\"), and so will this sshd once the group gains another member", describe(comp.PathStat, names), kf.Real, where, c.h.SSHDVersion, name)
		}
		add(p)
	}
	return v, strict && v.Refused()
}

// readable reports whether uf can traverse every directory of walk (the
// key file, then each parent up to /) and read the file; when not, it
// returns the first component, from /, that stops it. ACLs are not
// considered.
func readable(uf *tasks.UserFacts, walk []tasks.PathStat) (tasks.PathStat, bool) {
	if uf.UID == 0 {
		return tasks.PathStat{}, true
	}
	for j := len(walk) - 1; j >= 0; j-- {
		st := walk[j]
		if !st.Exists {
			return tasks.PathStat{}, true
		}
		bit := uint32(0o1)
		if j == 0 {
			bit = 0o4
		}
		if !permits(uf, st, bit) {
			return st, false
		}
	}
	return tasks.PathStat{}, true
}

// permits applies the owner, group, other classes (the first that fits
// decides) to permission bit (4 read, 1 execute).
func permits(uf *tasks.UserFacts, st tasks.PathStat, bit uint32) bool {
	perm := st.Perm()
	switch {
	case st.UID == uf.UID:
		return perm&(bit<<6) != 0
	case slices.Contains(uf.GIDs, st.GID) || st.GID == uf.GID:
		return perm&(bit<<3) != 0
	}
	return perm&bit != 0
}

// accessFix grants uf read (file) or search (directory) on st through the
// class that applies to it: the command, and the same as a typed action.
func accessFix(uf *tasks.UserFacts, st tasks.PathStat, file bool) (string, []string) {
	who := "o"
	switch {
	case st.UID == uf.UID:
		who = "u"
	case slices.Contains(uf.GIDs, st.GID) || st.GID == uf.GID:
		who = "g"
	}
	what := "x"
	if file {
		what = "r"
	}
	return shell.Join("chmod", who+"+"+what, st.Path), []string{"bg_chmod", who + "+" + what, st.Path, uf.Name}
}

// ---------------------------------------------------------------- SELinux

func (c *checker) selinux(u auditedUser) {
	if c.h.SELinux != "Enforcing" || len(u.x.SELinux) == 0 {
		return
	}
	lines := u.x.SELinux
	if len(lines) > 5 {
		lines = append(lines[:5:5], fmt.Sprintf("… %d more", len(u.x.SELinux)-5))
	}
	dir := path.Join(u.uf.Home, ".ssh")
	c.add(u.uf.Name, "selinux-label", SeverityLockout, dir,
		fmt.Sprintf("SELinux is enforcing and %s is not labelled ssh_home_t, so sshd may not read it: restorecon -nvR says %s", dir, strings.Join(lines, "; ")),
		shell.Join("restorecon", "-RF", dir))
}

// debianGroups returns what Debian's sshd reads to accept a
// group-writable path, or nil when this host's sshd is not Debian's.
func (c *checker) debianGroups() *tasks.DebianGroups {
	if !tasks.DebianSSHD(c.h.SSHDVersion) {
		return nil
	}
	return &tasks.DebianGroups{PrimaryGID: c.h.PrimaryGID, Members: c.h.GroupMembers, UIDNames: c.h.UIDNames}
}
