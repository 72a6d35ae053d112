package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/setvalidator"
	dschema "github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	pschema "github.com/hashicorp/terraform-plugin-framework/provider/schema"
	rschema "github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/agentlab/terraform-provider-agentlab/internal/printable"
)

// printableValidator refuses control characters (see internal/printable).
type printableValidator struct{}

var _ validator.String = printableValidator{}

// isPrintable returns a validator that refuses control characters.
func isPrintable() printableValidator { return printableValidator{} }

// Description says what the validator refuses.
func (printableValidator) Description(context.Context) string {
	return "value must not contain control characters (newlines, tabs, escape sequences, DEL)"
}

// MarkdownDescription says what the validator refuses.
func (v printableValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

// ValidateString checks one value. The message names the character and its
// position, never the value, which may be a token.
func (printableValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if err := printable.Check(req.ConfigValue.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Control character in "+req.Path.String(),
			fmt.Sprintf("%s contains a %s. AgentLab writes this text into Proxmox VE or shows it to operators, "+
				"so it must be printable: remove the character (newlines, tabs, escape sequences and other "+
				"control characters are refused).", req.Path, err))
	}
}

// The schemas below pass through these functions, so that every string an
// operator configures, now or in a later attribute, refuses control
// characters: a string attribute directly, a list or set of strings for each
// element.

// refuseControlCharsInResource adds isPrintable to a resource schema's
// configurable string attributes.
func refuseControlCharsInResource(attrs map[string]rschema.Attribute) {
	for name, a := range attrs {
		switch a := a.(type) {
		case rschema.StringAttribute:
			if a.Optional || a.Required {
				a.Validators = append([]validator.String{isPrintable()}, a.Validators...)
				attrs[name] = a
			}
		case rschema.ListAttribute:
			if (a.Optional || a.Required) && a.ElementType == types.StringType {
				a.Validators = append([]validator.List{listvalidator.ValueStringsAre(isPrintable())}, a.Validators...)
				attrs[name] = a
			}
		case rschema.SetAttribute:
			if (a.Optional || a.Required) && a.ElementType == types.StringType {
				a.Validators = append([]validator.Set{setvalidator.ValueStringsAre(isPrintable())}, a.Validators...)
				attrs[name] = a
			}
		}
	}
}

// refuseControlCharsInProvider adds isPrintable to the provider block's
// string attributes.
func refuseControlCharsInProvider(attrs map[string]pschema.Attribute) {
	for name, a := range attrs {
		if s, ok := a.(pschema.StringAttribute); ok {
			s.Validators = append([]validator.String{isPrintable()}, s.Validators...)
			attrs[name] = s
		}
	}
}

// refuseControlCharsInDataSource adds isPrintable to a data source's
// configurable string attributes.
func refuseControlCharsInDataSource(attrs map[string]dschema.Attribute) {
	for name, a := range attrs {
		if s, ok := a.(dschema.StringAttribute); ok && (s.Optional || s.Required) {
			s.Validators = append([]validator.String{isPrintable()}, s.Validators...)
			attrs[name] = s
		}
	}
}
