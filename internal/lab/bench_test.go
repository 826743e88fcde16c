package lab

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkStart starts and stops labs of 100 hosts and reports the
// processes' proportional memory (PSS) per host.
//
//	go test -run '^$' -bench Start -benchtime 1x ./internal/lab/
func BenchmarkStart(b *testing.B) {
	if err := Check(); err != nil {
		b.Skipf("SKIP: lab needs root and openssh-server: %v", err)
	}
	for _, n := range []int{100} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			for b.Loop() {
				start := time.Now()
				l, err := Start(context.Background(), Options{Hosts: n})
				if err != nil {
					b.Fatal(err)
				}
				up := time.Since(start)
				var pss int
				for _, h := range l.Hosts {
					pss += hostPSS(h)
				}
				start = time.Now()
				if err := l.Stop(); err != nil {
					b.Fatal(err)
				}
				b.Logf("%d hosts: started in %v, stopped in %v, %d KiB PSS per host", n, up, time.Since(start), pss/n)
				b.ReportMetric(float64(pss)/float64(n), "PSS-KiB/host")
			}
		})
	}
}

// hostPSS sums the PSS (KiB) of unshare and the processes in h's namespace.
func hostPSS(h *Host) int {
	ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", h.initPID))
	pids := []int{h.PID}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p)); err == nil && l == ns {
			pids = append(pids, p)
		}
	}
	total := 0
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
				kb, _ := strconv.Atoi(f[1])
				total += kb
			}
		}
	}
	return total
}
