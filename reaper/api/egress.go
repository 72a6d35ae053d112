package api

import (
	"context"
	"net/http"
)

// EgressPrinter shows the egress table; *egress.Filter is one.
type EgressPrinter interface {
	// Ruleset returns the nft script last applied.
	Ruleset() string
}

// EgressResponse is the answer of GET /v1/egress.
type EgressResponse struct {
	// Enabled says whether the egress filter is on (egress.enabled).
	Enabled bool `json:"enabled"`
	// Ruleset is the nft script of the table last applied, when enabled.
	Ruleset string `json:"ruleset,omitempty"`
}

// egress answers GET /v1/egress, on the socket only: the table shows every
// sandbox's MACs and allow list, which is the operator's to see.
func (s *Server) egress(w http.ResponseWriter, r *http.Request) {
	if s.Egress == nil {
		writeJSON(w, http.StatusOK, EgressResponse{})
		return
	}
	writeJSON(w, http.StatusOK, EgressResponse{Enabled: true, Ruleset: s.Egress.Ruleset()})
}

// Egress returns the egress filter's state and ruleset.
func (c *Client) Egress(ctx context.Context) (EgressResponse, error) {
	var resp EgressResponse
	err := c.do(ctx, http.MethodGet, "/v1/egress", nil, &resp)
	return resp, err
}
