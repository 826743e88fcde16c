package inventory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// Load reads inventory sources and merges them in order, as Ansible does
// with several -i options: later sources add hosts and groups and override
// variables of earlier ones.
//
// A source is
//   - a file: YAML (.yml, .yaml, or content starting like "all:"), JSON
//     (.json: dynamic-inventory JSON, or the YAML layout written as JSON),
//     or INI (.ini and anything else);
//   - an executable file starting with "#!" (or an ELF binary): a dynamic
//     inventory script, run with --list (and with --host NAME for each host
//     when its output has no _meta.hostvars), 30 s at most per run;
//   - a directory: every inventory file in it and its subdirectories, in
//     name order, skipping dotfiles, group_vars/, host_vars/ and Ansible's
//     ignored extensions (.md .txt .rst .cfg .orig .bak .retry .pyc .pyo
//     .swp .rpm and a trailing ~);
//   - "host1,host2,": a comma-separated host list, when no such file exists.
//
// group_vars/ and host_vars/ in a source directory, or next to a source
// file, apply to the groups and hosts of the whole inventory: NAME,
// NAME.yml, NAME.yaml, NAME.json or a directory NAME/ of such files, read in
// name order.
//
// Every error of every source is returned together.
func Load(paths ...string) (*Inventory, error) {
	if len(paths) == 0 {
		return nil, errors.New("no inventory given")
	}
	b := newBuilder()
	for _, p := range paths {
		b.loadSource(p)
	}
	return b.finish()
}

// scriptTimeout bounds each run of an inventory script.
var scriptTimeout = 30 * time.Second

func (b *builder) loadSource(path string) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && strings.Contains(path, ",") {
			b.hostList(path)
			return
		}
		b.fail(fmt.Errorf("inventory: %w", err))
		return
	}
	if fi.IsDir() {
		b.addVarDir(path)
		b.loadDir(path, 0)
		return
	}
	b.addVarDir(filepath.Dir(path))
	b.loadFile(path, fi)
}

func (b *builder) addVarDir(dir string) {
	if n := len(b.varDirs); n > 0 && b.varDirs[n-1] == dir {
		return
	}
	b.varDirs = append(b.varDirs, dir)
}

// hostList reads "host1,host2:2222,": hosts in ungrouped.
func (b *builder) hostList(list string) {
	p := pos{file: "host list"}
	for _, h := range strings.Split(list, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		names, port, err := parseHostPattern(h)
		if err != nil {
			b.fail(p.errorf("%v", err))
			continue
		}
		for _, n := range names {
			hd := b.addHost(n, "ungrouped", p)
			if hd == nil {
				return
			}
			if port != 0 {
				hd.vars["ansible_port"] = port
			}
		}
	}
}

// ignoredInDir is Ansible's INVENTORY_IGNORE_EXTS (2.19 default) plus its
// always-ignored names.
func ignoredInDir(name string) bool {
	if strings.HasPrefix(name, ".") || name == "group_vars" || name == "host_vars" || name == "vars_plugins" {
		return true
	}
	for _, ext := range []string{".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

const maxDirDepth = 16

func (b *builder) loadDir(dir string, depth int) {
	if depth > maxDirDepth {
		b.fail(fmt.Errorf("inventory %s: directories nested deeper than %d (a symlink loop?)", dir, maxDirDepth))
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.fail(fmt.Errorf("inventory: %w", err))
		return
	}
	for _, e := range entries {
		if ignoredInDir(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		fi, err := os.Stat(path)
		if err != nil {
			b.fail(fmt.Errorf("inventory: %w", err))
			continue
		}
		switch {
		case fi.IsDir():
			b.loadDir(path, depth+1)
		case fi.Mode().IsRegular():
			b.loadFile(path, fi)
		}
	}
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("read %s: larger than %d MiB", path, maxFileSize>>20)
	}
	return data, nil
}

func (b *builder) loadFile(path string, fi fs.FileInfo) {
	data, err := readFile(path)
	if err != nil {
		b.fail(fmt.Errorf("inventory: %w", err))
		return
	}
	if fi.Mode()&0o111 != 0 && (bytes.HasPrefix(data, []byte("#!")) || bytes.HasPrefix(data, []byte("\x7fELF"))) {
		b.runScript(path)
		return
	}
	if isVaultFile(data) {
		b.fail(pos{file: path}.errorf("vault-encrypted inventory file: breakglass cannot decrypt Ansible Vault; decrypt it (ansible-vault decrypt) or encrypt only the secret values"))
		return
	}
	b.parseData(path, data)
}

// parseData parses one inventory file by its extension or, failing that,
// its content.
func (b *builder) parseData(path string, data []byte) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yml", ".yaml":
		b.parseYAML(path, data)
	case ".json":
		b.parseJSONFile(path, data)
	case ".ini":
		b.parseINI(path, data)
	default:
		switch sniff(data) {
		case "yaml":
			b.parseYAML(path, data)
		case "json":
			b.parseJSONFile(path, data)
		default:
			b.parseINI(path, data)
		}
	}
}

