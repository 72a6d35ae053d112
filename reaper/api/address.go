package api

import (
	"context"
	"net/http"
	"net/netip"
	"strconv"
)

// Addresser finds a sandbox's IPv4 address through the guest agent.
type Addresser interface {
	Address(ctx context.Context, vmid int) (netip.Addr, error)
}

// Address is the answer of GET /v1/leases/{vmid}/address.
type Address struct {
	VMID    int    `json:"vmid"`
	Address string `json:"address"`
}

func (s *Server) address(w http.ResponseWriter, r *http.Request) {
	vmid, err := vmidParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if s.Addresses == nil {
		writeError(w, http.StatusNotImplemented, "this agentlab-reaper cannot look up addresses")
		return
	}
	ip, err := s.Addresses.Address(r.Context(), vmid)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, Address{VMID: vmid, Address: ip.String()})
}

// Address returns a sandbox's IPv4 address as its guest agent reports it.
func (c *Client) Address(ctx context.Context, vmid int) (netip.Addr, error) {
	var a Address
	if err := c.do(ctx, http.MethodGet, "/v1/leases/"+strconv.Itoa(vmid)+"/address", nil, &a); err != nil {
		return netip.Addr{}, err
	}
	return netip.ParseAddr(a.Address)
}
