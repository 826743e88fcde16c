package audit

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/breakglass/breakglass/internal/shell"
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

// pamLimits: maxlogins 0 for the user (pam_limits does not apply it to
// root): every session is refused ("Too many logins").
func (c *checker) pamLimits(u auditedUser) {
	uf := u.uf
	if uf.UID == 0 {
		return
	}
	for _, e := range enforcing(c.sshdPAM, "session", "pam_limits.so") {
		files := []string{"/etc/security/limits.conf"}
		explicit := false
		for _, a := range e.Args {
			if f, ok := strings.CutPrefix(a, "conf="); ok {
				files, explicit = []string{f}, true
			}
		}
		if !explicit {
			files = append(files, c.h.accessOrderOf("/etc/security/limits.d/")...)
		}
		// The most specific domain wins (user, then group, then *); the
		// later line among equals.
		best, bestRank, bestRule := "", 0, ""
		for _, file := range files {
			for i, l := range strings.Split(string(c.h.AccessConf[file]), "\n") {
				f := strings.Fields(l)
				if len(f) < 4 || strings.HasPrefix(f[0], "#") || strings.ToLower(f[2]) != "maxlogins" {
					continue
				}
				rank := 0
				switch d := f[0]; {
				case d == uf.Name:
					rank = 3
				case strings.HasPrefix(d, "@") && slices.Contains(uf.Groups, d[1:]):
					rank = 2
				case d == "*":
					rank = 1
				}
				if rank > 0 && rank >= bestRank {
					best, bestRank, bestRule = f[3], rank, fmt.Sprintf("%s:%d: %s", file, i+1, strings.TrimSpace(l))
				}
			}
		}
		if best == "0" {
			file, _, _ := strings.Cut(bestRule, ":")
			c.add(uf.Name, "pam-limits", SeverityLockout, file,
				fmt.Sprintf("pam_limits (%s) applies %s to %s: sshd accepts the key, then the session is refused (\"Too many logins for '%s'\")", e, bestRule, uf.Name, uf.Name),
				pamFix(e, bestRule))
			return
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
		content, read := c.h.AccessConf[file]
		if !read {
			continue
		}
		found, line := "", 0
		for i, l := range strings.Split(string(content), "\n") {
			if l = strings.TrimSpace(l); l != "" && slices.Contains(values, l) {
				found, line = l, i+1
				break
			}
		}
		switch {
		case sense == "deny" && found != "":
			rule := fmt.Sprintf("%s:%d: %s", file, line, found)
			c.add(uf.Name, "pam-listfile", SeverityLockout, file,
				fmt.Sprintf("pam_listfile (%s) refuses %s: its %s %s is listed at %s (sense=deny)", e, uf.Name, item, found, rule),
				fmt.Sprintf("sed -i %s %s  # removes line %d (%s); or remove line %d of %s", shell.Quote(strconv.Itoa(line)+"d"), shell.Quote(file), line, found, e.Line, e.File))
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

// pamSucceedIf: every condition of the line must hold, or the module
// fails (pam_succeed_if(8)).
func (c *checker) pamSucceedIf(u auditedUser) {
	uf := u.uf
	for _, e := range enforcing(c.sshdPAM, "account", "pam_succeed_if.so") {
		var conds []string
		for _, a := range e.Args {
			switch a {
			case "debug", "use_uid", "quiet", "quiet_fail", "quiet_success", "audit":
				continue
			}
			conds = append(conds, a)
		}
		for i := 0; i+2 < len(conds); i += 3 {
			field, op, val := conds[i], conds[i+1], conds[i+2]
			ok, known := c.succeedIf(u, field, op, val)
			if !known {
				break // not judged: the rest may be misaligned
			}
			if !ok {
				c.add(uf.Name, "pam-succeed-if", SeverityLockout, e.File,
					fmt.Sprintf("pam_succeed_if (%s) refuses %s: the condition %q is false for it; sshd logs the key as accepted, then closes the connection", e, uf.Name, field+" "+op+" "+val),
					pamFix(e, ""))
				return
			}
		}
	}
}

// succeedIf evaluates one condition; known is false for what is not
// judged here.
func (c *checker) succeedIf(u auditedUser, field, op, val string) (ok, known bool) {
	uf := u.uf
	var s string
	n := -1
	switch field {
	case "user":
		s = uf.Name
	case "uid":
		n = uf.UID
	case "gid":
		n = uf.GID
	case "shell":
		s = uf.Shell
	case "home":
		s = uf.Home
	case "service":
		s = "sshd"
	case "rhost":
		s = uf.Conn.Client
	case "tty":
		s = "ssh"
	default:
		return false, false
	}
	if n >= 0 {
		v, err := strconv.Atoi(val)
		if err != nil {
			return false, false
		}
		switch op {
		case "<", "lt":
			return n < v, true
		case "<=", "le":
			return n <= v, true
		case ">", "gt":
			return n > v, true
		case ">=", "ge":
			return n >= v, true
		case "eq":
			return n == v, true
		case "ne":
			return n != v, true
		}
		return false, false
	}
	switch op {
	case "=":
		return s == val, true
	case "!=":
		return s != val, true
	case "in":
		return slices.Contains(strings.Split(val, ":"), s), true
	case "notin":
		return !slices.Contains(strings.Split(val, ":"), s), true
	case "ingroup":
		if field != "user" {
			return false, false
		}
		return slices.ContainsFunc(strings.Split(val, ":"), func(g string) bool { return slices.Contains(uf.Groups, g) }), true
	case "notingroup":
		if field != "user" {
			return false, false
		}
		return !slices.ContainsFunc(strings.Split(val, ":"), func(g string) bool { return slices.Contains(uf.Groups, g) }), true
	}
	return false, false
}
