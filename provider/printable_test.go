package provider

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	"github.com/agentlab/terraform-provider-agentlab/internal/clock"
)

// TestEveryFreeTextAttributeRefusesControlChars runs each configurable string
// attribute's validators (string, or each element of a list or set of
// strings) on a value with an escape sequence and a newline.
func TestEveryFreeTextAttributeRefusesControlChars(t *testing.T) {
	ctx := context.Background()
	const bad = "ok\x1b[2J\nroot"

	var rs resource.SchemaResponse
	NewSandboxResource().Schema(ctx, resource.SchemaRequest{}, &rs)
	var ps provider.SchemaResponse
	NewTestProvider(clock.NewFake(t0)).Schema(ctx, provider.SchemaRequest{}, &ps)
	var ds datasource.SchemaResponse
	NewSandboxesDataSource().Schema(ctx, datasource.SchemaRequest{}, &ds)

	type strAttr struct {
		name       string
		validators []validator.String
	}
	var attrs []strAttr
	checked := 0
	for name, a := range rs.Schema.Attributes {
		if !a.IsOptional() && !a.IsRequired() {
			continue
		}
		switch v := a.(type) {
		case interface{ StringValidators() []validator.String }:
			attrs = append(attrs, strAttr{"agentlab_sandbox." + name, v.StringValidators()})
		case interface{ ListValidators() []validator.List }:
			checked++
			if !refusesElement(ctx, v.ListValidators(), nil, bad) {
				t.Errorf("agentlab_sandbox.%s accepts an element with control characters", name)
			}
		case interface{ SetValidators() []validator.Set }:
			checked++
			if !refusesElement(ctx, nil, v.SetValidators(), bad) {
				t.Errorf("agentlab_sandbox.%s accepts an element with control characters", name)
			}
		}
	}
	for name, a := range ps.Schema.Attributes {
		if v, ok := a.(interface{ StringValidators() []validator.String }); ok {
			attrs = append(attrs, strAttr{"provider." + name, v.StringValidators()})
		}
	}
	for name, a := range ds.Schema.Attributes {
		if v, ok := a.(interface{ StringValidators() []validator.String }); ok && (a.IsOptional() || a.IsRequired()) {
			attrs = append(attrs, strAttr{"agentlab_sandboxes." + name, v.StringValidators()})
		}
	}
	for _, a := range attrs {
		checked++
		req := validator.StringRequest{Path: path.Root(a.name), ConfigValue: types.StringValue(bad)}
		refused := false
		for _, v := range a.validators {
			var resp validator.StringResponse
			v.ValidateString(ctx, req, &resp)
			for _, d := range resp.Diagnostics.Errors() {
				if strings.HasPrefix(d.Summary(), "Control character") {
					refused = true
					if strings.Contains(d.Detail(), "[2J") {
						t.Errorf("%s: the error echoes the value: %s", a.name, d.Detail())
					}
				}
			}
		}
		if !refused {
			t.Errorf("%s accepts a value with control characters", a.name)
		}
	}
	if checked < 20 {
		t.Errorf("checked %d attributes; the schemas have more free-text attributes than that", checked)
	}
}

// refusesElement reports whether list or set validators refuse a collection
// holding bad.
func refusesElement(ctx context.Context, lv []validator.List, sv []validator.Set, bad string) bool {
	elems := []basetypes.StringValue{types.StringValue(bad)}
	var summaries []string
	for _, v := range lv {
		val, _ := types.ListValueFrom(ctx, types.StringType, elems)
		var resp validator.ListResponse
		v.ValidateList(ctx, validator.ListRequest{Path: path.Root("x"), ConfigValue: val}, &resp)
		for _, d := range resp.Diagnostics.Errors() {
			summaries = append(summaries, d.Summary())
		}
	}
	for _, v := range sv {
		val, _ := types.SetValueFrom(ctx, types.StringType, elems)
		var resp validator.SetResponse
		v.ValidateSet(ctx, validator.SetRequest{Path: path.Root("x"), ConfigValue: val}, &resp)
		for _, d := range resp.Diagnostics.Errors() {
			summaries = append(summaries, d.Summary())
		}
	}
	for _, s := range summaries {
		if strings.HasPrefix(s, "Control character") {
			return true
		}
	}
	return false
}
