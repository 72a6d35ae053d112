package provider

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
	"github.com/agentlab/terraform-provider-agentlab/internal/lease"
)

// durationValidator accepts a Go duration ("90m", "2h30m") of at least min.
type durationValidator struct {
	min time.Duration
}

var _ validator.String = durationValidator{}

// isDuration returns a validator for Go duration strings no shorter than min.
func isDuration(min time.Duration) durationValidator { return durationValidator{min: min} }

// Description says what the validator accepts.
func (v durationValidator) Description(context.Context) string {
	return fmt.Sprintf("value must be a Go duration such as \"30m\" or \"2h\", at least %s", v.min)
}

// MarkdownDescription says what the validator accepts.
func (v durationValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

// ValidateString checks one value.
func (v durationValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	d, err := time.ParseDuration(req.ConfigValue.ValueString())
	if err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid duration",
			fmt.Sprintf("%s is %q, which is not a Go duration. Use a number with a unit such as \"45m\", "+
				"\"8h\" or \"1h30m\" (units: s, m, h).", req.Path, req.ConfigValue.ValueString()))
		return
	}
	if d < v.min {
		resp.Diagnostics.AddAttributeError(req.Path, "Duration too short",
			fmt.Sprintf("%s is %q; it must be at least %s.", req.Path, req.ConfigValue.ValueString(), v.min))
	}
}

// sizeValidator accepts a disk size such as "20G".
type sizeValidator struct{}

var _ validator.String = sizeValidator{}

// isSize returns a validator for disk size strings.
func isSize() sizeValidator { return sizeValidator{} }

// Description says what the validator accepts.
func (sizeValidator) Description(context.Context) string {
	return "value must be a size such as \"20G\": a number followed by K, M, G or T (powers of 1024; KiB, MiB, GiB and TiB also work)"
}

// MarkdownDescription says what the validator accepts.
func (v sizeValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

// ValidateString checks one value.
func (sizeValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if _, err := parseSize(req.ConfigValue.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid disk size",
			fmt.Sprintf("%s: %s. Write the size as a number followed by K, M, G or T (powers of 1024), "+
				"for example \"20G\" or \"512M\"; the provider documentation's Sizes section has the grammar.", req.Path, err))
	}
}

// userTagValidator accepts a Proxmox VE tag that a user may set: lower-case
// tag characters, and none of the tags AgentLab writes itself.
type userTagValidator struct{}

var _ validator.String = userTagValidator{}

// tagPattern is a Proxmox VE tag in the form PVE keeps it (it lower-cases tags).
var tagPattern = regexp.MustCompile(`^[a-z0-9_][a-z0-9_+.-]*$`)

// Description says what the validator accepts.
func (userTagValidator) Description(context.Context) string {
	return "value must be a lower-case Proxmox VE tag (letters, digits, _ + . -) other than \"" +
		lease.TagOwned + "\" and \"" + lease.ExpiryTagPrefix + "*\""
}

// MarkdownDescription says what the validator accepts.
func (v userTagValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

// ValidateString checks one value.
func (userTagValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	tag := req.ConfigValue.ValueString()
	switch {
	case tag == lease.TagOwned || strings.HasPrefix(tag, lease.ExpiryTagPrefix):
		resp.Diagnostics.AddAttributeError(req.Path, "Reserved tag",
			fmt.Sprintf("The tag %q in %s is written by AgentLab itself (ownership and lease expiry). "+
				"Remove it from tags; the provider adds it.", tag, req.Path.ParentPath()))
	case !tagPattern.MatchString(tag) || len(tag) > 128:
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid tag",
			fmt.Sprintf("The tag %q in %s is not a Proxmox VE tag. Use lower-case letters, digits and "+
				"_ + . - only, starting with a letter, digit or _ (Proxmox VE lower-cases tags, which "+
				"would otherwise show as a change on every plan).", tag, req.Path.ParentPath()))
	}
}

// egressEntryValidator accepts an egress_allow entry in the grammar of
// internal/egressrule, the one the reaper reads.
type egressEntryValidator struct{}

var _ validator.String = egressEntryValidator{}

// Description says what the validator accepts.
func (egressEntryValidator) Description(context.Context) string {
	return "value must be a CIDR or address, optionally with :PORT, :PORT-PORT and /tcp or /udp"
}

// MarkdownDescription says what the validator accepts.
func (v egressEntryValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

// ValidateString checks one entry.
func (egressEntryValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if _, err := egressrule.Parse(req.ConfigValue.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid egress_allow entry",
			fmt.Sprintf("%s: %v. Write entries like \"192.0.2.0/24\", \"10.20.0.5:5432/tcp\" or \"[2001:db8::/32]:443\".",
				req.Path, err))
	}
}
