package audit

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/tasks"
)

// PAM modules that refuse on their own terms, in the stages a key login
// runs (account, then session): pam_time's time rules, pam_limits'
// maxlogins, pam_listfile's lists and pam_succeed_if's conditions. Each is
// judged from the module's line in the sshd stack (includes followed) and
// its own configuration file, for this user, client and the host's clock.

// pamRefusals runs the checks of the PAM modules above.
func (c *checker) pamRefusals(u auditedUser) {
	if !c.pamKnown {
		return
	}
	c.pamTime(u)
	c.pamLimits(u)
	c.pamListfile(u)
	c.pamSucceedIf(u)
	c.pamSecuretty(u)
}

// ---------------------------------------------------------------- pam_securetty

// securettyFile is the list pam_securetty reads.
const securettyFile = "/etc/securetty"

// pamSecuretty: in the account stage, pam_securetty refuses root unless
// its tty is listed in /etc/securetty, and sshd's PAM_TTY is "ssh" there
// (pam_securetty.c: a missing list lets everyone in; a world-writable one,
// or one that is not a regular file, lets no root in).
func (c *checker) pamSecuretty(u auditedUser) {
	uf := u.uf
	if uf.UID != 0 || c.h.TxtMode == nil {
		return
	}
	mode, exists := c.h.TxtMode[securettyFile]
	if !exists {
		return
	}
	es := enforcing(c.sshdPAM, "account", "pam_securetty.so")
	if len(es) == 0 {
		return
	}
	e := es[0] // the first that refuses ends the stack
	if mode&0o170000 != 0o100000 || mode&0o002 != 0 {
		c.add(uf.Name, "pam-securetty", SeverityLockout, securettyFile,
			fmt.Sprintf("pam_securetty (%s) refuses %s: %s is world-writable or not a regular file (mode %06o), which it never trusts", e, uf.Name, securettyFile, mode),
			shell.Join("chmod", "o-w", securettyFile)+"  # if it is a file; or remove line "+strconv.Itoa(e.Line)+" of "+e.File)
		return
	}
	for _, l := range strings.Split(string(c.h.AccessConf[securettyFile]), "\n") {
		if l == "ssh" {
			return
		}
	}
	c.add(uf.Name, "pam-securetty", SeverityLockout, securettyFile,
		fmt.Sprintf("pam_securetty (%s) refuses %s: sshd's PAM tty is \"ssh\", which %s does not list (\"access denied: tty 'ssh' is not secure\"); sshd logs the key as accepted, then closes the connection", e, uf.Name, securettyFile),
		fmt.Sprintf("echo ssh >> %s  # if root is meant to log in over ssh; or remove line %d of %s", securettyFile, e.Line, e.File))
}

// pamFix is the advice for a PAM refusal: the module line and, when
// there is one, the rule line of its own file.
func pamFix(e pamEntry, rule string) string {
	if rule != "" {
		return fmt.Sprintf("change or remove %s so that it no longer applies to the user (or remove the module's line %s:%d), after deciding whether the restriction is still wanted", rule, e.File, e.Line)
	}
	return fmt.Sprintf("remove or change line %d of %s (%s), after deciding whether the restriction is still wanted", e.Line, e.File, e)
}

// ---------------------------------------------------------------- pam_time

