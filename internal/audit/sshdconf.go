package audit

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
)

// The effective configuration (sshd -T -C …) says what sshd will do; the
// files say where it comes from. configLines reads the files in sshd's
// order — the main file, each Include expanded where it stands (globs
// sorted, relative paths under /etc/ssh) — so that a finding can name the
// file and line of the value sshd uses.

const mainSSHDConfig = "/etc/ssh/sshd_config"

// confLine is one keyword line of the sshd configuration.
type confLine struct {
	File    string
	Line    int
	Keyword string // lower case
	Value   string // the arguments as written
	Match   string // the enclosing Match line ("" for global), with its place
}

func (c confLine) String() string {
	s := fmt.Sprintf("%s:%d: %s", c.File, c.Line, strings.TrimSpace(c.rawKeyword()+" "+c.Value))
	if c.Match != "" {
		s += " (in " + c.Match + ")"
	}
	return s
}

// rawKeyword is how sshd_config(5) spells the keyword, for messages.
func (c confLine) rawKeyword() string {
	if k, ok := keywordSpelling[c.Keyword]; ok {
		return k
	}
	return c.Keyword
}

var keywordSpelling = map[string]string{
	"allowusers": "AllowUsers", "denyusers": "DenyUsers", "allowgroups": "AllowGroups", "denygroups": "DenyGroups",
	"pubkeyauthentication": "PubkeyAuthentication", "authenticationmethods": "AuthenticationMethods",
	"permitrootlogin": "PermitRootLogin", "maxauthtries": "MaxAuthTries", "usepam": "UsePAM",
	"authorizedkeysfile": "AuthorizedKeysFile", "strictmodes": "StrictModes",
	"pubkeyacceptedalgorithms": "PubkeyAcceptedAlgorithms", "pubkeyacceptedkeytypes": "PubkeyAcceptedKeyTypes",
	"requiredrsasize": "RequiredRSASize", "usedns": "UseDNS", "authorizedkeyscommand": "AuthorizedKeysCommand",
	"pidfile": "PidFile", "forcecommand": "ForceCommand", "chrootdirectory": "ChrootDirectory",
	"maxsessions": "MaxSessions", "revokedkeys": "RevokedKeys",
}

// keywordAliases are deprecated names sshd still reads for a keyword.
var keywordAliases = map[string][]string{
	"pubkeyacceptedalgorithms":     {"pubkeyacceptedkeytypes"},
	"kbdinteractiveauthentication": {"challengeresponseauthentication"},
}

// configLines returns every keyword line of the configuration rooted at
// mainSSHDConfig, in the order sshd reads them. files maps each path the
// host dumped to its content.
func configLines(files map[string][]byte) []confLine {
	var out []confLine
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var read func(file, match string, depth int)
	read = func(file, match string, depth int) {
		data, ok := files[file]
		if !ok || depth > 16 {
			return
		}
		cur := match
		for i, raw := range strings.Split(string(data), "\n") {
			kw, val := splitConfLine(raw)
			if kw == "" {
				continue
			}
			switch kw {
			case "match":
				if strings.EqualFold(strings.TrimSpace(val), "all") {
					cur = ""
				} else {
					cur = fmt.Sprintf("Match %s at %s:%d", val, file, i+1)
				}
				continue
			case "include":
				for _, pat := range strings.Fields(val) {
					if !strings.HasPrefix(pat, "/") {
						pat = "/etc/ssh/" + pat
					}
					for _, n := range names {
						if ok, _ := path.Match(pat, n); ok {
							read(n, cur, depth+1)
						}
					}
				}
				continue
			}
			out = append(out, confLine{File: file, Line: i + 1, Keyword: kw, Value: val, Match: cur})
		}
	}
	read(mainSSHDConfig, "", 0)
	return out
}

// includes reports whether the main configuration includes file p, before
// any Match block (so that a global setting there is global).
func includes(main []byte, p string) bool {
	for _, raw := range strings.Split(string(main), "\n") {
		kw, val := splitConfLine(raw)
		switch kw {
		case "match":
			return false
		case "include":
			for _, pat := range strings.Fields(val) {
				if !strings.HasPrefix(pat, "/") {
					pat = "/etc/ssh/" + pat
				}
				if ok, _ := path.Match(pat, p); ok {
					return true
				}
			}
		}
	}
	return false
}

// splitConfLine splits "Keyword value", "Keyword=value" or
// "Keyword = value" the way sshd's argv_split does closely enough for
// reporting; comments and blank lines give "".
func splitConfLine(raw string) (kw, val string) {
	s := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
	if s == "" || s[0] == '#' {
		return "", ""
	}
	end := strings.IndexAny(s, " \t=")
	if end < 0 {
		return strings.ToLower(s), ""
	}
	kw = strings.ToLower(s[:end])
	val = strings.TrimLeft(s[end:], " \t")
	val = strings.TrimLeft(strings.TrimPrefix(val, "="), " \t")
	return kw, val
}

// sources returns the lines the effective value of keyword comes from:
// the first global line that sets it to that value (sshd keeps the first
// value it reads), or else the first Match-block line that does. For list
// keywords (AllowUsers…) every line adds to the list, so all are
// returned; so are they when none is written as sshd prints the value (an
// alias, another spelling). It returns nil when no line sets the keyword
// (sshd's default).
func sources(lines []confLine, keyword string, effective []string) []confLine {
	kws := append([]string{keyword}, keywordAliases[keyword]...)
	var cands []confLine
	for _, l := range lines {
		if slices.Contains(kws, l.Keyword) {
			cands = append(cands, l)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	switch keyword {
	case "allowusers", "denyusers", "allowgroups", "denygroups":
		return cands
	}
	want := normValue(strings.Join(effective, " "))
	for _, c := range cands {
		if c.Match == "" {
			if normValue(c.Value) == want {
				return []confLine{c}
			}
			break
		}
	}
	for _, c := range cands {
		if c.Match != "" && normValue(c.Value) == want {
			return []confLine{c}
		}
	}
	return cands
}

// evidence formats sources: "" for sshd's default.
func evidence(lines []confLine, keyword string, effective []string) string {
	var s []string
	for _, c := range sources(lines, keyword, effective) {
		s = append(s, c.String())
	}
	return strings.Join(s, "; ")
}

func normValue(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(strings.ReplaceAll(s, `"`, "")), " "))
}

// setting formats an effective value and where it comes from:
// `PubkeyAuthentication no (/etc/ssh/sshd_config.d/x.conf:2: …)`.
func setting(lines []confLine, keyword string, effective ...string) string {
	name := confLine{Keyword: keyword}.rawKeyword()
	s := name + " " + strings.Join(effective, " ")
	if ev := evidence(lines, keyword, effective); ev != "" {
		return s + " [" + ev + "]"
	}
	return s + " [sshd's default]"
}
