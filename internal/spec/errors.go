package spec

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// MaxErrors is the most field errors an *Error keeps; the rest are counted in More.
const MaxErrors = 20

// FieldError is one problem in a spec. Line is 1-based and 0 when unknown
// (for example for a spec decoded from JSON); Path is the dotted field path
// (e.g. "resources[1].health.interval"), empty for document-level problems.
type FieldError struct {
	Line int    `json:"line,omitempty"`
	Path string `json:"path,omitempty"`
	Msg  string `json:"msg"`
}

// Error renders "line 12: resources[1].health.interval: msg", leaving out the
// parts that are unknown.
func (e FieldError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Error is what Parse, ParseJSON and Validate return when a spec is refused:
// every problem found (up to MaxErrors), in document order.
type Error struct {
	Errors []FieldError `json:"errors"`
	// More is how many further problems were found but left out.
	More int `json:"more,omitempty"`
}

// Error joins the field errors, one a line.
func (e *Error) Error() string {
	lines := make([]string, 0, len(e.Errors)+1)
	for _, fe := range e.Errors {
		lines = append(lines, fe.Error())
	}
	if e.More > 0 {
		lines = append(lines, fmt.Sprintf("(and %d more errors)", e.More))
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the field errors to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	errs := make([]error, len(e.Errors))
	for i, fe := range e.Errors {
		errs[i] = fe
	}
	return errs
}

// newError sorts errs into document order (errors without a line last, in the
// order found), caps them at MaxErrors and returns nil when there are none.
func newError(errs []FieldError) error {
	if len(errs) == 0 {
		return nil
	}
	errs = slices.Clone(errs)
	slices.SortStableFunc(errs, func(a, b FieldError) int {
		return cmp.Compare(sortLine(a.Line), sortLine(b.Line))
	})
	e := &Error{Errors: errs}
	if len(errs) > MaxErrors {
		e.Errors, e.More = errs[:MaxErrors], len(errs)-MaxErrors
	}
	return e
}

func sortLine(l int) int {
	if l <= 0 {
		return int(^uint(0) >> 1)
	}
	return l
}
