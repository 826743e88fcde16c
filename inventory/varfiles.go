package inventory

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// varFiles finds and reads group_vars/ and host_vars/ files, each once, as
// Ansible's host_group_vars plugin does: for NAME, the first of NAME (a
// file or a directory), NAME.yml, NAME.yaml, NAME.json; a directory's files
// in name order, recursively, skipping dotfiles and names ending in ~, and
// reading only files with no extension or .yml, .yaml, .json.
type varFiles struct {
	b        *builder
	listings map[string]map[string]string // dir/kind → NAME → path
	merged   map[string]map[string]any    // dir/kind/NAME → vars
}

func newVarFiles(b *builder) *varFiles {
	return &varFiles{b: b, listings: map[string]map[string]string{}, merged: map[string]map[string]any{}}
}

var varExts = []string{"", ".yml", ".yaml", ".json"}

// vars returns the variables for name from dir/kind (kind is group_vars or
// host_vars). The map must not be modified.
func (vf *varFiles) vars(dir, kind, name string) map[string]any {
	key := dir + "\x00" + kind + "\x00" + name
	if m, ok := vf.merged[key]; ok {
		return m
	}
	var m map[string]any
	if path, ok := vf.listing(dir, kind)[name]; ok {
		files, err := varFilesAt(path, 0)
		if err != nil {
			vf.b.fail(err)
		}
		for _, f := range files {
			data, err := readFile(f)
			if err != nil {
				vf.b.fail(fmt.Errorf("%s: %w", kind, err))
				continue
			}
			for k, v := range vf.b.parseVarsFile(f, data) {
				if m == nil {
					m = map[string]any{}
				}
				m[k] = v
			}
		}
	}
	vf.merged[key] = m
	return m
}

// listing maps each NAME in dir/kind to the path Ansible would pick for it.
func (vf *varFiles) listing(dir, kind string) map[string]string {
	key := dir + "\x00" + kind
	if l, ok := vf.listings[key]; ok {
		return l
	}
	l := map[string]string{}
	vf.listings[key] = l
	base := filepath.Join(dir, kind)
	entries, err := os.ReadDir(base)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrInvalid) {
			vf.b.fail(fmt.Errorf("%s: %w", kind, err))
		}
		return l
	}
	rank := map[string]int{}
	for _, e := range entries {
		n := e.Name()
		for r, ext := range varExts {
			if !strings.HasSuffix(n, ext) || len(n) == len(ext) {
				continue
			}
			name := strings.TrimSuffix(n, ext)
			if old, ok := rank[name]; ok && old <= r {
				continue
			}
			rank[name] = r
			l[name] = filepath.Join(base, n)
		}
	}
	return l
}

// varFilesAt returns path itself if it is a file, or the vars files in it
// if it is a directory.
func varFilesAt(path string, depth int) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("vars: %w", err)
	}
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() {
			return nil, nil
		}
		return []string{path}, nil
	}
	if depth > maxDirDepth {
		return nil, fmt.Errorf("vars %s: directories nested deeper than %d (a symlink loop?)", path, maxDirDepth)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("vars: %w", err)
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || strings.HasSuffix(n, "~") {
			continue
		}
		ext := filepath.Ext(n)
		full := filepath.Join(path, n)
		fi, err := os.Stat(full)
		if err != nil {
			return out, fmt.Errorf("vars: %w", err)
		}
		switch {
		case fi.IsDir() && ext == "":
			sub, err := varFilesAt(full, depth+1)
			out = append(out, sub...)
			if err != nil {
				return out, err
			}
		case fi.Mode().IsRegular() && (ext == "" || ext == ".yml" || ext == ".yaml" || ext == ".json"):
			out = append(out, full)
		}
	}
	return out, nil
}
