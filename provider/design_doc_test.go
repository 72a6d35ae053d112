package provider

import (
	"context"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/resource"
)

// designParagraph returns the paragraph of docs/design.md that starts with
// prefix (up to the next blank line), or "".
func designParagraph(doc, prefix string) string {
	for _, p := range strings.Split(doc, "\n\n") {
		if strings.HasPrefix(strings.TrimSpace(p), prefix) {
			return p
		}
	}
	return ""
}

// TestDesignListsEveryAttribute: the contracts in docs/design.md name every
// setting of the provider and every attribute of each resource and data
// source, in the paragraph about it.
func TestDesignListsEveryAttribute(t *testing.T) {
	b, err := os.ReadFile("../docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	ctx := context.Background()
	check := func(prefix string, names []string) {
		t.Helper()
		para := designParagraph(doc, prefix)
		if para == "" {
			t.Errorf("docs/design.md has no paragraph starting with %q", prefix)
			return
		}
		for _, n := range names {
			if !strings.Contains(para, "`"+n+"`") {
				t.Errorf("docs/design.md: the paragraph %q does not name `%s`", prefix, n)
			}
		}
	}

	p := New("test")()
	var ps provider.SchemaResponse
	p.Schema(ctx, provider.SchemaRequest{}, &ps)
	check("Settings (", slices.Sorted(maps.Keys(ps.Schema.Attributes)))

	for _, newResource := range p.Resources(ctx) {
		r := newResource()
		var md resource.MetadataResponse
		r.Metadata(ctx, resource.MetadataRequest{ProviderTypeName: "agentlab"}, &md)
		var s resource.SchemaResponse
		r.Schema(ctx, resource.SchemaRequest{}, &s)
		check("**"+md.TypeName+"**", append(slices.Sorted(maps.Keys(s.Schema.Attributes)), slices.Sorted(maps.Keys(s.Schema.Blocks))...))
	}
	for _, newDataSource := range p.DataSources(ctx) {
		d := newDataSource()
		var md datasource.MetadataResponse
		d.Metadata(ctx, datasource.MetadataRequest{ProviderTypeName: "agentlab"}, &md)
		var s datasource.SchemaResponse
		d.Schema(ctx, datasource.SchemaRequest{}, &s)
		names := slices.Sorted(maps.Keys(s.Schema.Attributes))
		para := designParagraph(doc, "Data sources:")
		i := strings.Index(para, "**"+md.TypeName+"**")
		if i < 0 {
			t.Errorf("docs/design.md: the data sources paragraph does not name **%s**", md.TypeName)
			continue
		}
		entry, _, _ := strings.Cut(para[i:], "),")
		for _, n := range names {
			if !strings.Contains(entry, "`"+n+"`") {
				t.Errorf("docs/design.md: data source %s's entry does not name `%s`", md.TypeName, n)
			}
		}
	}
}
