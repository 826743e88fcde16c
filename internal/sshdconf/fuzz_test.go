package sshdconf

import (
	"strings"
	"testing"
)

// FuzzRead: any configuration tree is read without panicking or looping
// (an Include of itself, of its includer), every line comes from a file
// of the tree, and what Before says sshd reads before a drop-in is what
// Read reads, in the same order.
func FuzzRead(f *testing.F) {
	f.Add("Include /etc/ssh/sshd_config.d/*.conf\nUsePAM yes\n", "PermitRootLogin no\nMatch User x\n\tPubkeyAuthentication no\n", "Include sshd_config\n")
	f.Add("include=sshd_config.d/* \"a b\" # c\nMatch all\n", "Include /etc/ssh/sshd_config.d/10.conf\n", "AllowUsers 'a b'\\\n")
	f.Fuzz(func(t *testing.T, main, a, b string) {
		files := map[string][]byte{
			MainConfig:                []byte(main),
			DropInDir + "/10.conf":    []byte(a),
			DropInDir + "/.hid.conf":  []byte(b),
			DropInDir + "/50-zz.conf": []byte(b),
		}
		lines := Read(files)
		for _, l := range lines {
			if _, ok := files[l.File]; !ok {
				t.Fatalf("line from a file not in the tree: %v", l)
			}
			if strings.Contains(l.File, "/.") {
				t.Fatalf("read a dot file: %v", l)
			}
		}
		included, before := Before(files, DropInDir+"/00-breakglass.conf")
		if !included && before != nil {
			t.Fatalf("lines before a file sshd does not read: %v", before)
		}
		i := 0
		for _, l := range before {
			for i < len(lines) && (lines[i].File != l.File || lines[i].Line != l.Line) {
				i++
			}
			if i == len(lines) {
				t.Fatalf("Before has %v, which Read does not have (in that order)", l)
			}
		}
	})
}
