# breakglass — see README.md. Every target works as root on a fresh Debian
# machine: `deps` installs what the lab needs (openssh-server, sudo,
# debootstrap, systemd-container) with apt-get when it is missing.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/breakglass/breakglass/internal/cli.Version=$(VERSION)
BIN       := bin
HOSTS     ?= 100
FUZZTIME  ?= 60s
STATICCHECK_VERSION := v0.8.2
export PATH := $(PATH):$(shell $(GO) env GOPATH)/bin

.PHONY: all build deps roots test test-short demo bench lint fuzz clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/breakglass ./cmd/breakglass
	$(GO) build -o $(BIN)/breakglass-lab ./cmd/breakglass-lab

# The lab runs the machine's own sshd in namespaces: it needs openssh-server,
# sudo, and unshare/nsenter from util-linux. Its systemd hosts need
# systemd-nspawn (systemd-container), and debootstrap to build their roots.
deps:
	@missing=""; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	command -v sudo >/dev/null 2>&1 || missing="$$missing sudo"; \
	command -v ssh >/dev/null 2>&1 || missing="$$missing openssh-client"; \
	command -v unshare >/dev/null 2>&1 || missing="$$missing util-linux"; \
	command -v debootstrap >/dev/null 2>&1 || missing="$$missing debootstrap"; \
	command -v systemd-nspawn >/dev/null 2>&1 || missing="$$missing systemd-container"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "breakglass: need root to install:$$missing" >&2; exit 1; fi; \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# Unit and integration tests (integration tests start real sshd lab hosts;
# they fail, never skip, when CI=true), then each parser fuzzed briefly.
# The first run on a machine also builds the systemd hosts' Debian roots
# (see roots).
test: deps roots
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 9m ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=3000x

# The systemd lab hosts' Debian roots, built once (both in parallel) and
# cached in /var/cache/breakglass-lab; before the tests, so that the build
# does not eat into the tests' timeouts.
roots: deps
	$(GO) run ./cmd/breakglass-lab roots

test-short:
	$(GO) test -short -count=1 ./...

fuzz:
	@for t in FuzzParseINI FuzzParseYAML FuzzParseJSON; do \
		$(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) ./inventory/ || exit 1; \
	done
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./internal/playbook/
	$(GO) test -run='^$$' -fuzz='^FuzzRead$$' -fuzztime=$(FUZZTIME) ./internal/sshdconf/

# Three lab hosts, the example playbook applied and then verified, the hosts
# stopped again.
demo: deps build
	@$(BIN)/breakglass-lab -n 3 -- sh examples/demo.sh

# breakglass side by side with ansible-playbook (installed from Debian when
# missing) and the raw OpenSSH floor, on fresh lab hosts:
#   make bench [HOSTS=100] [RUNS=3] [BIG=1]
# BIG=1 also measures peak memory at 1000 hosts. The table goes to stdout
# and bench-results/latest.{md,json}; the packages' Go benchmarks run first.
RUNS      ?= 3
BIG       ?=
bench: deps build
	$(GO) test -run='^$$' -bench=. -benchmem ./...
	$(GO) run ./internal/bench/cmd/bench -hosts $(HOSTS) -runs $(RUNS) $(if $(filter 1 true yes,$(BIG)),-big)

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting" >&2; exit 1; }
	$(GO) vet ./...
	@command -v staticcheck >/dev/null 2>&1 || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	staticcheck ./...
	@command -v shellcheck >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null; }
	shellcheck -S warning $$(git ls-files '*.sh')

clean:
	rm -rf $(BIN)