// pamTime: a time.conf rule for sshd, this user and tty "ssh" whose times
// do not include now (the host's local time).
func (c *checker) pamTime(u auditedUser) {
	uf := u.uf
	local := time.Unix(int64(c.h.Now), 0).In(time.FixedZone("host", parseTZ(c.h.TZ)))
	for _, e := range enforcing(c.sshdPAM, "account", "pam_time.so") {
		file := "/etc/security/time.conf"
		for _, a := range e.Args {
			if f, ok := strings.CutPrefix(a, "conffile="); ok {
				file = f
			}
		}
		for i, l := range strings.Split(string(c.h.AccessConf[file]), "\n") {
			l = strings.TrimSpace(l)
			if l == "" || l[0] == '#' {
				continue
			}
			f := strings.Split(l, ";")
			if len(f) != 4 {
				continue
			}
			if !timeList(f[0], "sshd") || !timeList(f[1], "ssh") || !timeList(f[2], uf.Name) {
				continue
			}
			if timesAllow(strings.TrimSpace(f[3]), local) {
				continue
			}
			rule := fmt.Sprintf("%s:%d: %s", file, i+1, l)
			c.add(uf.Name, "pam-time", SeverityLockout, file,
				fmt.Sprintf("pam_time (%s) refuses %s now (%s, the host's time): the rule %s does not allow this time; sshd logs the key as accepted, then closes the connection", e, uf.Name, local.Format("Mon 15:04 -0700"), rule),
				pamFix(e, rule))
			return
		}
	}
}

// timeList matches a pam_time list ("a|b", "!a", "*", "a*") against s.
func timeList(list, s string) bool {
	list = strings.TrimSpace(list)
	neg := false
	for strings.HasPrefix(list, "!") {
		neg, list = !neg, list[1:]
	}
	hit := false
	for _, alt := range strings.FieldsFunc(list, func(r rune) bool { return r == '|' || r == '&' }) {
		alt = strings.TrimSpace(alt)
		if ok, _ := path.Match(alt, s); ok || alt == s {
			hit = true
		}
	}
	return hit != neg
}

// timesAllow evaluates a pam_time times field ("Wk0800-1800|Sa0900-1200",
// "!Al0000-2400") at t: terms joined by | and &, left to right.
func timesAllow(field string, t time.Time) bool {
	res, op := false, byte('|')
	for field != "" {
		i := strings.IndexAny(field, "|&")
		term := field
		next := byte(0)
		if i >= 0 {
			term, next, field = field[:i], field[i], field[i+1:]
		} else {
			field = ""
		}
		v := timeTerm(strings.TrimSpace(term), t)
		if op == '&' {
			res = res && v
		} else {
			res = res || v
		}
		op = next
	}
	return res
}

// timeTerm: [!]DAYS[HHMM-HHMM]; a day named twice cancels (pam_time's
// "AlFr": every day but Friday).
func timeTerm(term string, t time.Time) bool {
	neg := false
	for strings.HasPrefix(term, "!") {
		neg, term = !neg, term[1:]
	}
	days := map[string][]time.Weekday{
		"Mo": {time.Monday}, "Tu": {time.Tuesday}, "We": {time.Wednesday}, "Th": {time.Thursday},
		"Fr": {time.Friday}, "Sa": {time.Saturday}, "Su": {time.Sunday},
		"Wk": {time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday},
		"Wd": {time.Saturday, time.Sunday},
		"Al": {time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday, time.Saturday, time.Sunday},
	}
	on := map[time.Weekday]bool{}
	for len(term) >= 2 && days[term[:2]] != nil {
		for _, d := range days[term[:2]] {
			on[d] = !on[d]
		}
		term = term[2:]
	}
	ok := on[t.Weekday()]
	if from, to, found := strings.Cut(term, "-"); found {
		a, err1 := strconv.Atoi(from)
		b, err2 := strconv.Atoi(to)
		now := t.Hour()*100 + t.Minute()
		if err1 == nil && err2 == nil {
			if a <= b {
				ok = ok && now >= a && now < b
			} else {
				ok = ok && (now >= a || now < b)
			}
		}
	}
	return ok != neg
}

// ---------------------------------------------------------------- pam_limits

// pam_limits' sources of a limit, most specific first
// (pam_limits.c LIMITS_DEF_*): a line of a lower source always wins over
// one of a higher, and among lines of one source the last read wins.
const (
	limitUser     = iota // the user's name, or a uid range
	limitGroup           // @group, or a gid range
	limitAllGroup        // %group: maxlogins counts every member's sessions
	limitAll             // %: maxlogins counts every session
	limitDefault         // *
	limitNone
)

