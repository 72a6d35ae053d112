package suggest

import "testing"

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"bridge", "bridge", 0},
		{"brige", "bridge", 1},
		{"firewal", "firewall", 1},
		{"kitten", "sitting", 3},
	} {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d; want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestClosest(t *testing.T) {
	keys := []string{"bridge", "firewall", "model"}
	for _, tc := range []struct {
		s, want string
	}{
		{"brige", "bridge"},
		{"modle", "model"},
		{"firewal", "firewall"},
		{"zzzzzz", ""},
		{"bridge", "bridge"},
	} {
		if got := Closest(tc.s, keys); got != tc.want {
			t.Errorf("Closest(%q) = %q; want %q", tc.s, got, tc.want)
		}
	}
}
