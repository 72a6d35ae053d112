package pvesimtest_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim/pvesimtest"
)

func TestStartServesTLSWithToken(t *testing.T) {
	sim := pvesimtest.Start(t, func(o *pvesim.Options) { o.Nodes = []string{"alpha"} })
	if !strings.HasPrefix(sim.URL, "https://127.0.0.1:") || !strings.HasSuffix(sim.URL, "/api2/json") {
		t.Errorf("URL = %q; want https://127.0.0.1:PORT/api2/json", sim.URL)
	}
	if sim.TokenID != "root@pam!test" || sim.Token != sim.TokenID+"="+sim.TokenSecret {
		t.Errorf("token = %q (id %q); want root@pam!test=SECRET", sim.Token, sim.TokenID)
	}
	req, _ := http.NewRequest("GET", sim.URL+"/nodes", nil)
	req.Header.Set("Authorization", sim.AuthHeader())
	resp, err := sim.Client.Do(req)
	if err != nil {
		t.Fatalf("GET /nodes: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"node":"alpha"`) {
		t.Errorf("GET /nodes = %d %s; want node alpha", resp.StatusCode, body)
	}
	if resp.ProtoMajor != 1 {
		t.Errorf("protocol HTTP/%d; want HTTP/1.1 like PVE", resp.ProtoMajor)
	}
}
