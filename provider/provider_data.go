package provider

import (
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/reaper/api"
)

// configureData turns the provider data a resource or data source receives
// in Configure into *providerData: nil before the provider is configured,
// an error diagnostic when it is of another type (a provider bug).
func configureData(data any, typeName string, diags *diag.Diagnostics) *providerData {
	if data == nil {
		return nil
	}
	d, ok := data.(*providerData)
	if !ok {
		diags.AddError("Unexpected provider data",
			fmt.Sprintf("The %s type expected *providerData but got %T. This is a bug in the provider; please report it.", typeName, data))
		return nil
	}
	return d
}

// configuredData reports whether the provider was configured, adding an
// error that says what to do when it was not.
func configuredData(d *providerData, diags *diag.Diagnostics) bool {
	if d != nil {
		return true
	}
	diags.AddError("Provider not configured",
		"The agentlab provider was not configured before this resource was used. This happens when the provider's "+
			"settings depend on values unknown at plan time; set them to known values.")
	return false
}

// reaperClient returns the reaper's control API client, adding an error that
// says how to configure it when reaper_url is not set.
func (d *providerData) reaperClient(diags *diag.Diagnostics) *api.Client {
	if d.reaper == nil {
		diags.AddError("The reaper is not configured",
			"Jobs and their artifacts live in the AgentLab reaper. Set reaper_url (and reaper_token for a TCP "+
				"control API) in the provider block, or "+envReaperURL+" and "+envReaperToken+", e.g. "+
				"reaper_url = \"http://127.0.0.1:8847\".")
	}
	return d.reaper
}

// waitClock is the clock the provider waits on: its own when it makes
// timers (the wall clock, or a test's clock.Fake), else the wall clock.
func (d *providerData) waitClock() job.WaitClock {
	if c, ok := d.clock.(job.WaitClock); ok {
		return c
	}
	return clock.Real{}
}
