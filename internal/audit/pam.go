package audit

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
)

// pamEntry is one line of a PAM stack, after includes.
type pamEntry struct {
	File    string // /etc/pam.d/NAME
	Line    int
	Type    string // auth, account, session, password
	Dash    bool   // "-type": a missing module is silently skipped
	Control string // "required", "[success=1 default=ignore]", …
	Module  string
	Args    []string
}

func (e pamEntry) String() string {
	t := e.Type
	if e.Dash {
		t = "-" + t
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, strings.Join(append([]string{t, e.Control, e.Module}, e.Args...), " "))
}

// base is the module's file name.
func (e pamEntry) base() string { return path.Base(e.Module) }

// ignoresFailure reports whether a failure of the module (or its absence)
// cannot deny: optional and sufficient controls, and bracket controls whose
// answer to a missing module (module_unknown, else default) is ignore.
func (e pamEntry) ignoresFailure(missing bool) bool {
	switch e.Control {
	case "optional", "sufficient":
		return true
	case "required", "requisite", "include", "substack":
		return false
	}
	if !strings.HasPrefix(e.Control, "[") {
		return false
	}
	acts := map[string]string{}
	for _, kv := range strings.Fields(strings.Trim(e.Control, "[]")) {
		k, v, _ := strings.Cut(kv, "=")
		acts[strings.ToLower(k)] = strings.ToLower(v)
	}
	act, ok := "", false
	if missing {
		act, ok = acts["module_unknown"]
	}
	if !ok {
		act, ok = acts["default"]
	}
	if !ok {
		return false
	}
	// ignore and reset drop the failure, a number jumps over modules; ok,
	// done, bad and die make it the stack's answer.
	return act == "ignore" || act == "reset" || strings.Trim(act, "0123456789") == ""
}

// pamStack returns the entries of service, includes expanded in place
// (@include: every type; "type include|substack name": that type only).
func pamStack(files map[string][]byte, service string) []pamEntry {
	var out []pamEntry
	var read func(name, only string, depth int)
	read = func(name, only string, depth int) {
		data, ok := files[name]
		if !ok || depth > 10 {
			return
		}
		file := name
		if !strings.HasPrefix(file, "/") {
			file = "/etc/pam.d/" + name
		}
		lines := strings.Split(string(data), "\n")
		for i := 0; i < len(lines); i++ {
			no := i + 1
			l := lines[i]
			for strings.HasSuffix(l, "\\") && i+1 < len(lines) {
				i++
				l = strings.TrimSuffix(l, "\\") + " " + lines[i]
			}
			if c := strings.IndexByte(l, '#'); c >= 0 {
				l = l[:c]
			}
			f := pamFields(l)
			if len(f) == 0 {
				continue
			}
			if f[0] == "@include" {
				if len(f) > 1 {
					read(f[1], only, depth+1)
				}
				continue
			}
			if len(f) < 3 {
				continue
			}
			e := pamEntry{File: file, Line: no, Type: strings.ToLower(f[0]), Control: f[1], Module: f[2], Args: f[3:]}
			if strings.HasPrefix(e.Type, "-") {
				e.Dash, e.Type = true, e.Type[1:]
			}
			if only != "" && e.Type != only {
				continue
			}
			if e.Control == "include" || e.Control == "substack" {
				read(e.Module, e.Type, depth+1)
				continue
			}
			out = append(out, e)
		}
	}
	read(service, "", 0)
	return out
}

// pamFields splits a PAM line into fields, keeping a bracketed control
// ("[success=1 default=ignore]") as one.
func pamFields(l string) []string {
	var f []string
	for {
		l = strings.TrimLeft(l, " \t\r")
		if l == "" {
			return f
		}
		if l[0] == '[' {
			end := strings.IndexByte(l, ']')
			if end < 0 {
				end = len(l) - 1
			}
			f = append(f, l[:end+1])
			l = l[end+1:]
			continue
		}
		end := strings.IndexAny(l, " \t\r")
		if end < 0 {
			end = len(l)
		}
		f = append(f, l[:end])
		l = l[end:]
	}
}

// pamService is the stack PAM uses for service: its own file, or "other"
// when it has none.
func pamService(h *HostFacts, service string) (string, bool) {
	if _, ok := h.PAMFiles[service]; ok {
		return service, true
	}
	if _, ok := h.PAMFiles["other"]; ok {
		return "other", true
	}
	return "", false
}

