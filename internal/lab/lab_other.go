//go:build !linux

package lab

import (
	"context"
	"syscall"
)

// The lab needs Linux namespaces; elsewhere the package compiles, so that
// tests importing it build, and Check reports why no lab can start.

func probeNamespaces() error { return errNotLinux }

func (h *Host) start(script string) error { return errNotLinux }

func (h *Host) setup(ctx context.Context, lower string) error { return errNotLinux }

func overlayWorks(dir string) bool { return false }

func hostSysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
