// Package routes prints how a benchmark's API requests spread over the
// simulator's routes, per unit of work (a sandbox, a job), most first: the
// table applybench and jobbench end their reports with.
package routes

import (
	"fmt"
	"io"
	"sort"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
)

// Write lists the requests of st by route, every status counted, divided by
// n, most first (ties by route).
func Write(out io.Writer, st pvesim.Stats, n int) {
	type row struct {
		route string
		count int
	}
	var rows []row
	for r, byStatus := range st.Requests {
		c := 0
		for _, k := range byStatus {
			c += k
		}
		rows = append(rows, row{r, c})
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].count != rows[j].count {
			return rows[i].count > rows[j].count
		}
		return rows[i].route < rows[j].route
	})
	for _, r := range rows {
		fmt.Fprintf(out, "  %6.2f  %s\n", float64(r.count)/float64(n), r.route)
	}
}
