package routes

import (
	"strings"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
)

func TestWrite(t *testing.T) {
	st := pvesim.Stats{Requests: map[string]map[int]int{
		"GET /version":              {200: 2},
		"GET /nodes/{node}/tasks":   {200: 30, 500: 10},
		"POST /nodes/{node}/clone":  {200: 20},
		"DELETE /nodes/{node}/qemu": {200: 20},
	}}
	var sb strings.Builder
	Write(&sb, st, 20)
	want := "    2.00  GET /nodes/{node}/tasks\n" +
		"    1.00  DELETE /nodes/{node}/qemu\n" +
		"    1.00  POST /nodes/{node}/clone\n" +
		"    0.10  GET /version\n"
	if sb.String() != want {
		t.Errorf("Write =\n%s\nwant\n%s", sb.String(), want)
	}
}
