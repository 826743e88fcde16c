package audit

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/shell"
)

// sudoList is what `sudo -l -U U` (run as root) says.
type sudoList struct {
	Allowed  bool     // "User U may run the following commands"
	Denied   bool     // "User U is not allowed to run sudo"
	Rules    []string // "(ALL : ALL) NOPASSWD: ALL"
	Defaults []string // the matching Defaults entries
	NeedsTTY bool     // sudo refused to run: "you must have a tty"
}

func parseSudoList(out []string) sudoList {
	var s sudoList
	section := ""
	for _, l := range out {
		t := strings.TrimSpace(l)
		switch {
		case strings.Contains(l, "must have a tty"):
			s.NeedsTTY = true
		case strings.HasPrefix(l, "Matching Defaults entries for "):
			section = "defaults"
		case strings.HasPrefix(l, "User ") && strings.Contains(l, " may run the following commands"):
			s.Allowed, section = true, "rules"
		case strings.HasPrefix(l, "User ") && strings.Contains(l, " is not allowed to run sudo"):
			s.Denied, section = true, ""
		case t == "":
			section = ""
		case strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t"):
			switch section {
			case "defaults":
				for _, d := range strings.Split(t, ", ") {
					s.Defaults = append(s.Defaults, strings.TrimSpace(d))
				}
			case "rules":
				s.Rules = append(s.Rules, t)
			}
		}
	}
	return s
}

func (s sudoList) hasDefault(d string) bool {
	for _, x := range s.Defaults {
		if x == d {
			return true
		}
	}
	return false
}

// sudo: the checks for a user who must become root.
func (c *checker) sudo(u auditedUser) {
	uf, x, h := u.uf, u.x, c.h
	name := uf.Name
	if !h.SudoInstalled {
		c.add(name, "sudo-no-rule", SeverityLockout, "",
			"sudo is not installed: "+name+" cannot become root", "apt-get install sudo")
		return
	}
	if x.SudoRC < 0 {
		return
	}
	s := parseSudoList(x.SudoOut)
	if s.NeedsTTY {
		c.add(name, "sudo-requiretty", SeverityRisk, "",
			fmt.Sprintf("sudo -l -U %s as root fails: %q (Defaults requiretty): sudo without a terminal — ssh HOST sudo …, automation, breakglass itself — is refused", name, firstWith(x.SudoOut, "tty")),
			c.sudoDropIn(name, "Defaults:"+name+" !requiretty"))
		return
	}
	if !s.Allowed {
		detail := fmt.Sprintf("sudo -l -U %s: %s", name, strings.TrimSpace(firstWith(x.SudoOut, "User ")))
		fix := c.sudoDropIn(name, name+" ALL=(ALL:ALL) NOPASSWD: ALL")
		if f, lines := c.skippedSudoFile(name); f != nil {
			detail += fmt.Sprintf("; the rule at %s line %s is skipped by sudo (see %s)", f.Path, joinInts(lines), map[bool]string{true: "sudo-file-ignored", false: "sudo-file-unsafe"}[f.Dir != "" && skippedName(path.Base(f.Path))])
			if others := grantsOthers(f.Content, c.sudoers); len(others) > 0 {
				// Putting that file in force would grant them too.
				detail += fmt.Sprintf(", which also grants %s, whom the playbook gives no sudo: a drop-in of %s's own instead", strings.Join(others, ", "), name)
			} else if f.Dir != "" && skippedName(path.Base(f.Path)) {
				fix = sudoInstallFix(f.Path, path.Join(f.Dir, ignoredFixName(path.Base(f.Path))), true)
			} else {
				fix = shell.Join("chown", "root:root", f.Path) + " && " + shell.Join("chmod", "0440", f.Path)
			}
		}
		c.add(name, "sudo-no-rule", SeverityLockout, "", detail, fix)
		return
	}
	nopasswd := s.hasDefault("!authenticate")
	for _, r := range s.Rules {
		if strings.Contains(r, "NOPASSWD:") {
			nopasswd = true
		}
	}
	if !nopasswd && uf.Shadow != nil && uf.Shadow.KeyOnly() {
		c.add(name, "sudo-no-rule", SeverityLockout, "",
			fmt.Sprintf("every sudo rule of %s asks for a password (%s), and %s has none (password field %s)", name, strings.Join(s.Rules, "; "), name, uf.Shadow.Password),
			c.sudoDropIn(name, name+" ALL=(ALL:ALL) NOPASSWD: ALL"))
	}
	if x.SudoTrue > 0 && !c.has(name, SeverityLockout, isSudoID) {
		c.sudoNegated(u, s)
	}
	if s.hasDefault("requiretty") {
		c.add(name, "sudo-requiretty", SeverityRisk, "",
			fmt.Sprintf("Defaults requiretty applies to %s (sudo -l -U %s): sudo without a terminal is refused", name, name),
			c.sudoDropIn(name, "Defaults:"+name+" !requiretty"))
	}
	if sp := uf.Shadow; sp != nil {
		st := pamAccount(sp, uf.Today)
		why, fix := "", ""
		var action []string
		switch st {
		case acctExpired:
			why, fix = "the account expired on "+day(sp.Expire), shell.Join("chage", "-E", "-1", name)
			action = []string{"chage", "-E", "-1", name}
		case acctInactive:
			why, fix = "the password aged out and the account is inactive", `chage -d "$(date +%F)" -M -1 -I -1 `+shell.Quote(name)
			action = []string{"chage", "-d", day(uf.Today), "-M", "-1", "-I", "-1", name}
		case acctChangeNow, acctChangeZero:
			why, fix = "a password change is required", `chage -d "$(date +%F)" -M -1 `+shell.Quote(name)
			action = []string{"chage", "-d", day(uf.Today), "-M", "-1", name}
		}
		if why != "" {
			c.add(name, "sudo-account", SeverityLockout, "/etc/shadow",
				fmt.Sprintf("sudo runs PAM's account stage even for NOPASSWD rules, and it refuses %s: %s (%s)", name, why, shadowFields(sp, uf.Today)), fix)
			c.act(action...)
		}
	}
	c.faillock(u, nopasswd)
}

