package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/agentlab/terraform-provider-agentlab/internal/job"
	"github.com/agentlab/terraform-provider-agentlab/reaper/api"
)

var _ datasource.DataSourceWithConfigure = (*jobArtifactsDataSource)(nil)

// jobArtifactsDataSource is the agentlab_job_artifacts data source.
type jobArtifactsDataSource struct {
	data *providerData
}

// NewJobArtifactsDataSource returns the agentlab_job_artifacts data source.
func NewJobArtifactsDataSource() datasource.DataSource { return &jobArtifactsDataSource{} }

// jobArtifactsModel is the data source's data.
type jobArtifactsModel struct {
	JobID       types.String `tfsdk:"job_id"`
	DownloadDir types.String `tfsdk:"download_dir"`
	Artifacts   types.List   `tfsdk:"artifacts"`
}

// downloadedArtifactType is the element type of artifacts.
var downloadedArtifactType = types.ObjectType{AttrTypes: map[string]attr.Type{
	"name": types.StringType, "size": types.Int64Type, "sha256": types.StringType, "path": types.StringType,
}}

// Metadata sets the data source's type name.
func (d *jobArtifactsDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_job_artifacts"
}

// Configure receives the provider's clients.
func (d *jobArtifactsDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.data = configureData(req.ProviderData, "agentlab_job_artifacts", &resp.Diagnostics)
}

// Schema describes agentlab_job_artifacts.
func (d *jobArtifactsDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "The files a job uploaded, as the reaper lists them, and, with `download_dir`, " +
			"downloaded there. Each download is checked against the SHA-256 the reaper recorded at upload: a " +
			"mismatch is an error and leaves no file behind (each file is written to a temporary name and " +
			"renamed only once verified).",
		Attributes: map[string]schema.Attribute{
			"job_id": schema.StringAttribute{
				MarkdownDescription: "The job's ID, e.g. `agentlab_job.build.id`.",
				Required:            true,
			},
			"download_dir": schema.StringAttribute{
				MarkdownDescription: "A directory to download the artifacts into, keeping their relative paths; " +
					"created when missing. Existing files of the same names are replaced, except those that already hold " +
					"the artifact's bytes (same size and sha256): Terraform reads the data source at every plan, and only " +
					"what is missing or changed is fetched again. Defaults to no download.",
				Optional: true,
			},
			"artifacts": schema.ListNestedAttribute{
				MarkdownDescription: "The artifacts, by name.",
				Computed:            true,
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"name":   schema.StringAttribute{MarkdownDescription: "The file's path relative to the checkout.", Computed: true},
					"size":   schema.Int64Attribute{MarkdownDescription: "Its size in bytes.", Computed: true},
					"sha256": schema.StringAttribute{MarkdownDescription: "The hex SHA-256 of its content.", Computed: true},
					"path": schema.StringAttribute{
						MarkdownDescription: "Where it was downloaded to; null without `download_dir`.",
						Computed:            true,
					},
				}},
			},
		},
	}
	refuseControlCharsInDataSource(resp.Schema.Attributes)
}

// Read lists and optionally downloads the artifacts.
func (d *jobArtifactsDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	if !configuredData(d.data, &resp.Diagnostics) {
		return
	}
	rc := d.data.reaperClient(&resp.Diagnostics)
	var m jobArtifactsModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	id := m.JobID.ValueString()
	arts, err := rc.JobArtifacts(ctx, id)
	if errors.Is(err, job.ErrNotFound) {
		resp.Diagnostics.AddAttributeError(path.Root("job_id"), "No such job",
			fmt.Sprintf("The reaper has no job %q (it may have been removed by its retention). Check job_id.", id))
		return
	}
	if err != nil {
		resp.Diagnostics.AddError("Cannot list the job's artifacts", reaperErrorText(err))
		return
	}
	dir := m.DownloadDir.ValueString()
	vals := make([]attr.Value, 0, len(arts))
	for _, a := range arts {
		p := types.StringNull()
		if dir != "" {
			dst, err := downloadArtifact(ctx, rc, id, a, dir)
			if err != nil {
				resp.Diagnostics.AddAttributeError(path.Root("download_dir"), "Downloading an artifact failed",
					fmt.Sprintf("Downloading %s of job %s into %s failed: %s.", a.Name, id, dir, err))
				return
			}
			p = types.StringValue(dst)
		}
		vals = append(vals, types.ObjectValueMust(downloadedArtifactType.AttrTypes, map[string]attr.Value{
			"name": types.StringValue(a.Name), "size": types.Int64Value(a.Size),
			"sha256": types.StringValue(a.SHA256), "path": p,
		}))
	}
	m.Artifacts = types.ListValueMust(downloadedArtifactType, vals)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// downloadArtifact downloads a into dir under its name, through a temporary
// file in the same directory that is renamed only once the sha256 matches
// both what the reaper announced and what it listed.
func downloadArtifact(ctx context.Context, rc *api.Client, id string, a job.Artifact, dir string) (string, error) {
	if err := job.CheckName(a.Name); err != nil || !filepath.IsLocal(filepath.FromSlash(a.Name)) {
		return "", fmt.Errorf("refusing the artifact name %q: not a relative path inside the directory", a.Name)
	}
	dst := filepath.Join(dir, filepath.FromSlash(a.Name))
	if holds(dst, a) {
		return dst, nil // every plan reads the data source: fetch only what changed
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(filepath.Dir(dst), ".agentlab-download-*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	got, err := rc.DownloadArtifact(ctx, id, a.Name, f)
	if err != nil {
		return "", err
	}
	if got.SHA256 != a.SHA256 || got.Size != a.Size {
		return "", fmt.Errorf("%w: got %d bytes with sha256 %s, the listing says %d bytes with %s",
			api.ErrChecksum, got.Size, got.SHA256, a.Size, a.SHA256)
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", err
	}
	done = true
	return dst, nil
}

// holds reports whether path is a regular file with a's bytes: its size and
// its sha256 (hashed again, so a file changed since is fetched again).
func holds(path string, a job.Artifact) bool {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != a.Size {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false
	}
	return hex.EncodeToString(h.Sum(nil)) == a.SHA256
}
