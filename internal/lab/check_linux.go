package lab

import (
	"fmt"
	"os/exec"
	"strings"
)

// probeNamespaces creates the namespaces a host uses and runs true in them.
// Root in an unprivileged container passes every other check and fails here.
func probeNamespaces() error {
	out, err := exec.Command("unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child", "true").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