func skippedName(n string) bool { return strings.Contains(n, ".") || strings.HasSuffix(n, "~") }

// skippedSudoFile returns a sudoers file sudo skips that names user.
func (c *checker) skippedSudoFile(user string) (*SudoFile, []int) {
	for i := range c.h.SudoFiles {
		f := &c.h.SudoFiles[i]
		skipped := f.Dir != "" && skippedName(path.Base(f.Path)) || sudoUnsafe(f.Stat) != ""
		if !skipped || f.Dir != "" && engine.OwnFile(path.Base(f.Path)) {
			continue
		}
		if lines := mentions(f.Content, user); len(lines) > 0 {
			return f, lines
		}
	}
	return nil, nil
}

// sudoDropIn is the command that adds line in a sudoers drop-in for user,
// validated before it is installed.
func (c *checker) sudoDropIn(user, line string) string {
	dir := "/etc/sudoers.d"
	if len(c.h.SudoDirs) > 0 {
		dir = c.h.SudoDirs[0]
	}
	tmp := path.Join(dir, "breakglass-"+user+".new") // a dot: sudo skips it meanwhile
	return shell.Join("printf", `%s\n`, line) + " > " + shell.Quote(tmp) + " && " + sudoInstallFix(tmp, path.Join(dir, "breakglass-"+user), true)
}

