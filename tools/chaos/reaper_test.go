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

func TestPrunedVMs(t *testing.T) {
	log := []byte(`{"level":"INFO","msg":"tick","vms":3}
{"level":"INFO","msg":"orphan pruned","kind":"untagged","vmid":100,"volid":""}
{"level":"INFO","msg":"orphan pruned","kind":"iso","vmid":101,"volid":"local:iso/agentlab-101-cidata.iso"}
not json
{"level":"WARN","msg":"orphan found","kind":"untagged","vmid":102,"volid":""}
{"level":"INFO","msg":"orphan pruned","kind":"untagged","vmid":103,"volid":""}
`)
	got := prunedVMs(log)
	if len(got) != 2 || got[0] != 100 || got[1] != 103 {
		t.Errorf("prunedVMs = %v; want [100 103]", got)
	}
}
