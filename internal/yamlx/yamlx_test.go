package yamlx

import (
	"strings"
	"testing"
)

type inner struct {
	Port int `yaml:"port"`
}

type outer struct {
	Name  string            `yaml:"name"`
	Tags  []string          `yaml:"tags"`
	Inner inner             `yaml:"inner"`
	Extra map[string]string `yaml:"extra"`
}

func TestDecode(t *testing.T) {
	cases := []struct {
		src, want string
	}{
		{"name: a\ntags: [x]\ninner: {port: 22}\n", ""},
		{"name: a\nnmae: b\n", `f.yml:2:1: unknown key "nmae" (known: extra, inner, name, tags)`},
		{"inner: {port: 22, porT: 1}\n", `f.yml:1:19: unknown key "porT"`},
		{"name: a\nname: b\n", `f.yml:2:1: duplicate key "name"`},
		{"tags: x\n", `f.yml:1:7: expected a list, got a scalar (write [x])`},
		{"inner: [1]\n", `f.yml:1:8: expected a mapping, got a list`},
		{"inner: {port: many}\n", `f.yml:1: cannot unmarshal`},
		{"extra: {a: 1, a: 2}\n", `f.yml:1:15: duplicate key "a"`},
	}
	for _, c := range cases {
		n, err := ParseFile("f.yml", []byte(c.src))
		if err != nil {
			t.Fatalf("%q: %v", c.src, err)
		}
		var o outer
		err = Decode("f.yml", n, &o)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v", c.src, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: got %v, want %q", c.src, err, c.want)
		}
	}
}

func TestParseFileSyntaxError(t *testing.T) {
	_, err := ParseFile("f.yml", []byte("a: [\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "f.yml:") {
		t.Fatalf("got %v", err)
	}
}
