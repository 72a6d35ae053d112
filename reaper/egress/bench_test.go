package egress

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"testing"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
)

// manySandboxes returns n sandboxes, every third one with an allow list.
func manySandboxes(b *testing.B, n int) []Sandbox {
	allow, err := egressrule.ParseList([]string{"192.168.50.0/24", "0.0.0.0/0:443/tcp"})
	if err != nil {
		b.Fatal(err)
	}
	sbs := make([]Sandbox, n)
	for i := range sbs {
		sbs[i] = Sandbox{VMID: 1000 + i, MACs: []string{fmt.Sprintf("bc:24:11:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)}}
		if i%3 == 0 {
			sbs[i].Policy, sbs[i].Allow = egressrule.Allowlist, allow
		}
	}
	return sbs
}

func benchConfig() Config {
	return Config{Bridge: "vmbr1", Subnet: netip.MustParsePrefix("10.77.0.0/16"),
		Resolver: netip.MustParseAddr("10.77.0.1"), Guest: netip.MustParseAddrPort("10.77.0.1:8846")}
}

// BenchmarkRender renders the table for 10,000 sandboxes.
func BenchmarkRender(b *testing.B) {
	sbs := manySandboxes(b, 10000)
	cfg := benchConfig()
	b.ReportAllocs()
	for b.Loop() {
		Render(cfg, sbs, nil)
	}
}

// BenchmarkNft applies (nft -f), lists (nft -j list, a full check) and reads
// the counters of (an unchanged tick) the table for N sandboxes in a network
// namespace of its own. Root only; 10,000 takes minutes.
func BenchmarkNft(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for a network namespace")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		b.Skip("nft not found")
	}
	ns := fmt.Sprintf("agbench%d", os.Getpid()%100000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		b.Skipf("cannot create a network namespace: %v %s", err, out)
	}
	b.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	n := Nft{Command: []string{"ip", "netns", "exec", ns, "nft"}}
	ctx := context.Background()
	for _, size := range []int{100, 1000, 10000} {
		rs := Render(benchConfig(), manySandboxes(b, size), nil)
		b.Run(fmt.Sprintf("apply/%d", size), func(b *testing.B) {
			for b.Loop() {
				if err := n.Apply(ctx, rs.Text); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("list/%d", size), func(b *testing.B) {
			for b.Loop() {
				l, err := n.List(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := rs.Verify(l); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("counters/%d", size), func(b *testing.B) {
			for b.Loop() {
				if _, err := n.Counters(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSyncChange measures what one sandbox appearing or going costs the
// filter with N sandboxes loaded: render, apply (nft -f) and check what the
// kernel loaded, in a network namespace of its own. Each iteration is one
// Sync that adds a sandbox or removes it again. Root only.
func BenchmarkSyncChange(b *testing.B) {
	n := nsNft(b)
	ctx := context.Background()
	for _, size := range []int{10, 100, 1000} {
		sbs := manySandboxes(b, size+1)
		f := New(benchConfig(), n, nil, nil)
		if _, err := f.Sync(ctx, sbs[:size]); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%d", size), func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				changes, err := f.Sync(ctx, sbs[:size+i%2])
				if err != nil {
					b.Fatal(err)
				}
				if len(changes) != 1 {
					b.Fatalf("changes = %v; want one", changes)
				}
			}
		})
		if err := n.Remove(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// nsNft returns nft in a network namespace made for the test or benchmark,
// removed at its end; it skips without root or nft.
func nsNft(tb testing.TB) Nft {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root for a network namespace")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		tb.Skip("nft not found (apt-get install nftables)")
	}
	ns := fmt.Sprintf("agnft%d", os.Getpid()%100000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		tb.Skipf("cannot create a network namespace: %v %s", err, out)
	}
	tb.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	return Nft{Command: []string{"ip", "netns", "exec", ns, "nft"}}
}
