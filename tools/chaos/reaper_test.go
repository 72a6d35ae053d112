package main

import "testing"

func TestParseOrphans(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[int]string
	}{
		{"list", `[{"vmid":101,"kind":"placeholder"},{"vmid":101,"volid":"local:iso/agentlab-101-cidata.iso","kind":"iso"}]`, map[int]string{101: "placeholder"}},
		{"object", `{"orphans":[{"vmid":"102","kind":"untagged"}]}`, map[int]string{102: "untagged"}},
		{"empty", `[]`, map[int]string{}},
		{"garbage", `no`, map[int]string{}},
	} {
		got := parseOrphans([]byte(tc.in))
		if len(got) != len(tc.want) {
			t.Errorf("%s: got %v; want %v", tc.name, got, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s: got %v; want %v", tc.name, got, tc.want)
			}
		}
	}
}
