package lab

import (
	"strings"
	"syscall"
	"testing"
)

// The hosts must die with the process that started them, even when it is
// SIGKILLed and no Stop or t.Cleanup can run: unshare gets Pdeathsig
// SIGKILL, and its --kill-child passes it on to the namespace's pid 1.
// TestHostsDieWithProcess checks the whole chain for real.
func TestUnshareHasPdeathsig(t *testing.T) {
	if sig := hostSysProcAttr().Pdeathsig; sig != syscall.SIGKILL {
		t.Errorf("unshare Pdeathsig = %v, want SIGKILL", sig)
	}
	if !strings.Contains(initScript, "/usr/sbin/sshd -E /var/log/auth.log") {
		t.Errorf("init script does not start sshd logging to /var/log/auth.log")
	}
}