// limitsVerdict is what pam_limits' session stage decides for one user.
type limitsVerdict struct {
	exempt     string // a "DOMAIN -" line that applies: no limits at all
	login      int    // maxlogins/maxsyslogins; -2 none set, -1 unlimited
	loginSrc   int
	loginRule  string
	loginGroup string // %group of the winning maxlogins line
	sysLogins  bool   // the last maxlogins/maxsyslogins line read was maxsyslogins
	missing    string // conf= names a file that does not exist: the module fails
}

// limitsFor reads the files pam_limits reads for uf (limits.conf, then
// limits.d/*.conf by name, or only conf=) as pam_limits.c
// parse_config_file does.
func (c *checker) limitsFor(e pamEntry, uf *tasks.UserFacts) limitsVerdict {
	v := limitsVerdict{login: -2, loginSrc: limitNone}
	files, explicit := []string{"/etc/security/limits.conf"}, false
	for _, a := range e.Args {
		if f, ok := strings.CutPrefix(a, "conf="); ok {
			files, explicit = []string{f}, true
		}
	}
	if explicit && slices.Contains(c.h.TxtMissing, files[0]) {
		v.missing = files[0]
		return v
	}
	if !explicit {
		d := c.h.accessOrderOf("/etc/security/limits.d/")
		slices.SortStableFunc(d, func(a, b string) int { return strings.Compare(path.Base(a), path.Base(b)) })
		files = append(files, d...)
	}
	inGroup := func(name string) bool {
		if slices.Contains(uf.Groups, name) {
			return true
		}
		gid, ok := c.h.GroupGID[name]
		return ok && gid == uf.GID
	}
	inGID := func(gid int) bool {
		if gid == uf.GID {
			return true
		}
		for name, g := range c.h.GroupGID {
			if g == gid && slices.Contains(uf.Groups, name) {
				return true
			}
		}
		return false
	}
	for _, file := range files {
		for i, raw := range strings.Split(string(c.h.AccessConf[file]), "\n") {
			l, _, _ := strings.Cut(raw, "#")
			f := strings.Fields(l)
			if len(f) == 0 {
				continue
			}
			rule := fmt.Sprintf("%s:%d: %s", file, i+1, strings.TrimSpace(l))
			domain := f[0]
			rng, lo, hi, ok := limitRange(domain)
			if !ok {
				continue // pam_limits skips an invalid range
			}
			// Which source the line is for this user, or -1.
			src := -1
			switch {
			case domain == uf.Name:
				src = limitUser
			case domain[0] == '@':
				switch rng {
				case rangeNone:
					if inGroup(domain[1:]) {
						src = limitGroup
					}
				case rangeOne:
					if inGID(hi) {
						src = limitGroup
					}
				default: // a range of gids: the primary group's
					if idInRange(rng, lo, hi, uf.GID) {
						src = limitGroup
					}
				}
			case domain[0] == '%':
				switch {
				case rng == rangeNone && domain == "%":
					src = limitAll
				case rng == rangeNone && inGroup(domain[1:]):
					src = limitAllGroup
				case rng == rangeOne && inGID(hi):
					src = limitAllGroup
				}
			default:
				switch {
				case rng == rangeNone && domain == "*":
					src = limitDefault
				case rng != rangeNone && idInRange(rng, lo, hi, uf.UID):
					src = limitUser
				}
			}
			if len(f) == 2 && strings.HasPrefix(f[1], "-") {
				// "DOMAIN -": no limits at all for a user it names (not *).
				if src == limitUser || src == limitGroup {
					v.exempt = rule
					return v
				}
				continue
			}
			if len(f) != 4 || src < 0 {
				continue
			}
			item, value := strings.ToLower(f[2]), strings.ToLower(f[3])
			switch item {
			case "maxlogins", "maxsyslogins":
				v.sysLogins = item == "maxsyslogins"
				if src == limitAll || src == limitAllGroup {
					if item != "maxlogins" {
						continue // '%' is valid for maxlogins only
					}
				}
				n, ok := limitInt(value)
				if !ok || src > v.loginSrc {
					continue
				}
				v.login, v.loginSrc, v.loginRule = n, src, rule
				if src == limitAllGroup {
					v.loginGroup = strings.TrimPrefix(domain, "%")
					if rng == rangeOne {
						for name, g := range c.h.GroupGID {
							if g == hi {
								v.loginGroup = name
							}
						}
					}
				}
			}
		}
	}
	return v
}

