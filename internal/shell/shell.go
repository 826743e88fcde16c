// Package shell builds POSIX shell command lines that no input can break out of.
package shell

import (
	"fmt"
	"regexp"
	"strings"
)

// Quote returns s as one single-quoted shell word.
func Quote(s string) string {
	if s != "" && safeWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

var safeWord = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// Join quotes each word and joins them with spaces.
func Join(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = Quote(w)
	}
	return strings.Join(q, " ")
}

var userName = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)

// ValidUser reports an error unless name is a user name breakglass accepts:
// [a-z_][a-z0-9_-]*, at most 32 characters.
func ValidUser(name string) error {
	if len(name) > 32 || !userName.MatchString(name) {
		return fmt.Errorf("invalid user name %q: want [a-z_][a-z0-9_-]*, at most 32 characters", name)
	}
	return nil
}

// ValidPath reports an error unless p is an absolute path with no control
// characters and no "." or ".." components.
func ValidPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("invalid path %q: must be absolute", p)
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("invalid path %q: control character", p)
		}
	}
	for _, c := range strings.Split(p, "/") {
		if c == "." || c == ".." {
			return fmt.Errorf("invalid path %q: %q component", p, c)
		}
	}
	return nil
}
