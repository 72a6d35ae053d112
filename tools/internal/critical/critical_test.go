package critical

import (
	"testing"
	"time"
)

func TestPath(t *testing.T) {
	s := time.Second
	tests := []struct {
		name        string
		jobs        []time.Duration
		parallelism int
		want        time.Duration
	}{
		{"none", nil, 10, 0},
		{"one", []time.Duration{8 * s}, 10, 8 * s},
		{"equal jobs make waves", []time.Duration{8 * s, 8 * s, 8 * s, 8 * s, 8 * s}, 2, 24 * s},
		{"a slot frees early", []time.Duration{30 * s, 10 * s, 10 * s, 10 * s}, 2, 30 * s},
		{"a long job last", []time.Duration{10 * s, 10 * s, 60 * s}, 2, 70 * s},
		{"serial", []time.Duration{s, 2 * s, 3 * s}, 1, 6 * s},
		{"zero parallelism is serial", []time.Duration{s, 2 * s}, 0, 3 * s},
	}
	for _, tt := range tests {
		if got := Path(tt.jobs, tt.parallelism); got != tt.want {
			t.Errorf("%s: got %v; want %v", tt.name, got, tt.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		ds   []time.Duration
		want string
	}{
		{nil, "none"},
		{[]time.Duration{5 * time.Second, 5 * time.Second}, "5s"},
		{[]time.Duration{30 * time.Second, 20*time.Second + 4*ms, 25 * time.Second}, "20.004s to 30s, median 25s"},
	}
	for _, tt := range tests {
		if got := Describe(tt.ds); got != tt.want {
			t.Errorf("Describe(%v) = %q; want %q", tt.ds, got, tt.want)
		}
	}
}
