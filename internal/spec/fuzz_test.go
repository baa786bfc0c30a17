package spec

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics and that whatever it accepts
// survives the YAML and JSON round trips unchanged.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			if s != nil {
				t.Fatalf("Parse returned a spec and an error")
			}
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error is %T, not *Error", err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("Parse accepted a spec that Validate refuses: %v", err)
		}
		y := s.YAML()
		s2, err := Parse(y)
		if err != nil {
			t.Fatalf("YAML() does not re-parse: %v\ninput:\n%q\nYAML():\n%s", err, data, y)
		}
		if !reflect.DeepEqual(s, s2) {
			t.Fatalf("YAML round trip differs\ninput:\n%q\nYAML():\n%s\nbefore %s\nafter  %s", data, y, s.JSON(), s2.JSON())
		}
		if d := Diff(s, s2); len(d) != 0 {
			t.Fatalf("Diff of equal specs: %v", d)
		}
		s3, err := ParseJSON(s.JSON())
		if err != nil {
			t.Fatalf("JSON() does not re-parse: %v\n%s", err, s.JSON())
		}
		if !reflect.DeepEqual(s, s3) || !bytes.Equal(s.JSON(), s3.JSON()) {
			t.Fatalf("JSON round trip differs\nbefore %s\nafter  %s", s.JSON(), s3.JSON())
		}
		if err := s.WithDefaults().Validate(); err != nil {
			t.Fatalf("defaults made a valid spec invalid: %v", err)
		}
	})
}
