package transport

import (
	"context"
	"errors"
	"fmt"
)

// MaxOutput bounds what breakglass keeps of one command's standard output
// on a host. Whatever a host returns, a run holds at most this much of it
// per host at a time (docs/design.md §5: memory is bounded whatever a host
// returns). It is generous for real use: the facts of hundreds of users
// with their keys are a few MiB. A command that writes more fails with an
// *OutputLimitError; what it wrote is dropped, and breakglass stops
// reading it (its session or root shell is closed).
const MaxOutput = 16 << 20

// ErrOutputLimit: a command wrote more on stdout than breakglass reads
// from a host (errors.Is matches every *OutputLimitError).
var ErrOutputLimit = errors.New("output over the size limit")

// OutputLimitError is a command whose standard output went over its
// limit: MaxOutput, or a smaller one asked for with WithOutputLimit.
type OutputLimitError struct {
	Limit int // bytes
}

func (e *OutputLimitError) Error() string {
	return fmt.Sprintf("the host's answer is over the %s limit of what breakglass reads from a host; it stopped reading and dropped it", sizeString(e.Limit))
}

// Is makes errors.Is(err, ErrOutputLimit) true.
func (e *OutputLimitError) Is(target error) bool { return target == ErrOutputLimit }

func sizeString(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

type outputLimitKey struct{}

// WithOutputLimit returns a context under which commands run by Client.Run,
// Shell.Run and Become.Run keep at most n bytes of standard output (never
// more than MaxOutput): for a caller that knows its answer is small, such
// as a probe that prints one line.
func WithOutputLimit(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, outputLimitKey{}, n)
}

// outputLimit is the limit on stdout for a command run under ctx.
func outputLimit(ctx context.Context) int {
	if n, ok := ctx.Value(outputLimitKey{}).(int); ok && n > 0 && n < MaxOutput {
		return n
	}
	return MaxOutput
}

// errOverLimit stops the copy of a command's output into a limitBuffer.
var errOverLimit = errors.New("output over the limit")

// limitBuffer keeps what is written to it up to max bytes; the write that
// would go past max fails (with errOverLimit, as does every later one) and
// closes over, when set. It never allocates more than max bytes: its
// capacity doubles up to max, not past it.
type limitBuffer struct {
	b    []byte
	max  int
	full bool
	over chan struct{} // closed when a write went over max; may be nil
}

func (l *limitBuffer) Write(p []byte) (int, error) {
	if l.full {
		return 0, errOverLimit
	}
	n := len(l.b) + len(p)
	if n > l.max {
		l.full = true
		if l.over != nil {
			close(l.over)
		}
		return 0, errOverLimit
	}
	if n > cap(l.b) {
		c := min(max(2*cap(l.b), n, 4<<10), l.max)
		nb := make([]byte, len(l.b), c)
		copy(nb, l.b)
		l.b = nb
	}
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *limitBuffer) Bytes() []byte { return l.b }
