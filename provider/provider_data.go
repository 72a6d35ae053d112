package provider

import (
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/diag"
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