// uid/gid range forms of a limits.conf domain (pam_limits.c
// parse_uid_range).
const (
	rangeNone = iota
	rangeOne  // :N
	rangeMin  // N:
	rangeMM   // N:M
)

// idInRange reports whether id is in a range form of limitRange: :N is N
// alone, N: is N and up, N:M is N to M.
func idInRange(kind, lo, hi, id int) bool {
	switch kind {
	case rangeOne:
		return id == hi
	case rangeMin:
		return id >= lo
	case rangeMM:
		return id >= lo && id <= hi
	}
	return false
}

func limitRange(domain string) (kind, lo, hi int, ok bool) {
	r := strings.TrimLeft(domain[:1], "@%") + domain[1:]
	a, b, found := strings.Cut(r, ":")
	if !found {
		return rangeNone, 0, 0, true
	}
	num := func(s string) (int, bool) {
		n, err := strconv.ParseUint(s, 10, 32)
		return int(n), err == nil
	}
	switch {
	case a == "" && b == "":
		return 0, 0, 0, false
	case a == "":
		hi, ok = num(b)
		return rangeOne, 0, hi, ok
	case b == "":
		lo, ok = num(a)
		return rangeMin, lo, 0, ok
	}
	lo, ok1 := num(a)
	hi, ok2 := num(b)
	return rangeMM, lo, hi, ok1 && ok2
}

// limitInt parses a maxlogins value as pam_limits does: -1, -,
// unlimited, infinity mean none; else strtol (a number may be followed by
// other characters; none at all is a wrong value, and the line is skipped).
func limitInt(v string) (int, bool) {
	switch v {
	case "-1", "-", "unlimited", "infinity":
		return -1, true
	}
	end := 0
	if end < len(v) && (v[0] == '-' || v[0] == '+') {
		end++
	}
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(v[:end])
	if err != nil {
		return 0, false
	}
	return n, true
}

// pamLimits: pam_limits refuses the session when a maxlogins or
// maxsyslogins limit applies to the user and the sessions open now leave
// no room for another, or when its conf= file is missing. Root has no
// login limit. Resource limits (nproc, nofile, …) are not judged: tried
// on Debian 12 and 13 lab hosts, a nofile hard limit above fs.nr_open,
// which setrlimit refuses, still let the login through.
func (c *checker) pamLimits(u auditedUser) {
	uf := u.uf
	for _, e := range enforcing(c.sshdPAM, "session", "pam_limits.so") {
		v := c.limitsFor(e, uf)
		refuse := func(p, why, fix string) {
			c.add(uf.Name, "pam-limits", SeverityLockout, p,
				fmt.Sprintf("pam_limits (%s) refuses the session of %s: %s; sshd accepts the key, then closes the connection", e, uf.Name, why), fix)
		}
		switch {
		case v.missing != "":
			refuse(v.missing, fmt.Sprintf("its conf=%s does not exist, and a conf= file it cannot read fails the module (\"cannot read settings\")", v.missing),
				fmt.Sprintf("create %s with the limits meant, or remove conf= from line %d of %s", v.missing, e.Line, e.File))
			return
		case v.exempt != "":
			continue // no limits for this user
		}
		if why := c.loginsRefused(e, uf, v); why != "" {
			file, _, _ := strings.Cut(v.loginRule, ":")
			refuse(file, why, pamFix(e, v.loginRule))
			return
		}
	}
}

