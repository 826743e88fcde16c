package transport

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// PinPort records an extra port only when it presents the key verified on
// the main connection, hashed like the file, once; a different key, or a
// file that lists another key for the port, is an error and the file is
// left as it was.
func TestPinPort(t *testing.T) {
	hostKey, otherKey := newKey(t, "ed25519"), newKey(t, "ed25519")
	main := startFakeServer(t, []ssh.Signer{hostKey.signer})
	same := startFakeServer(t, []ssh.Signer{hostKey.signer})
	foreign := startFakeServer(t, []ssh.Signer{otherKey.signer})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	target := Target{Name: "fake", Host: main.host, Port: main.port}

	for _, hashed := range []bool{false, true} {
		line := khLine(main.addr(), hostKey.pub())
		if hashed {
			line = khHashed(main.addr(), hostKey.pub())
		}
		file := knownHostsFile(t, line)
		d, err := NewDialer(Config{KnownHostsFile: file})
		if err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadFile(file)

		// Another key on the port: refused, with or without record.
		for _, want := range []ssh.PublicKey{hostKey.pub(), nil} {
			_, err := d.PinPort(ctx, target, foreign.host, foreign.port, want, true)
			if !errors.Is(err, ErrPortKeyMismatch) {
				t.Errorf("foreign key on the port (want %v): err %v, want ErrPortKeyMismatch", want != nil, err)
			}
		}
		if after, _ := os.ReadFile(file); string(after) != string(before) {
			t.Fatalf("a mismatched key changed the file:\n%s", after)
		}

		// Check only: nothing written.
		pin, err := d.PinPort(ctx, target, same.host, same.port, hostKey.pub(), false)
		if err != nil || pin.Present || pin.Recorded {
			t.Fatalf("check: %+v %v", pin, err)
		}
		if after, _ := os.ReadFile(file); string(after) != string(before) {
			t.Fatal("check mode wrote the file")
		}
		pin, err = d.PinPort(ctx, target, same.host, same.port, hostKey.pub(), true)
		if err != nil || !pin.Recorded || pin.Host != "["+same.host+"]:"+strconv.Itoa(same.port) {
			t.Fatalf("record: %+v %v", pin, err)
		}
		after, _ := os.ReadFile(file)
		added := strings.TrimPrefix(string(after), string(before))
		if hashed != strings.HasPrefix(added, "|1|") || strings.Count(added, "\n") != 1 {
			t.Errorf("hashed file %v, added %q", hashed, added)
		}
		// The rest of the run trusts it, and a fresh run reads it.
		if pin, err = d.PinPort(ctx, target, same.host, same.port, hostKey.pub(), true); err != nil || !pin.Present {
			t.Errorf("again in the same run: %+v %v", pin, err)
		}
		d2, _ := NewDialer(Config{KnownHostsFile: file})
		if pin, err = d2.PinPort(ctx, target, same.host, same.port, nil, true); err != nil || !pin.Present {
			t.Errorf("a new run: %+v %v", pin, err)
		}
	}

	// The file lists another key for [host]:port: an error naming it.
	file := knownHostsFile(t, khLine(main.addr(), hostKey.pub()), khLine(same.addr(), otherKey.pub()))
	d, _ := NewDialer(Config{KnownHostsFile: file})
	before, _ := os.ReadFile(file)
	_, err := d.PinPort(ctx, target, same.host, same.port, hostKey.pub(), true)
	var changed *HostKeyChangedError
	if !errors.As(err, &changed) || !strings.Contains(err.Error(), "ssh-keygen -R") {
		t.Errorf("stale entry: err %v", err)
	}
	if after, _ := os.ReadFile(file); string(after) != string(before) {
		t.Error("a stale entry was overwritten")
	}
}
