package engine

import (
	"fmt"
	"path"
	"strings"

	"github.com/breakglass/breakglass/internal/shell"
)

// BackupPath is where breakglass keeps the previous version of a file it
// replaced: .NAME.breakglass.bak beside it, one name for every writer
// (bg_write, bg_commit and bg_keep in nofollow.sh, which name it on the
// host with bg_bak, and the transaction's Begin). Only the newest
// previous version is kept.
//
// The name starts with a dot and ends in .bak, so no reader of a
// configuration directory takes it for configuration: sudo's @includedir
// skips names that contain a dot, sshd's Include glob
// (sshd_config.d/*.conf) matches no name that starts with one, Debian's
// cron and run-parts take only [A-Za-z0-9_-] names (run-parts
// --lsbsysinit none whose part after the last '-' holds a dot: a name
// ending in -bak would pass), and cronie, insserv and systemd skip dot
// files.
func BackupPath(p string) string {
	return path.Dir(p) + "/." + path.Base(p) + ".breakglass.bak"
}

// OwnFile reports whether name (a base name) is a file breakglass leaves
// beside a file it writes: the previous version (BackupPath, or one of the
// names earlier versions used: NAME.breakglass.bak, NAME.breakglass-bak,
// .NAME.breakglass-bak), or what a killed run can leave: the writer's temp
// file (.NAME.breakglass-tmp.XXXXXX, or the older fixed
// .NAME.breakglass-tmp), the sudoers transaction's names for the new and
// the previous drop-in (.NAME.breakglass-new.RUN, .NAME.breakglass-old.RUN)
// and a transaction's restore copy (.NAME.breakglass-restore[.PID]). Such
// a file is no configuration anyone meant to be in force: audit never
// suggests putting it there.
func OwnFile(name string) bool {
	if strings.HasSuffix(name, ".breakglass.bak") || strings.HasSuffix(name, ".breakglass-bak") {
		return true
	}
	if !strings.HasPrefix(name, ".") {
		return false
	}
	for _, what := range []string{"tmp", "new", "old", "restore"} {
		_, rest, ok := strings.Cut(name, ".breakglass-"+what)
		if ok && (rest == "" || len(rest) > 1 && rest[0] == '.' && !strings.Contains(rest[1:], ".")) {
			return true
		}
	}
	return false
}

// writeTempShell is shell that writes content with the one writer's
// first half, bg_temp (nofollow.sh, which the script must include): a new
// temp file beside p, owner and mode set, fsynced, its name in the shell
// variable v. On failure it calls bg_fail with what happened.
func writeTempShell(v, p, owner, mode string, content []byte) string {
	return fmt.Sprintf("%s=$(bg_temp %s %s %s base64 -d 2>&1 %s\n) || bg_fail %s \"$%s\"\n",
		v, shell.Quote(p), owner, mode, base64Doc(content, ""), shell.Quote("write "+p), v)
}