// moduleExists reports whether a stack entry's module can be loaded, and
// whether that is known at all.
func moduleExists(h *HostFacts, e pamEntry) (exists, known bool) {
	if strings.HasPrefix(e.Module, "/") {
		ok, seen := h.PAMAbsolute[e.Module]
		return ok, seen
	}
	if h.PAMDir == "" {
		return false, false
	}
	return h.PAMModules[e.Module], true
}

// enforcing returns the entries of stack of the given type that use
// module (by file name) with a control that can deny.
func enforcing(stack []pamEntry, typ, module string) []pamEntry {
	var out []pamEntry
	for _, e := range stack {
		if e.Type == typ && e.base() == module && !e.ignoresFailure(false) {
			out = append(out, e)
		}
	}
	return out
}

// accessRule is one line of access.conf.
type accessRule struct {
	File    string
	Line    int
	Text    string
	Allow   bool
	Users   string
	Origins string
}

func parseAccessRules(file string, data []byte, sep string) []accessRule {
	var out []accessRule
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(strings.TrimSuffix(l, "\r"))
		if l == "" || l[0] == '#' {
			continue
		}
		f := strings.SplitN(l, sep, 3)
		if len(f) != 3 {
			continue
		}
		perm := strings.TrimSpace(f[0])
		if perm != "+" && perm != "-" {
			continue
		}
		out = append(out, accessRule{File: file, Line: i + 1, Text: l, Allow: perm == "+", Users: f[1], Origins: f[2]})
	}
	return out
}

// accessWho is what pam_access matches a rule against.
type accessWho struct {
	User       string
	Groups     []string
	From       string // PAM_RHOST: the client address (UseDNS no)
	NoDefGroup bool
}

// listMatch is pam_access list_match: tokens up to EXCEPT; a match holds
// unless the list after EXCEPT matches too.
func listMatch(list string, match func(string) bool) bool {
	toks := strings.FieldsFunc(list, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' })
	for i, t := range toks {
		if strings.EqualFold(t, "EXCEPT") {
			return false
		}
		if match(t) {
			for j := i + 1; j < len(toks); j++ {
				if strings.EqualFold(toks[j], "EXCEPT") {
					return !listMatch(strings.Join(toks[j+1:], " "), match)
				}
			}
			return true
		}
	}
	return false
}

func (w accessWho) userMatch(tok string) bool {
	if at := strings.IndexByte(tok[1:], '@'); at >= 0 {
		return w.userMatch(tok[:at+1]) && w.fromMatch(tok[at+2:])
	}
	switch {
	case tok[0] == '@':
		return false // netgroups are not evaluated
	case len(tok) > 2 && tok[0] == '(' && tok[len(tok)-1] == ')':
		return slices.Contains(w.Groups, tok[1:len(tok)-1])
	case strings.EqualFold(tok, "ALL") || strings.EqualFold(tok, w.User):
		return true
	}
	return !w.NoDefGroup && slices.Contains(w.Groups, tok)
}

func (w accessWho) fromMatch(tok string) bool {
	from := w.From
	switch {
	case from == "":
		return false
	case strings.EqualFold(tok, "ALL") || strings.EqualFold(tok, from):
		return true
	case tok[0] == '@' || tok[0] == '.':
		return false // netgroups and domains need name service lookups
	case strings.EqualFold(tok, "LOCAL"):
		return !strings.Contains(from, ".")
	case strings.HasSuffix(tok, "."):
		return strings.HasPrefix(from, tok)
	}
	a, err := netip.ParseAddr(from)
	if err != nil {
		return false
	}
	if strings.EqualFold(tok, "localhost") {
		return a.IsLoopback()
	}
	if addr, bits, ok := strings.Cut(tok, "/"); ok {
		if p, err := netip.ParsePrefix(tok); err == nil {
			return p.Contains(a)
		}
		// address/netmask
		na, err1 := netip.ParseAddr(addr)
		m, err2 := netip.ParseAddr(bits)
		if err1 != nil || err2 != nil || !na.Is4() || !m.Is4() || !a.Is4() {
			return false
		}
		x, y, mm := na.As4(), a.As4(), m.As4()
		for i := range mm {
			if x[i]&mm[i] != y[i]&mm[i] {
				return false
			}
		}
		return true
	}
	if t, err := netip.ParseAddr(tok); err == nil {
		return t.Unmap() == a.Unmap()
	}
	return false
}

// accessVerdict applies rules to w: the first rule whose users and
// origins both match decides; with none, access is granted.
func accessVerdict(rules []accessRule, w accessWho) (accessRule, bool) {
	for _, r := range rules {
		if listMatch(r.Users, w.userMatch) && listMatch(r.Origins, w.fromMatch) {
			return r, r.Allow
		}
	}
	return accessRule{}, true
}
