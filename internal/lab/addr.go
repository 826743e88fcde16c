package lab

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
)

// Addresses. Every lab takes whole 127.A.B.0/24 blocks (A in 100..199) and
// gives its hosts .1 to .250 of each. A block is reserved by binding an
// abstract unix socket named after it and holding it for the lab's life:
// labs in other processes (go test runs packages in parallel) skip reserved
// blocks, and the kernel frees the name when its process dies, however it
// dies. Each address's port 22 is also bound briefly, to skip anything else
// that listens there.

const (
	blockFirstA  = 100
	blockCountA  = 100 // A in 100..199
	hostsPerBlck = 250 // .1 .. .250
	maxBlocks    = blockCountA * 256
)

// block is the n-th /24 of the lab range: 127.(100+n/256).(n%256).0/24.
type block int

func (b block) addr(host int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, byte(blockFirstA + int(b)/256), byte(int(b) % 256), byte(host)})
}

func (b block) next() block { return (b + 1) % maxBlocks }

func (b block) lockName() string {
	return fmt.Sprintf("@breakglass-lab/%s/24", b.addr(0))
}

// addrAlloc holds the blocks a lab reserved.
type addrAlloc struct {
	locks []net.Listener
}

// allocAddrs reserves n addresses whose port 22 is free, starting at a
// random block. listenFree reports whether addr:22 can be bound.
func allocAddrs(n int, start block, listenFree func(netip.Addr) error) ([]netip.Addr, *addrAlloc, error) {
	a := &addrAlloc{}
	var addrs []netip.Addr
	var lastBusy error
	b := start
	for tried := 0; len(addrs) < n; tried++ {
		if tried == maxBlocks || (tried >= 64 && len(addrs) == 0) {
			a.release()
			if lastBusy != nil {
				return nil, nil, fmt.Errorf("find %d free lab addresses: tried %d blocks of 127.100-199.x.0/24: %w", n, tried, lastBusy)
			}
			return nil, nil, fmt.Errorf("find %d free lab addresses: tried %d blocks of 127.100-199.x.0/24, all reserved by other labs", n, tried)
		}
		l, err := net.Listen("unix", b.lockName())
		if err != nil {
			b = b.next()
			continue // another lab holds this block
		}
		got := len(addrs)
		for i := 1; i <= hostsPerBlck && len(addrs) < n; i++ {
			addr := b.addr(i)
			if err := listenFree(addr); err != nil {
				lastBusy = err
				continue
			}
			addrs = append(addrs, addr)
		}
		if len(addrs) > got {
			a.locks = append(a.locks, l)
		} else {
			l.Close()
		}
		b = b.next()
	}
	return addrs, a, nil
}

func randomBlock() block { return block(rand.IntN(maxBlocks)) }

// portFree binds addr:22 and closes it at once.
func portFree(addr netip.Addr) error {
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 22).String())
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%s:22 is in use (is an sshd listening on 0.0.0.0:22 or a stale lab still running?): %w", addr, err)
		}
		return fmt.Errorf("bind %s:22: %w", addr, err)
	}
	return l.Close()
}

func (a *addrAlloc) release() {
	if a == nil {
		return
	}
	for _, l := range a.locks {
		l.Close()
	}
	a.locks = nil
}