// loginsRefused says why pam_limits' login count refuses uf now, or "".
// It counts as pam_limits.c check_logins: the new login itself (unless
// utmp_early), then every session open now that the limit's domain counts
// (the user's own; a %group limit: its members'; %: all), utmp entries of
// processes that are gone excepted; maxsyslogins counts every session.
// More than the limit is refused. Built with logind, the module counts
// logind's "user" sessions, takes the number of all sessions instead when
// there are none or the limit is maxsyslogins, and gives up on a limit of
// 1 (an error it then ignores: the login is let in).
func (c *checker) loginsRefused(e pamEntry, uf *tasks.UserFacts, v limitsVerdict) string {
	if uf.UID == 0 || v.login < 0 {
		return ""
	}
	what := "maxlogins"
	if v.sysLogins {
		what = "maxsyslogins"
	}
	if v.login == 0 {
		return fmt.Sprintf("%s applies %s 0 to %s: no login at all (\"Too many logins\")", v.loginRule, what, uf.Name)
	}
	logind := c.h.LimitsCount == "logind"
	switch {
	case c.h.LimitsCount != "utmp" && !logind:
		return "" // sessions not read
	case logind && v.login == 1:
		return ""
	}
	count := 1
	if slices.Contains(e.Args, "utmp_early") {
		count = 0
	}
	who := map[string]int{}
	if logind && (len(c.h.Logins) == 0 || v.sysLogins) {
		count = len(c.h.Logins)
		for _, l := range c.h.Logins {
			who[l.User]++
		}
	} else {
		for _, l := range c.h.Logins {
			if logind && !strings.HasPrefix(l.Class, "user") {
				continue
			}
			if !v.sysLogins {
				switch {
				case v.loginSrc == limitAllGroup:
					if !c.userInGroup(l.User, v.loginGroup) {
						continue
					}
				case v.loginSrc != limitAll && l.User != uf.Name:
					continue
				}
				if !logind && !l.Alive {
					continue
				}
			}
			count++
			who[l.User]++
		}
	}
	if count <= v.login {
		return ""
	}
	var open []string
	for _, n := range slices.Sorted(mapsKeys(who)) {
		open = append(open, fmt.Sprintf("%s %d", n, who[n]))
	}
	return fmt.Sprintf("%s applies %s %d to %s, and the sessions it counts now (%s's: %s) leave no room for another (\"Too many logins\")", v.loginRule, what, v.login, uf.Name, c.h.LimitsCount, strings.Join(open, ", "))
}

// userInGroup reports whether name is a member of group (its primary
// group or a listed member), from /etc/passwd and /etc/group.
func (c *checker) userInGroup(name, group string) bool {
	gid, ok := c.h.GroupGID[group]
	if !ok {
		return false
	}
	if slices.Contains(c.h.GroupMembers[gid], name) {
		return true
	}
	for uid, n := range c.h.UIDNames {
		if n == name {
			return c.h.PrimaryGID[uid] == gid
		}
	}
	return false
}

