package provider

import "testing"

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "20G", want: 20 << 30},
		{in: "512M", want: 512 << 20},
		{in: "1T", want: 1 << 40},
		{in: "64K", want: 64 << 10},
		{in: "1.5G", want: 1536 << 20},
		{in: "0.5K", wantErr: true},
		{in: "20GiB", want: 20 << 30},
		{in: "20g", want: 20 << 30},
		{in: "20", wantErr: true},
		{in: "20GB", wantErr: true},
		{in: "+20G", wantErr: true},
		{in: "-1G", wantErr: true},
		{in: "0G", wantErr: true},
		{in: "", wantErr: true},
		{in: "G", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSize(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseSize(%q) = %d, nil; want an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseSize(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("parseSize(%q) = %d; want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{in: 20 << 30, want: "20G"},
		{in: 1536 << 20, want: "1536M"},
		{in: 2 << 40, want: "2T"},
		{in: 3 << 10, want: "3K"},
		{in: 100, want: "100"},
	}
	for _, tt := range tests {
		if got := formatSize(tt.in); got != tt.want {
			t.Errorf("formatSize(%d) = %q; want %q", tt.in, got, tt.want)
		}
		if tt.in%1024 == 0 {
			back, err := parseSize(formatSize(tt.in))
			if err != nil || back != tt.in {
				t.Errorf("parseSize(formatSize(%d)) = %d, %v; want %d", tt.in, back, err, tt.in)
			}
		}
	}
}
