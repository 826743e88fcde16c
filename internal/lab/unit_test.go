package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestHostNames(t *testing.T) {
	tests := []struct {
		n           int
		first, last string
	}{
		{1, "lab01", "lab01"},
		{99, "lab01", "lab99"},
		{100, "lab001", "lab100"},
		{999, "lab001", "lab999"},
		{1000, "lab0001", "lab1000"},
	}
	for _, tt := range tests {
		got := hostNames("lab", tt.n)
		if len(got) != tt.n || got[0] != tt.first || got[len(got)-1] != tt.last {
			t.Errorf("hostNames(lab, %d) = %s … %s (%d), want %s … %s", tt.n, got[0], got[len(got)-1], len(got), tt.first, tt.last)
		}
	}
}

func TestBlockAddr(t *testing.T) {
	tests := []struct {
		b    block
		host int
		want string
	}{
		{0, 1, "127.100.0.1"},
		{255, 250, "127.100.255.250"},
		{256, 1, "127.101.0.1"},
		{maxBlocks - 1, 7, "127.199.255.7"},
	}
	for _, tt := range tests {
		if got := tt.b.addr(tt.host).String(); got != tt.want {
			t.Errorf("block(%d).addr(%d) = %s, want %s", tt.b, tt.host, got, tt.want)
		}
	}
	if got := block(maxBlocks - 1).next(); got != 0 {
		t.Errorf("last block's next = %d, want 0", got)
	}
}

func TestAllocAddrs(t *testing.T) {
	// A block another lab holds, a busy address, and more hosts than one
	// block has.
	start := randomBlock()
	other, err := net.Listen("unix", start.next().lockName())
	if err != nil {
		t.Fatalf("reserve block for another lab: %v", err)
	}
	defer other.Close()
	busy := start.addr(3)
	free := func(a netip.Addr) error {
		if a == busy {
			return fmt.Errorf("%s:22 is in use", a)
		}
		return nil
	}
	addrs, alloc, err := allocAddrs(300, start, free)
	if err != nil {
		t.Fatal(err)
	}
	defer alloc.release()
	if len(addrs) != 300 {
		t.Fatalf("got %d addresses, want 300", len(addrs))
	}
	seen := map[netip.Addr]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Errorf("address %s given twice", a)
		}
		seen[a] = true
		if a == busy {
			t.Errorf("busy address %s given out", a)
		}
		b4 := a.As4()
		if b4[3] < 1 || b4[3] > hostsPerBlck {
			t.Errorf("address %s outside .1-.%d", a, hostsPerBlck)
		}
		if netip.PrefixFrom(start.next().addr(0), 24).Contains(a) {
			t.Errorf("address %s from a block another lab holds", a)
		}
	}
	if !seen[start.addr(1)] || !seen[start.next().next().addr(1)] {
		t.Errorf("want addresses from the start block and the one after the held one, got %s … %s", addrs[0], addrs[len(addrs)-1])
	}
	// The blocks are now ours: another allocation starting there skips them.
	again, alloc2, err := allocAddrs(1, start, free)
	if err != nil {
		t.Fatal(err)
	}
	defer alloc2.release()
	if want := start.next().next().next().addr(1); again[0] != want {
		t.Errorf("second lab got %s, want %s: the first block after the three held ones", again[0], want)
	}
}

func TestAllocAddrsAllBusy(t *testing.T) {
	busy := func(a netip.Addr) error { return fmt.Errorf("%s:22 is in use", a) }
	_, _, err := allocAddrs(1, randomBlock(), busy)
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("allocAddrs with every port busy: err = %v, want one saying a port is in use", err)
	}
}

func TestCheckMessage(t *testing.T) {
	has := func(missing ...string) func(string) (string, error) {
		return func(bin string) (string, error) {
			for _, m := range missing {
				if m == bin {
					return "", errors.New("not found")
				}
			}
			return "/usr/bin/" + bin, nil
		}
	}
	ok := func() error { return nil }
	tests := []struct {
		name  string
		euid  int
		look  func(string) (string, error)
		probe func() error
		want  []string // substrings; none means nil error
	}{
		{"all there", 0, has(), ok, nil},
		{"not root", 1000, has(), ok, []string{"root"}},
		{"no sshd or sudo", 0, has(sshdPath, "sudo"), ok, []string{"/usr/sbin/sshd", "apt-get install openssh-server sudo"}},
		{"no util-linux", 0, has("unshare", "nsenter"), ok, []string{"unshare (apt-get install util-linux)", "nsenter", "apt-get install util-linux"}},
		{"no namespaces", 0, has(), func() error { return errors.New("Operation not permitted") }, []string{"namespaces", "Operation not permitted"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := check(tt.euid, tt.look, tt.probe)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("check = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("check = nil, want an error with %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("check = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestSetDBEntry(t *testing.T) {
	db := "root:x:0:0:root:/root:/bin/bash\nadmin:x:5:5::/nonexistent:/usr/sbin/nologin\nbob:x:1000:1000::/home/bob:/bin/sh"
	got := string(setDBEntry([]byte(db), "admin", "admin:x:1001:1001::/home/admin:/bin/bash"))
	want := "root:x:0:0:root:/root:/bin/bash\nbob:x:1000:1000::/home/bob:/bin/sh\nadmin:x:1001:1001::/home/admin:/bin/bash\n"
	if got != want {
		t.Errorf("setDBEntry =\n%s\nwant\n%s", got, want)
	}
	if id := freeID([]byte(db), []byte("users:x:100:\nbobg:x:1001:")); id != 1002 {
		t.Errorf("freeID = %d, want 1002 (1000 is a uid, 1001 a gid)", id)
	}
}

func TestExecErrorMessage(t *testing.T) {
	err := &ExecError{Host: "lab01", Status: 3, State: "exit status 3", Stderr: []byte("no such file\n")}
	if got, want := err.Error(), "lab01: command failed: exit status 3: no such file"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestSweepStale(t *testing.T) {
	tmp := t.TempDir()
	mk := func(name string, lock bool) string {
		d := tmp + "/" + name
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if lock {
			if err := os.WriteFile(d+"/"+lockFile, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	stale := mk(dirPattern+"stale", true)
	live := mk(dirPattern+"live", true)
	creating := mk(dirPattern+"creating", false)
	other := mk("something-else", true)
	f, err := os.Open(live + "/" + lockFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	sweepStale(tmp)
	for d, want := range map[string]bool{stale: false, live: true, creating: true, other: true} {
		_, err := os.Stat(d)
		if got := err == nil; got != want {
			t.Errorf("after sweep, %s exists = %v, want %v", d, got, want)
		}
	}
}

func TestSetShellVar(t *testing.T) {
	tests := []struct{ in, want string }{
		{"# opts\nSSHD_OPTS=\n", "# opts\nSSHD_OPTS=\"-E /var/log/auth.log\"\n"},
		{"SSHD_OPTS=-4\nX=1\nSSHD_OPTS=-6\n", "SSHD_OPTS=\"-E /var/log/auth.log\"\nX=1\n"},
		{"X=1", "X=1\nSSHD_OPTS=\"-E /var/log/auth.log\"\n"},
		{"", "SSHD_OPTS=\"-E /var/log/auth.log\"\n"},
	}
	for _, tt := range tests {
		if got := string(setShellVar([]byte(tt.in), "SSHD_OPTS", `"-E /var/log/auth.log"`)); got != tt.want {
			t.Errorf("setShellVar(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
