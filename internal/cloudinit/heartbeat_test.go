package cloudinit

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestRenderHeartbeat(t *testing.T) {
	c := testConfig()
	c.Heartbeat = &Heartbeat{URL: "http://10.77.0.1:8846", Token: "tok_0123456789abcdef"}
	seed, err := c.Render()
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	var doc struct {
		WriteFiles []writeFile `yaml:"write_files"`
	}
	if err := yaml.Unmarshal(seed.UserData, &doc); err != nil {
		t.Fatalf("user-data is not YAML: %v", err)
	}
	if len(doc.WriteFiles) != 2 {
		t.Fatalf("write_files has %d entries; want 2", len(doc.WriteFiles))
	}
	env, cmd := doc.WriteFiles[0], doc.WriteFiles[1]
	if env.Path != HeartbeatEnvFile || env.Permissions != "0600" || env.Owner != "agent:agent" || !env.Defer {
		t.Errorf("env file = %+v; want %s, 0600, agent:agent, deferred", env, HeartbeatEnvFile)
	}
	wantEnv := "AGENTLAB_HEARTBEAT_URL=http://10.77.0.1:8846\nAGENTLAB_HEARTBEAT_TOKEN=tok_0123456789abcdef\n"
	if env.Content != wantEnv {
		t.Errorf("env content = %q; want %q", env.Content, wantEnv)
	}
	if cmd.Path != HeartbeatCommand || cmd.Permissions != "0755" || !strings.Contains(cmd.Content, "/v1/heartbeat") {
		t.Errorf("command = %+v; want %s, 0755, posting to /v1/heartbeat", cmd, HeartbeatCommand)
	}
	// Without a heartbeat there is no write_files key at all.
	plain, err := testConfig().Render()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(plain.UserData), "write_files") {
		t.Errorf("user-data without heartbeat has write_files:\n%s", plain.UserData)
	}
}

func TestHeartbeatValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		hb   Heartbeat
		want string
	}{
		{"no scheme", Heartbeat{URL: "10.77.0.1:8846", Token: "tok_0123456789abcdef"}, "heartbeat url"},
		{"ftp", Heartbeat{URL: "ftp://10.77.0.1", Token: "tok_0123456789abcdef"}, "heartbeat url"},
		{"query", Heartbeat{URL: "http://10.77.0.1:8846/?x=1", Token: "tok_0123456789abcdef"}, "heartbeat url"},
		{"short token", Heartbeat{URL: "http://10.77.0.1:8846", Token: "short"}, "heartbeat token"},
		{"shell chars", Heartbeat{URL: "http://10.77.0.1:8846", Token: "tok_0123456789abcdef;rm"}, "heartbeat token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			hb := tc.hb
			c.Heartbeat = &hb
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v; want an error about %s", err, tc.want)
			}
		})
	}
}
