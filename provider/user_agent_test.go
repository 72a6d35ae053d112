package provider

import "testing"

func TestUserAgent(t *testing.T) {
	tests := []struct {
		version, terraform, want string
	}{
		{"1.2.3", "1.11.0", "terraform-provider-agentlab/1.2.3 (terraform/1.11.0)"},
		{"dev", "", "terraform-provider-agentlab/dev"},
	}
	for _, tt := range tests {
		if got := userAgent(tt.version, tt.terraform); got != tt.want {
			t.Errorf("userAgent(%q, %q) = %q; want %q", tt.version, tt.terraform, got, tt.want)
		}
	}
}
