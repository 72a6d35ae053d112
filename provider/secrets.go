package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/agentlab/terraform-provider-agentlab/internal/cloudinit"
	"github.com/agentlab/terraform-provider-agentlab/internal/secrets"
)

// secretsAttribute is the write-only secrets map of agentlab_sandbox and
// agentlab_job: Terraform passes it to Create and keeps it in neither the
// plan nor the state.
func secretsAttribute(what string) schema.MapAttribute {
	return schema.MapAttribute{
		MarkdownDescription: "Secrets for the " + what + ", write-only (Terraform >= 1.11 or OpenTofu >= 1.11): never in " +
			"the plan or the state. The provider encrypts them with age to `secrets_recipient` (else the profile's " +
			"`secrets.recipient`), the public key of the template's identity, and the ciphertext travels in the " +
			"cloud-init ISO. At first boot the guest decrypts them with `" + secrets.IdentityPath + "` into `" +
			secrets.Dir + "` (tmpfs, 0700), one 0600 file per key, and removes the ciphertext; a job's task gets " +
			"each as an environment variable. Keys are environment variable names (letters, digits, `_`; not " +
			"`AGENTLAB_*`). Secrets are delivered once: since Terraform cannot compare write-only values, change " +
			"`secrets_version` to deliver new ones.",
		ElementType: types.StringType,
		Optional:    true,
		Sensitive:   true,
		WriteOnly:   true,
	}
}

// secretsVersionAttribute triggers re-delivery of the secrets.
func secretsVersionAttribute(renewal string) schema.StringAttribute {
	return schema.StringAttribute{
		MarkdownDescription: "Any string; changing it delivers `secrets` again, which " + renewal + ". Defaults to null.",
		Optional:            true,
	}
}

// secretsRecipientDescription documents secrets_recipient.
const secretsRecipientDescription = "The age X25519 public key (`age1...`) the secrets are encrypted to: the " +
	"recipient of the template's identity `" + secrets.IdentityPath + "` (`age-keygen -y " + secrets.IdentityPath +
	"` prints it). Defaults to the profile's `secrets.recipient`. Required when `secrets` is set."

// configSecrets reads the write-only secrets from the configuration: nil
// when none are set (or while they are unknown).
func configSecrets(ctx context.Context, config tfsdk.Config) (map[string]string, diag.Diagnostics) {
	var m types.Map
	diags := config.GetAttribute(ctx, path.Root("secrets"), &m)
	if diags.HasError() || m.IsNull() || m.IsUnknown() || len(m.Elements()) == 0 {
		return nil, diags
	}
	out := map[string]string{}
	for k, v := range m.Elements() {
		s, ok := v.(types.String)
		if !ok || s.IsUnknown() {
			return nil, diags
		}
		out[k] = s.ValueString() // a null element delivers an empty file
	}
	return out, diags
}

// checkSecrets is the plan-time check of secrets: valid keys and, when any
// are set, a usable recipient (unless the recipient is not known yet).
func checkSecrets(ctx context.Context, config tfsdk.Config, recipient types.String) diag.Diagnostics {
	values, diags := configSecrets(ctx, config)
	if values == nil {
		return diags
	}
	if err := secrets.Validate(values); err != nil {
		diags.AddAttributeError(path.Root("secrets"), "Invalid secrets", err.Error()+".")
	}
	if recipient.IsUnknown() {
		return diags
	}
	if _, err := secrets.ParseRecipient(recipient.ValueString()); err != nil {
		diags.AddAttributeError(path.Root("secrets_recipient"), "No usable secrets recipient",
			fmt.Sprintf("secrets is set, so it must be encrypted to the template's identity: %s.", err))
	}
	return diags
}

// sealedSeed seals the configuration's secrets to recipient and returns
// what adds them to the sandbox's seed; nil when no secrets are set.
func sealedSeed(ctx context.Context, config tfsdk.Config, recipient types.String) (func(*cloudinit.Config), diag.Diagnostics) {
	values, diags := configSecrets(ctx, config)
	if values == nil || diags.HasError() {
		return nil, diags
	}
	sealed, err := secrets.Seal(values, recipient.ValueString())
	if err != nil {
		diags.AddAttributeError(path.Root("secrets"), "Cannot encrypt the secrets", err.Error()+".")
		return nil, diags
	}
	return func(c *cloudinit.Config) { c.Secrets = &cloudinit.Secrets{Sealed: sealed} }, diags
}

// chainSeed runs both seed functions, either of which may be nil.
func chainSeed(a, b func(*cloudinit.Config)) func(*cloudinit.Config) {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return func(c *cloudinit.Config) { a(c); b(c) }
}
