package volume

import "testing"

func TestOwner(t *testing.T) {
	tests := []struct {
		volid string
		want  int
		ok    bool
	}{
		{"local-lvm:vm-101-disk-0", 101, true},
		{"local-lvm:base-9000-disk-0", 9000, true},
		{"local-lvm:base-9000-disk-0/vm-101-disk-0", 101, true},
		{"local:101/vm-101-disk-0.qcow2", 101, true},
		{"local:9000/base-9000-disk-0.qcow2/101/vm-101-disk-1.qcow2", 101, true},
		{"vm-7-cloudinit", 7, true},
		{"local:iso/agentlab-101-cidata.iso", 0, false},
		{"local-lvm:vm--disk-0", 0, false},
		{"local-lvm:vm-0101-disk-0", 0, false},
		{"local-lvm:vm-101", 0, false},
		{"local-lvm:vm-x-disk-0", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := Owner(tt.volid)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Owner(%q) = %d, %v; want %d, %v", tt.volid, got, ok, tt.want, tt.ok)
		}
	}
}

func TestBase(t *testing.T) {
	tests := []struct {
		volid  string
		want   int
		ok     bool
		isBase bool
	}{
		{"local-lvm:base-9000-disk-0", 9000, true, true},
		{"local-lvm:base-9000-disk-0/vm-101-disk-0", 9000, true, false},
		{"local:9000/base-9000-disk-0.qcow2/101/vm-101-disk-1.qcow2", 9000, true, false},
		{"local-lvm:vm-101-disk-0", 0, false, false},
	}
	for _, tt := range tests {
		got, ok := Base(tt.volid)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Base(%q) = %d, %v; want %d, %v", tt.volid, got, ok, tt.want, tt.ok)
		}
		if b := IsBase(tt.volid); b != tt.isBase {
			t.Errorf("IsBase(%q) = %v; want %v", tt.volid, b, tt.isBase)
		}
	}
}

func TestSeedISO(t *testing.T) {
	if got, want := SeedISOVolid("local", 123), "local:iso/agentlab-123-cidata.iso"; got != want {
		t.Errorf("SeedISOVolid = %q; want %q", got, want)
	}
	tests := []struct {
		volid string
		want  int
		ok    bool
	}{
		{SeedISOVolid("local", 123), 123, true},
		{SeedISOName(7), 7, true},
		{"cephfs:iso/agentlab-100000-cidata.iso", 100000, true},
		{"local:iso/agentlab--cidata.iso", 0, false},
		{"local:iso/agentlab-012-cidata.iso", 0, false},
		{"local:iso/agentlab-12x-cidata.iso", 0, false},
		{"local:iso/debian-12.iso", 0, false},
		{"local:iso/agentlab-12-cidata.iso.tmp", 0, false},
	}
	for _, tt := range tests {
		got, ok := SeedISOOwner(tt.volid)
		if got != tt.want || ok != tt.ok {
			t.Errorf("SeedISOOwner(%q) = %d, %v; want %d, %v", tt.volid, got, ok, tt.want, tt.ok)
		}
	}
}
