package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/rampartsec/rampart/internal/suggest"
)

// loadServeConfig reads rampart serve's configuration file; "" is an
// empty configuration.
func loadServeConfig(path string) (*serveConfig, error) {
	c, _, err := loadServeConfigKeys(path)
	return c, err
}

// loadServeConfigKeys reads the file and also returns the fields it sets,
// dotted ("reports.rate"), so that messages can name the file and field a
// value came from. Errors name the file, the line and the field, with the
// closest known field for a misspelt one, and no Go type names.
func loadServeConfigKeys(path string) (*serveConfig, map[string]bool, error) {
	var c serveConfig
	set := map[string]bool{}
	if path == "" {
		return &c, set, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("%s: %s", path, yamlText(err, nil))
	}
	if len(doc.Content) == 0 {
		return &c, set, nil // an empty file
	}
	lines := map[int]string{}
	if err := checkFields(doc.Content[0], reflect.TypeOf(c), "", set, lines); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("%s: %s", path, yamlText(err, lines))
	}
	return &c, set, nil
}

// checkFields walks a mapping against the yaml fields of struct type t,
// recording the fields set and refusing unknown ones.
func checkFields(n *yaml.Node, t reflect.Type, prefix string, set map[string]bool, lines map[int]string) error {
	if n.Kind != yaml.MappingNode {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil
		}
		what := "the file"
		if prefix != "" {
			what = strings.TrimSuffix(prefix, ".")
		}
		return fmt.Errorf("line %d: %s: want a mapping of field: value", n.Line, what)
	}
	fields := yamlFields(t)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		ft, ok := fields[k.Value]
		if !ok {
			names := make([]string, 0, len(fields))
			for name := range fields {
				names = append(names, name)
			}
			sort.Strings(names)
			msg := fmt.Sprintf("line %d: unknown field %s%s", k.Line, prefix, k.Value)
			if s := suggest.Closest(k.Value, names); s != "" {
				return fmt.Errorf("%s (did you mean %s%s?)", msg, prefix, s)
			}
			where := "the file"
			if prefix != "" {
				where = strings.TrimSuffix(prefix, ".")
			}
			return fmt.Errorf("%s; %s takes %s", msg, where, strings.Join(names, ", "))
		}
		set[prefix+k.Value] = true
		lines[v.Line] = prefix + k.Value
		for _, item := range v.Content {
			if _, ok := lines[item.Line]; !ok && v.Kind == yaml.SequenceNode {
				lines[item.Line] = prefix + k.Value
			}
		}
		if ft.Kind() == reflect.Struct {
			if err := checkFields(v, ft, prefix+k.Value+".", set, lines); err != nil {
				return err
			}
		}
	}
	return nil
}

// yamlFields maps the yaml names of struct type t's fields to their types
// (pointers dereferenced).
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		out[name] = ft
	}
	return out
}

// typeError matches yaml.v3's type errors: the value read and the Go type
// it did not fit.
var typeError = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: (`[^`]*`|[^ ]+))? into (.+)$")

// yamlKinds says in words what a YAML tag holds.
var yamlKinds = map[string]string{"map": "a mapping", "seq": "a list", "str": "a string", "int": "a number",
	"float": "a number", "bool": "true or false", "null": "null", "binary": "binary data", "timestamp": "a time"}

// goTypeWords says in words what a Go type of serveConfig holds.
func goTypeWords(t string) string {
	t = strings.TrimPrefix(t, "*")
	switch {
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint"):
		return "a whole number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case t == "[]string":
		return "a list of strings"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	}
	return "a mapping of field: value"
}

// yamlText rewrites a yaml.v3 error without its "yaml: " prefix and Go
// type names, naming the field of each line where lines knows it.
func yamlText(err error, lines map[int]string) string {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for i, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		if sm := typeError.FindStringSubmatch(m); sm != nil {
			field := ""
			var line int
			fmt.Sscan(sm[1], &line)
			if f, ok := lines[line]; ok {
				field = f + ": "
			}
			what := yamlKinds[sm[2]]
			if what == "" {
				what = "this value"
			}
			if sm[3] != "" {
				what = strconv.Quote(strings.Trim(sm[3], "`"))
			}
			m = fmt.Sprintf("line %s: %s%s is not %s", sm[1], field, what, goTypeWords(sm[4]))
		}
		msgs[i] = m
	}
	return strings.Join(msgs, "; ")
}
