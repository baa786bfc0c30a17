package cib

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxDepth bounds element nesting; a CIB is never deeper than a dozen levels.
const maxDepth = 256

// elem is one XML element of the generic tree that Parse builds before
// interpreting the CIB.
type elem struct {
	name     string
	attrs    map[string]string
	children []*elem
	line     int
	path     string
}

func (e *elem) attr(k string) string { return e.attrs[k] }

// where names the element for Unsupported and Notes: its path and id.
func (e *elem) where() string {
	if id := e.attrs["id"]; id != "" {
		return fmt.Sprintf("%s[@id=%s]", e.path, id)
	}
	return e.path
}

// readTree decodes r into a tree of elements rooted at the document element.
func readTree(r io.Reader) (*elem, error) {
	d := xml.NewDecoder(r)
	d.Strict = true
	var stack []*elem
	var root *elem
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				return nil, fmt.Errorf("cib: malformed XML at line %d: %s", se.Line, se.Msg)
			}
			line, _ := d.InputPos()
			return nil, fmt.Errorf("cib: malformed XML near line %d: %w", line, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			line, _ := d.InputPos()
			e := &elem{name: t.Name.Local, attrs: make(map[string]string, len(t.Attr)), line: line}
			for _, a := range t.Attr {
				if a.Name.Space != "" && a.Name.Space != "xmlns" && a.Name.Local != "" {
					// Namespaced attributes are not part of the CIB schema; keep
					// them under their local name unless it collides.
					if _, ok := e.attrs[a.Name.Local]; ok {
						continue
					}
				}
				if a.Name.Space == "xmlns" || a.Name.Local == "xmlns" {
					continue
				}
				e.attrs[a.Name.Local] = a.Value
			}
			if len(stack) == 0 {
				if root != nil {
					return nil, fmt.Errorf("cib: line %d: more than one document element", line)
				}
				root = e
				e.path = "/" + e.name
			} else {
				p := stack[len(stack)-1]
				e.path = p.path + "/" + e.name
				p.children = append(p.children, e)
			}
			if len(stack) >= maxDepth {
				return nil, fmt.Errorf("cib: line %d: elements nested deeper than %d", line, maxDepth)
			}
			stack = append(stack, e)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 0 && strings.TrimSpace(string(t)) != "" {
				line, _ := d.InputPos()
				return nil, fmt.Errorf("cib: line %d: text outside the document element", line)
			}
		}
	}
	if root == nil {
		return nil, errors.New("cib: no document element")
	}
	if len(stack) != 0 {
		return nil, fmt.Errorf("cib: unexpected end of input inside <%s>", stack[len(stack)-1].name)
	}
	return root, nil
}
