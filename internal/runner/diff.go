package runner

import (
	"fmt"
	"strings"
)

// UnifiedDiff shows the lines removed (-) and added (+) between before and
// after, with the unchanged lines around them, for --diff. It is a plain
// longest-common-subsequence diff: files here are small (keys, sudoers,
// sshd settings), and very large ones are summarised instead.
func UnifiedDiff(path, before, after string) string {
	a, b := splitLines(before), splitLines(after)
	var sb strings.Builder
	fmt.Fprintf(&sb, "--- %s (before)\n+++ %s (after)\n", path, path)
	if len(a)*len(b) > 4_000_000 {
		fmt.Fprintf(&sb, "@@ %d lines -> %d lines (too large to diff) @@\n", len(a), len(b))
		return sb.String()
	}
	// lcs[i][j] = length of the LCS of a[i:] and b[j:]
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			fmt.Fprintf(&sb, " %s\n", a[i])
			i++
			j++
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintf(&sb, "+%s\n", b[j])
			j++
		default:
			fmt.Fprintf(&sb, "-%s\n", a[i])
			i++
		}
	}
	return sb.String()
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}
