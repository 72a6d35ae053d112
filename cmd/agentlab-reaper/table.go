package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/agentlab/terraform-provider-agentlab/internal/printable"
)

// table prints rows aligned in columns; every cell goes through
// printable.Escape.
type table struct {
	tw *tabwriter.Writer
}

// newTable starts a table on w with a header row.
func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(toAny(header)...)
	return t
}

// row prints one row; each cell is formatted with fmt.Sprint and escaped.
func (t *table) row(cells ...any) {
	for i, c := range cells {
		if i > 0 {
			io.WriteString(t.tw, "\t")
		}
		io.WriteString(t.tw, printable.Escape(fmt.Sprint(c)))
	}
	io.WriteString(t.tw, "\n")
}

// flush writes the table out.
func (t *table) flush() error { return t.tw.Flush() }

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