func firstWith(lines []string, s string) string {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

// faillock: pam_faillock in sudo's stack has locked the user's sudo
// password.
func (c *checker) faillock(u auditedUser, nopasswd bool) {
	svc, ok := pamService(c.h, "sudo")
	if !ok {
		return
	}
	es := enforcing(pamStack(c.h.PAMFiles, svc), "auth", "pam_faillock.so")
	if len(es) == 0 {
		return
	}
	deny, unlock, interval := 3, 600, 900
	set := func(kv string) {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			if strings.TrimSpace(k) == "unlock_time" && strings.TrimSpace(v) == "never" {
				unlock = 0
			}
			return
		}
		switch strings.TrimSpace(k) {
		case "deny":
			deny = n
		case "unlock_time":
			unlock = n
		case "fail_interval":
			interval = n
		}
	}
	for _, l := range strings.Split(string(c.h.Faillock), "\n") {
		if l = strings.TrimSpace(l); l != "" && l[0] != '#' {
			set(l)
		}
	}
	for _, e := range es {
		for _, a := range e.Args {
			set(a)
		}
	}
	if deny <= 0 {
		return
	}
	now := c.h.Now
	var count int
	var last float64
	for _, l := range u.x.Faillock {
		f := strings.Fields(l)
		if len(f) < 4 || f[len(f)-1] != "V" {
			continue
		}
		t, err := time.Parse("2006-01-02 15:04:05", f[0]+" "+f[1])
		if err != nil {
			continue
		}
		ts := float64(t.Unix())
		if ts > now-float64(interval) {
			count++
			last = max(last, ts)
		}
	}
	if count < deny || unlock > 0 && last+float64(unlock) <= now {
		return
	}
	sev, effect := SeverityLockout, "sudo refuses "+u.uf.Name+"'s password"
	if nopasswd {
		sev, effect = SeverityInfo, "its NOPASSWD rule does not ask for the password, so sudo still works"
	}
	c.add(u.uf.Name, "sudo-faillock", sev, "",
		fmt.Sprintf("pam_faillock (%s) has locked %s after %d failures (deny=%d, unlock_time=%d): %s", es[0], u.uf.Name, count, deny, unlock, effect),
		shell.Join("faillock", "--user", u.uf.Name, "--reset"))
}

// sudoNegated: sudo -l -U U lists rules, but sudo -l -U U true (what the
// probe runs, sudo -n true) is refused: a later rule takes it away (a
// negation such as !ALL or !/usr/bin/true, a later drop-in).
func (c *checker) sudoNegated(u auditedUser, s sudoList) {
	name := u.uf.Name
	var negs []string
	for _, f := range c.h.SudoFiles {
		if sudoUnsafe(f.Stat) != "" || f.Dir != "" && skippedName(path.Base(f.Path)) {
			continue
		}
		for i, l := range strings.Split(string(f.Content), "\n") {
			t := strings.TrimSpace(l)
			if t == "" || t[0] == '#' || strings.HasPrefix(t, "Defaults") {
				continue
			}
			spec, cmds, ok := strings.Cut(t, "=")
			if !ok || !strings.Contains(cmds, "!") {
				continue
			}
			who := strings.Fields(spec)
			if len(who) == 0 {
				continue
			}
			for _, p := range strings.Split(who[0], ",") {
				if p == name || p == "ALL" || strings.HasPrefix(p, "%") && slices.Contains(u.uf.Groups, p[1:]) {
					negs = append(negs, fmt.Sprintf("%s:%d: %s", f.Path, i+1, t))
					break
				}
			}
		}
	}
	detail := fmt.Sprintf("sudo -l -U %s lists rules (%s), but sudo -l -U %s true, the command breakglass's probe runs, is refused: a later rule takes it away", name, strings.Join(s.Rules, "; "), name)
	fix := fmt.Sprintf("find the rule that takes it away (sudo -l -U %s), decide whether it is still wanted, and remove it or move %s's own rule after it", name, name)
	if len(negs) > 0 {
		detail += "; the negation: " + strings.Join(negs, "; ")
		fix = fmt.Sprintf("remove the negation (%s) for %s, or move %s's own rule after it (sudo keeps the last rule that matches), then check with sudo -l -U %s true", strings.Join(negs, "; "), name, name, name)
	}
	where := ""
	if len(negs) > 0 {
		where, _, _ = strings.Cut(negs[0], ":")
	}
	c.add(name, "sudo-negated", SeverityLockout, where, detail, fix)
}
