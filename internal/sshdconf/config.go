package sshdconf

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
)

// Where sshd's configuration lives.
const (
	Dir        = "/etc/ssh" // SSHDIR: relative Include patterns are under it
	MainConfig = "/etc/ssh/sshd_config"
	DropInDir  = "/etc/ssh/sshd_config.d"
)

// maxDepth is servconf.c SERVCONF_MAX_DEPTH: sshd refuses deeper Includes.
const maxDepth = 16

// maxLines bounds what Read returns: files that include each other fan
// out exponentially up to maxDepth (sshd then refuses to start anyway).
const maxLines = 20000

// Line is one keyword line of the sshd configuration.
type Line struct {
	File    string
	Line    int
	Keyword string   // lower case
	Value   string   // the arguments as written
	Args    []string // the arguments as sshd splits them (quotes removed, a trailing comment dropped)
	// Match is the enclosing Match line with its place ("Match User bob at
	// FILE:N"), "" for a global line. A Match block ends at the next Match
	// or at the end of the file it is in (sshd restores the includer's
	// state after an Include).
	Match string
}

// Global reports whether the line applies to every connection.
func (l Line) Global() bool { return l.Match == "" }

func (l Line) String() string {
	s := fmt.Sprintf("%s:%d: %s", l.File, l.Line, strings.TrimSpace(Spelling(l.Keyword)+" "+l.Value))
	if l.Match != "" {
		s += " (in " + l.Match + ")"
	}
	return s
}

// SplitLine splits "Keyword value", "Keyword=value" or "Keyword = value"
// as servconf.c's strdelim does; comments and blank lines give "".
func SplitLine(raw string) (kw, val string) {
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

// SplitArgs splits a value as misc.c argv_split does for sshd_config:
// words separated by blanks, "double" or 'single' quotes group a word, a
// backslash escapes a quote or a backslash, and a word starting with #
// ends the line.
func SplitArgs(val string) []string {
	var out []string
	i := 0
	for {
		for i < len(val) && (val[i] == ' ' || val[i] == '\t') {
			i++
		}
		if i >= len(val) || val[i] == '#' {
			return out
		}
		var w strings.Builder
		var quote byte
		for ; i < len(val); i++ {
			c := val[i]
			switch {
			case c == '\\' && i+1 < len(val) && (val[i+1] == '\\' || val[i+1] == '"' || val[i+1] == '\'' || (quote == 0 && val[i+1] == ' ')):
				i++
				w.WriteByte(val[i])
				continue
			case quote == 0 && (c == ' ' || c == '\t'):
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
				continue
			case quote != 0 && c == quote:
				quote = 0
				continue
			default:
				w.WriteByte(c)
				continue
			}
			break // an unquoted blank ends the word
		}
		out = append(out, w.String())
	}
}

// ParseFile returns the keyword lines of one file, Include not expanded,
// each with the Match block it stands in (match is the block the file
// starts in: "" for the main file).
func ParseFile(name, content, match string) []Line {
	var out []Line
	cur := match
	for i, raw := range strings.Split(content, "\n") {
		kw, val := SplitLine(raw)
		if kw == "" {
			continue
		}
		l := Line{File: name, Line: i + 1, Keyword: kw, Value: val, Args: SplitArgs(val), Match: cur}
		if kw == "match" {
			if strings.EqualFold(strings.TrimSpace(val), "all") {
				cur = ""
			} else {
				cur = fmt.Sprintf("Match %s at %s:%d", val, name, i+1)
			}
			l.Match = cur
		}
		out = append(out, l)
	}
	return out
}

// IncludePattern is where sshd looks for an Include argument: relative
// patterns are under /etc/ssh (servconf.c; a leading ~ is not expanded).
func IncludePattern(arg string) string {
	if strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, "~") {
		return arg
	}
	return Dir + "/" + arg
}