// yamlStart matches a first line that is a YAML mapping key such as "all:"
// and cannot be an INI line (an INI host may be "name:port", never "name:").
var yamlStart = regexp.MustCompile(`^(?:---|%YAML|[^\s\[\]#;=:'"{]+:(?:\s|$)|'[^']*':(?:\s|$)|"[^"]*":(?:\s|$))`)

// sniff tells YAML, JSON and INI apart by the first line that is not blank
// or a comment.
func sniff(data []byte) string {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	for _, line := range splitLines(data) {
		t := bytes.TrimSpace(line)
		if len(t) == 0 || t[0] == '#' || t[0] == ';' {
			continue
		}
		switch {
		case t[0] == '{':
			return "json"
		case yamlStart.Match(t):
			return "yaml"
		}
		return "ini"
	}
	return "ini"
}

// parseJSONFile reads a static .json inventory: Ansible reads it with its
// YAML plugin (hosts and children as objects), but files saved from a
// script's --list are dynamic-inventory JSON (hosts and children as lists,
// _meta). Either is accepted.
func (b *builder) parseJSONFile(path string, data []byte) {
	root, err := jsonNode(path, data)
	if err != nil {
		b.fail(err)
		return
	}
	if staticJSON(root) {
		newWalker(b, path, len(data), true).inventory(root)
		return
	}
	b.parseJSONNode(path, root, len(data))
}

// staticJSON reports whether root uses the YAML inventory layout: some
// group has hosts or children as an object.
func staticJSON(root *yaml.Node) bool {
	if root.Kind != yaml.MappingNode {
		return false
	}
	for i := 1; i < len(root.Content); i += 2 {
		g := root.Content[i]
		if g.Kind != yaml.MappingNode {
			continue
		}
		for j := 0; j+1 < len(g.Content); j += 2 {
			k, v := g.Content[j].Value, g.Content[j+1]
			if (k == "hosts" || k == "children") && v.Kind == yaml.MappingNode {
				return true
			}
		}
	}
	return false
}

// runScript runs an executable inventory with --list and reads its JSON.
// When the output has no _meta.hostvars, it asks for each host's variables
// with --host NAME, as Ansible does.
func (b *builder) runScript(path string) {
	abs, err := filepath.Abs(path) // never let exec search $PATH
	if err != nil {
		b.fail(fmt.Errorf("inventory script %s: %w", path, err))
		return
	}
	out, err := runInventoryScript(abs, "--list")
	if err != nil {
		b.fail(fmt.Errorf("inventory script %s --list: %w", path, err))
		return
	}
	need := b.parseJSON(path+" --list", out)
	if len(need) == 0 {
		return
	}
	type result struct {
		out []byte
		err error
	}
	results := make([]result, len(need))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, h := range need {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i].out, results[i].err = runInventoryScript(abs, "--host", h.name)
		}()
	}
	wg.Wait()
	for i, h := range need {
		label := fmt.Sprintf("%s --host %s", path, h.name)
		if results[i].err != nil {
			b.fail(fmt.Errorf("inventory script %s: %w", label, results[i].err))
			continue
		}
		if len(bytes.TrimSpace(results[i].out)) == 0 {
			continue
		}
		root, err := jsonNode(label, results[i].out)
		if err != nil {
			b.fail(err)
			continue
		}
		w := newWalker(b, label, len(results[i].out), true)
		w.setVars(root, fmt.Sprintf("--host output for %q", h.name), func(k string, v any, _ pos) { h.vars[k] = v })
	}
}

// runInventoryScript runs path with args, without stdin, for at most
// scriptTimeout, and returns its standard output. On failure the error
// carries the end of its standard error.
func runInventoryScript(path string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = scriptEnv()
	stdout := &capBuffer{max: maxFileSize, onFull: cancel}
	stderr := &tailBuffer{max: 4096}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Grandchildren that keep the pipes open must not keep us waiting.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	switch {
	case stdout.full:
		return nil, fmt.Errorf("output larger than %d MiB", maxFileSize>>20)
	case errors.Is(err, exec.ErrWaitDelay):
		// The script exited 0 on its own but left a child holding its
		// output open; what it printed is its answer.
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, fmt.Errorf("timed out after %s", scriptTimeout)
	case err != nil:
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("%w: %s", err, msg)
		}
		return nil, err
	}
	return stdout.Bytes(), nil
}

// scriptEnv is our environment without the become password, which an
// inventory script has no business seeing.
func scriptEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BREAKGLASS_BECOME_PASSWORD=") {
			env = append(env, kv)
		}
	}
	return env
}

// capBuffer keeps at most max bytes and calls onFull once beyond that.
type capBuffer struct {
	bytes.Buffer
	max    int
	full   bool
	onFull func()
}

func (c *capBuffer) Write(p []byte) (int, error) {
	if c.full {
		return len(p), nil
	}
	if c.Len()+len(p) > c.max {
		c.full = true
		c.onFull()
		return len(p), nil
	}
	return c.Buffer.Write(p)
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(bytes.ToValidUTF8(t.buf, []byte("?"))) }
