package spec

import (
	"path/filepath"
	"reflect"
	"testing"
)

// scramble overwrites everything reachable from v (maps cleared, pointees
// and slice elements zeroed recursively) to prove a clone shares nothing.
func scramble(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			scramble(v.Elem())
			v.Elem().SetZero()
		}
	case reflect.Map:
		if !v.IsNil() {
			v.Clear()
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			scramble(v.Index(i))
			v.Index(i).SetZero()
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Field(i).CanSet() {
				scramble(v.Field(i))
			}
		}
	}
}

// Clone is a deep copy of every spec in testdata: equal, and sharing
// nothing with the original.
func TestCloneIsDeep(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.good.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	for _, f := range files {
		for _, s := range []*Spec{mustParse(t, f), mustParse(t, f).WithDefaults()} {
			before := string(s.JSON())
			c := s.Clone()
			if !reflect.DeepEqual(s, c) {
				t.Fatalf("%s: clone differs:\n%s\n%s", f, s.JSON(), c.JSON())
			}
			scramble(reflect.ValueOf(c))
			if after := string(s.JSON()); after != before {
				t.Fatalf("%s: changing the clone changed the original:\n%s\n%s", f, before, after)
			}
		}
	}
}