func mapsKeys(m map[string]int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// accessOrderOf returns the text files read under dir, sorted.
func (h *HostFacts) accessOrderOf(dir string) []string {
	var out []string
	for p := range h.AccessConf {
		if strings.HasPrefix(p, dir) && strings.HasSuffix(p, ".conf") {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// ---------------------------------------------------------------- pam_listfile

// pamListfile: item=user|group|shell|rhost, sense=allow|deny, file=,
// onerr=; a missing file fails unless onerr=succeed.
func (c *checker) pamListfile(u auditedUser) {
	uf := u.uf
	for _, e := range enforcing(c.sshdPAM, "account", "pam_listfile.so") {
		var item, sense, file, onerr, apply string
		for _, a := range e.Args {
			k, v, _ := strings.Cut(a, "=")
			switch k {
			case "item":
				item = v
			case "sense":
				sense = v
			case "file":
				file = v
			case "onerr":
				onerr = v
			case "apply":
				apply = v
			}
		}
		if apply != "" {
			if g, ok := strings.CutPrefix(apply, "@"); ok && !slices.Contains(uf.Groups, g) || !ok && apply != uf.Name {
				continue
			}
		}
		var values []string
		switch item {
		case "user":
			values = []string{uf.Name}
		case "group":
			values = uf.Groups
		case "shell":
			values = []string{uf.Shell}
		case "rhost":
			values = []string{uf.Conn.Client}
		default:
			continue // not judged
		}
		if slices.Contains(c.h.TxtMissing, file) {
			if onerr != "succeed" {
				c.add(uf.Name, "pam-listfile", SeverityLockout, file,
					fmt.Sprintf("pam_listfile (%s) cannot read %s and onerr is not succeed: every login is refused", e, file),
					fmt.Sprintf("create %s with the entries meant (one per line), or remove line %d of %s", file, e.Line, e.File))
				return
			}
			continue
		}
		if mode, ok := c.h.TxtMode[file]; ok && (mode&0o170000 != 0o100000 || mode&0o002 != 0) {
			// pam_listfile refuses to trust it, whatever it lists and
			// whatever onerr says.
			fix := shell.Join("chmod", "o-w", file) + "  # if it is the list meant; or remove line " + strconv.Itoa(e.Line) + " of " + e.File
			if mode&0o170000 != 0o100000 {
				// A link or something else: chmod would act on what it
				// points at; a person must put the list itself there.
				fix = "replace " + file + " with a regular file holding the list meant (root's, not world-writable), or remove line " + strconv.Itoa(e.Line) + " of " + e.File
			}
			c.add(uf.Name, "pam-listfile", SeverityLockout, file,
				fmt.Sprintf("pam_listfile (%s) refuses every login while %s is world-writable or not a regular file (mode %06o: \"%s is either world writable or not a normal file\")", e, file, mode, file), fix)
			return
		}
		content, read := c.h.AccessConf[file]
		if !read {
			continue
		}
		found, line := "", 0
		for i, l := range strings.Split(string(content), "\n") {
			// pam_listfile compares the whole line (a CR or LF cut off).
			if l = strings.TrimRight(l, "\r"); l != "" && slices.Contains(values, l) {
				found, line = l, i+1
				break
			}
		}
		switch {
		case sense == "deny" && found != "":
			rule := fmt.Sprintf("%s:%d: %s", file, line, found)
			fix := fmt.Sprintf("remove the line %q from %s (line %d when audit read it); or remove line %d of %s", found, file, line, e.Line, e.File)
			c.add(uf.Name, "pam-listfile", SeverityLockout, file,
				fmt.Sprintf("pam_listfile (%s) refuses %s: its %s %s is listed at %s (sense=deny)", e, uf.Name, item, found, rule), fix)
			if item == "user" && found == uf.Name {
				// The line names this user and no one else: recover may
				// take it out (every line that is the name, whatever
				// line it has moved to; a backup kept).
				c.act("bg_dropline", file, found)
			}
			return
		case sense == "allow" && found == "":
			c.add(uf.Name, "pam-listfile", SeverityLockout, file,
				fmt.Sprintf("pam_listfile (%s) refuses %s: its %s (%s) is not listed in %s (sense=allow)", e, uf.Name, item, strings.Join(values, ", "), file),
				fmt.Sprintf("add %s to %s if %s is meant to log in, or remove line %d of %s", values[0], file, uf.Name, e.Line, e.File))
			return
		}
	}
}

// ---------------------------------------------------------------- pam_succeed_if

// pamSucceedIf: the module reads its arguments as conditions "FIELD OP
// VALUE" in turn and fails at the first that is not met, or that it
// cannot evaluate (an unknown field or operator, a number that is not
// one, a condition left incomplete): pam_succeed_if.c evaluate(). With
// use_uid the conditions are about the calling process's user, which in
// sshd's account stage is root.
func (c *checker) pamSucceedIf(u auditedUser) {
	uf := u.uf
	for _, e := range enforcing(c.sshdPAM, "account", "pam_succeed_if.so") {
		who, useUID := c.succeedIfSubject(uf), false
		var conds []string
		for _, a := range e.Args {
			switch a {
			case "debug", "quiet", "quiet_fail", "quiet_success", "audit":
				continue
			case "use_uid":
				useUID = true
				continue
			}
			conds = append(conds, a)
		}
		if useUID {
			who = c.rootSubject(uf)
		}
		why := ""
		for i := 0; i < len(conds) && why == ""; i += 3 {
			if i+2 >= len(conds) {
				why = fmt.Sprintf("the condition %q is incomplete, which the module treats as an error (\"incomplete condition detected\")", strings.Join(conds[i:], " "))
				break
			}
			field, op, val := conds[i], conds[i+1], conds[i+2]
			switch ok, err := succeedIf(who, field, op, val); {
			case errors.Is(err, errNotJudged):
				// innetgr, or a field not known here: whatever it gives,
				// a later condition that is false still fails the module.
			case err != nil:
				why = fmt.Sprintf("the condition %q cannot be evaluated (%v), which the module treats as an error", field+" "+op+" "+val, err)
			case !ok:
				why = fmt.Sprintf("the condition %q is false for %s", field+" "+op+" "+val, who.name)
			}
		}
		if why != "" {
			subject := ""
			if useUID {
				subject = " (use_uid: the conditions are about the process calling PAM, which is sshd running as root, not about " + uf.Name + ")"
			}
			c.add(uf.Name, "pam-succeed-if", SeverityLockout, e.File,
				fmt.Sprintf("pam_succeed_if (%s) refuses %s: %s%s; sshd logs the key as accepted, then closes the connection", e, uf.Name, why, subject),
				pamFix(e, ""))
			return
		}
	}
}

// succeedSubject is what pam_succeed_if's conditions are evaluated
// against.
type succeedSubject struct {
	name        string
	uid, gid    int
	shell, home string // "" when not known
	groups      []string
	known       bool // shell and home are known
	rhost       string
}

func (c *checker) succeedIfSubject(uf *tasks.UserFacts) succeedSubject {
	return succeedSubject{name: uf.Name, uid: uf.UID, gid: uf.GID, shell: uf.Shell, home: uf.Home, groups: uf.Groups, known: true, rhost: uf.Conn.Client}
}

// rootSubject is root as use_uid sees it in sshd's account stage (its
// shell and home are not read: conditions on them are not judged).
func (c *checker) rootSubject(uf *tasks.UserFacts) succeedSubject {
	name := c.h.UIDNames[0]
	if name == "" {
		name = "root"
	}
	return succeedSubject{name: name, uid: 0, gid: c.h.PrimaryGID[0], groups: []string{"root"}, rhost: uf.Conn.Client}
}

// errNotJudged: a condition this audit does not evaluate.
var errNotJudged = errors.New("not judged")

// succeedIf evaluates one condition as pam_succeed_if.c's evaluate():
// fields and operators are case-insensitive, the numeric operators parse
// both sides as C integers (strtoll, base 0), =~ and !~ are fnmatch(3)
// globs, in and notin take ':'-separated lists; an unknown field or
// operator is an error (the module fails closed).
func succeedIf(who succeedSubject, field, op, val string) (bool, error) {
	var left string
	switch strings.ToLower(field) {
	case "login", "name", "user":
		left = who.name
	case "uid":
		left = strconv.Itoa(who.uid)
	case "gid":
		left = strconv.Itoa(who.gid)
	case "shell":
		if !who.known {
			return false, errNotJudged
		}
		left = who.shell
	case "home", "dir", "homedir":
		if !who.known {
			return false, errNotJudged
		}
		left = who.home
	case "service":
		left = "sshd"
	case "ruser":
		left = "" // sshd sets no PAM_RUSER
	case "rhost":
		left = who.rhost // UseDNS no: the client's address
	case "tty":
		left = "ssh" // sshd's PAM_TTY until a pty is allocated
	default:
		return false, fmt.Errorf("unknown attribute %q", field)
	}
	num := func(cmp func(a, b int64) bool) (bool, error) {
		a, err1 := strconv.ParseInt(left, 0, 64)
		b, err2 := strconv.ParseInt(val, 0, 64)
		if err1 != nil {
			return false, fmt.Errorf("%q is not a number", left)
		}
		if err2 != nil {
			return false, fmt.Errorf("%q is not a number", val)
		}
		return cmp(a, b), nil
	}
	inGroups := func() bool {
		return slices.ContainsFunc(strings.Split(val, ":"), func(g string) bool { return slices.Contains(who.groups, g) })
	}
	switch strings.ToLower(op) {
	case "<", "lt":
		return num(func(a, b int64) bool { return a < b })
	case "<=", "le":
		return num(func(a, b int64) bool { return a <= b })
	case ">", "gt":
		return num(func(a, b int64) bool { return a > b })
	case ">=", "ge":
		return num(func(a, b int64) bool { return a >= b })
	case "eq":
		return num(func(a, b int64) bool { return a == b })
	case "ne":
		return num(func(a, b int64) bool { return a != b })
	case "=":
		return left == val, nil
	case "!=":
		return left != val, nil
	case "=~", "glob":
		return fnmatch(val, left), nil
	case "!~", "noglob":
		return !fnmatch(val, left), nil
	case "in":
		return slices.Contains(strings.Split(val, ":"), left), nil
	case "notin":
		return !slices.Contains(strings.Split(val, ":"), left), nil
	case "ingroup":
		return inGroups(), nil // about the user, whatever the field
	case "notingroup":
		return !inGroups(), nil
	case "innetgr", "notinnetgr":
		return false, errNotJudged
	}
	return false, fmt.Errorf("unknown operator %q", op)
}

// fnmatch is fnmatch(3) without flags: * and ? match any character, '/'
// and a leading '.' included; [...] classes with ! or ^ negation; a
// backslash quotes the next character.
func fnmatch(pattern, s string) bool {
	var re strings.Builder
	re.WriteString("^")
	for i := 0; i < len(pattern); i++ {
		switch ch := pattern[i]; ch {
		case '*':
			re.WriteString("(?s:.*)")
		case '?':
			re.WriteString("(?s:.)")
		case '\\':
			if i+1 < len(pattern) {
				i++
				re.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
			} else {
				re.WriteString(`\\`)
			}
		case '[':
			j := i + 1
			if j < len(pattern) && (pattern[j] == '!' || pattern[j] == '^') {
				j++
			}
			if j < len(pattern) && pattern[j] == ']' {
				j++
			}
			for j < len(pattern) && pattern[j] != ']' {
				j++
			}
			if j >= len(pattern) {
				re.WriteString(`\[`) // no closing ]: a plain [
				continue
			}
			class := pattern[i+1 : j]
			neg := strings.HasPrefix(class, "!") || strings.HasPrefix(class, "^")
			if neg {
				class = class[1:]
			}
			re.WriteString("[")
			if neg {
				re.WriteString("^")
			}
			for _, r := range class {
				if r == '\\' || r == ']' || r == '[' || r == '^' {
					re.WriteString(`\`)
				}
				re.WriteRune(r)
			}
			re.WriteString("]")
			i = j
		default:
			re.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
		}
	}
	re.WriteString("$")
	m, err := regexp.MatchString(re.String(), s)
	return err == nil && m
}
