package cli

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/breakglass/breakglass/internal/report"
)

// cutProxy forwards TCP connections to target and resets each one, in both
// directions, once the client has sent limit bytes: a connection lost in
// the middle of what the client was sending.
func cutProxy(t *testing.T, target string, limit int) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	reset := func(cs ...net.Conn) {
		for _, c := range cs {
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			c.Close()
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() { // server to client, untouched
				defer wg.Done()
				buf := make([]byte, 32<<10)
				for {
					n, err := up.Read(buf)
					if n > 0 {
						if _, err := c.Write(buf[:n]); err != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				reset(c, up)
			}()
			go func() { // client to server, cut at limit
				defer wg.Done()
				buf := make([]byte, 4<<10)
				sent := 0
				for {
					n, err := c.Read(buf)
					if sent+n >= limit {
						up.Write(buf[:limit-sent])
						break
					}
					if n > 0 {
						if _, err := up.Write(buf[:n]); err != nil {
							break
						}
						sent += n
					}
					if err != nil {
						break
					}
				}
				reset(c, up)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// TestConnectionResetDuringWriteOnLab cuts the connection while breakglass
// sends the script that writes a large authorized_keys file: the host is
// reported lost, the file is not half-written (it does not exist, as
// before), no temp file is left, the admin still logs in, and the next run
// converges.
func TestConnectionResetDuringWriteOnLab(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	f := newFleet(t, 1, "", nil)
	h := f.lab.Hosts[0]
	// About 500 KB of keys: the script that writes them is cut at 200 KB,
	// well after the handshake, the facts and the user's creation.
	var keys []string
	for i := range 5000 {
		seed := make([]byte, ed25519.SeedSize)
		seed[0], seed[1] = byte(i), byte(i>>8)
		pk, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(seed).Public())
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, fmt.Sprintf("%q", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))+fmt.Sprintf(" key%04d@reset-test-padding-padding", i)))
	}
	pb := write(t, f.dir, "big.yml", `- hosts: all
  become: true
  tasks:
    - user: {name: bg-big, shell: /bin/bash}
    - authorized_key: {user: bg-big, keys: [`+strings.Join(keys, ", ")+`]}
`)
	port := cutProxy(t, net.JoinHostPort(h.Addr, "22"), 200<<10)
	cutInv := write(t, f.dir, "cut.yml", fmt.Sprintf("all:\n  vars:\n    ansible_user: admin\n    ansible_ssh_private_key_file: %s\n  hosts:\n    cut:\n      ansible_host: 127.0.0.1\n      ansible_port: %d\n", f.lab.AdminKey, port))
	kh := write(t, f.dir, "known_hosts_cut", hostKeyLine(t, h, fmt.Sprintf("[127.0.0.1]:%d", port)))

	code, out, stderr := runCLI(t, "apply", "-i", cutInv, "--known-hosts", kh, "--timeout", "60s", "--format", "json", pb)
	if code&report.ExitUnreachable == 0 {
		t.Fatalf("exit %d, want bit 4 (the connection was lost)\n%s\n%s", code, out, stderr)
	}
	hr := decodeReport(t, out).Hosts[0]
	if hr.Status != report.StatusUnreachable || !strings.Contains(hr.Error, "connection lost") {
		t.Errorf("cut host: %s %q", hr.Status, hr.Error)
	}
	for _, tr := range hr.Tasks {
		if tr.Module == "authorized_key" && tr.Status == report.StatusChanged {
			t.Errorf("the key task is reported changed although its script was cut: %+v", tr)
		}
	}
	// Nothing of the cut script ran: no key file, no temp file.
	if got, err := h.Exec(context.Background(), "ls -A /home/bg-big/.ssh 2>/dev/null; getent passwd bg-big >/dev/null && echo user-exists", nil); err != nil || strings.TrimSpace(string(got)) != "user-exists" {
		t.Errorf("after the cut: %q %v, want the user (created before the cut) and no .ssh content", got, err)
	}
	if logins(t, h) == 0 {
		t.Fatal("no login was ever accepted")
	}
	before := logins(t, h)
	if code, _, _ := runCLI(t, f.args("apply", pb)...); code != 0 {
		t.Fatalf("apply after the cut: exit %d", code)
	}
	if logins(t, h) <= before {
		t.Error("the admin could not log in after the cut")
	}
	if got, err := h.Exec(context.Background(), "wc -l </home/bg-big/.ssh/authorized_keys", nil); err != nil || strings.TrimSpace(string(got)) != "5000" {
		t.Errorf("after the next run: %q lines, %v", got, err)
	}
}
