package provider

import (
	"fmt"

	"github.com/agentlab/terraform-provider-agentlab/internal/size"
)

// parseSize converts a disk size (internal/size's grammar: "20G", "1.5T",
// "20GiB") to bytes. A disk is a positive whole number of KiB.
func parseSize(s string) (int64, error) {
	n, err := size.Parse(s)
	if err != nil {
		return 0, err
	}
	if n <= 0 || n%size.K != 0 {
		return 0, fmt.Errorf("size %q: a disk size is a positive whole number of KiB, such as \"20G\"", s)
	}
	return n, nil
}

// formatSize writes bytes the way Proxmox VE does ("20G", "1536M").
func formatSize(bytes int64) string { return size.Format(bytes) }
