//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package transport

import (
	"errors"
	"os"
	"syscall"
)

// lockDir takes an exclusive advisory lock on a directory, so that two
// breakglass processes do not rewrite the same known_hosts file at once. The
// directory is locked, not the file, because the file is replaced by rename.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd())
	for {
		err = syscall.Flock(fd, syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		syscall.Flock(fd, syscall.LOCK_UN)
		f.Close()
	}, nil
}