// GlobMatch matches a path as glob(3) without GLOB_PERIOD does, the way
// sshd expands Include: component by component, and a leading dot in a
// name only matches a leading dot in the pattern.
func GlobMatch(pattern, name string) bool {
	pc, nc := strings.Split(pattern, "/"), strings.Split(name, "/")
	if len(pc) != len(nc) {
		return false
	}
	for i := range pc {
		if strings.HasPrefix(nc[i], ".") && !strings.HasPrefix(pc[i], ".") {
			return false
		}
		if ok, _ := path.Match(pc[i], nc[i]); !ok {
			return false
		}
	}
	return true
}

// Glob returns the names that pattern matches, sorted as glob(3) sorts
// them (byte order: sshd runs in the C locale).
func Glob(pattern string, names []string) []string {
	var out []string
	for _, n := range names {
		if GlobMatch(pattern, n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Read returns every keyword line of the configuration rooted at
// MainConfig, in the order sshd reads them: each Include expanded where
// it stands (every argument a glob, relative to /etc/ssh, matches sorted,
// dot files only for a dot pattern), its files in the Match block of the
// Include line, a Match inside them ending with the file. files maps each
// path the host dumped to its content; a path that is not there does not
// exist. Include lines themselves are kept.
func Read(files map[string][]byte) []Line {
	var r reader
	r.read(files, "")
	return r.lines
}

// Before reports whether sshd reads target (which need not exist) from a
// global Include — so that its global lines apply to every connection —
// and returns the global lines sshd reads before it: the lines whose
// values win over target's for every keyword where the first value wins.
func Before(files map[string][]byte, target string) (included bool, before []Line) {
	r := reader{target: target}
	r.read(files, target)
	if !r.found {
		return false, nil
	}
	for _, l := range r.lines {
		if l.Global() && l.Keyword != "include" && l.Keyword != "match" {
			before = append(before, l)
		}
	}
	return true, before
}

type reader struct {
	lines  []Line
	target string // Before: stop where this file would be read
	found  bool
	done   bool
}

func (r *reader) read(files map[string][]byte, extra string) {
	names := make([]string, 0, len(files)+1)
	for n := range files {
		names = append(names, n)
	}
	if extra != "" && files[extra] == nil {
		names = append(names, extra)
	}
	var walk func(file, match string, depth int)
	walk = func(file, match string, depth int) {
		data, ok := files[file]
		if !ok || depth > maxDepth {
			return
		}
		for _, l := range ParseFile(file, string(data), match) {
			if r.done || len(r.lines) >= maxLines {
				return
			}
			r.lines = append(r.lines, l)
			if l.Keyword != "include" {
				continue
			}
			for _, arg := range l.Args {
				for _, n := range Glob(IncludePattern(arg), names) {
					if r.target != "" && n == r.target {
						r.found, r.done = l.Global(), true
						return
					}
					walk(n, l.Match, depth+1)
					if r.done {
						return
					}
				}
			}
		}
	}
	walk(MainConfig, "", 0)
}

// Sources returns the lines the effective value of keyword comes from:
// the first global line that sets it to that value (sshd keeps the first
// value it reads), or else the first Match-block line that does. For the
// keywords every line adds to (AllowUsers…) all lines are returned; so
// are they when none is written as sshd prints the value (an alias,
// another spelling). It returns nil when no line sets the keyword (sshd's
// default).
func Sources(lines []Line, keyword string, effective []string) []Line {
	kws := append([]string{keyword}, aliases[keyword]...)
	var cands []Line
	for _, l := range lines {
		if slices.Contains(kws, l.Keyword) {
			cands = append(cands, l)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	if Cumulative[keyword] {
		return cands
	}
	want := normValue(strings.Join(effective, " "))
	for _, c := range cands {
		if c.Global() {
			if normValue(c.Value) == want {
				return []Line{c}
			}
			break
		}
	}
	for _, c := range cands {
		if !c.Global() && normValue(c.Value) == want {
			return []Line{c}
		}
	}
	return cands
}

func normValue(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(strings.ReplaceAll(s, `"`, "")), " "))
}
