//go:build !linux

package lab

import (
	"context"
	"io"
	"syscall"
)

// The lab needs Linux namespaces; elsewhere the package compiles, so that
// tests importing it build, and Check reports why no lab can start.

func probeNamespaces() error { return errNotLinux }

func (h *Host) start(script string) error { return errNotLinux }

func (h *Host) setup(ctx context.Context, lower string) error { return errNotLinux }

func overlayWorks(dir string) bool { return false }

func hostSysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func (h *Host) killSystemd() error { return errNotLinux }

func (h *Host) containerInit() (int, error) { return 0, errNotLinux }

func (h *Host) systemdDiagnostics() string { return "" }

func (l *Lab) startSystemdHosts(ctx context.Context, adminPub []byte, log io.Writer) error {
	return errNotLinux
}

func (l *Lab) labCgroupsIfSystemd() []string { return nil }

func removeCgroup(cg string) error { return nil }

func (l *Lab) stopReaper() {}
