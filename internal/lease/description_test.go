package lease

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentlab/terraform-provider-agentlab/internal/egressrule"
)

func sampleMetadata(t *testing.T) Metadata {
	t.Helper()
	l, err := New(t0, 2*time.Hour, 8*time.Hour, Stop)
	if err != nil {
		t.Fatal(err)
	}
	return Metadata{
		Owner:   "terraform@pve!agentlab",
		Profile: "yolo-ephemeral",
		Nonce:   "N0NCE",
		Lease:   l,
	}
}

// pveStore mimics what PVE does with a description between a PUT and the
// next GET: it writes each line as a comment line of the config file
// (dropping trailing empty lines) and strips trailing white space on reading.
func pveStore(s string) string {
	lines := strings.Split(s, "\n")
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return NormalizeDescription(strings.Join(lines, "\n"))
}

// roughStore mimics a harsher path (a browser textarea, an editor): CRLF
// line ends and trailing white space stripped from every line.
func roughStore(s string) string {
	lines := strings.Split(pveStore(s), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t")
	}
	return strings.Join(lines, "\r\n")
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	full := sampleMetadata(t)
	full.JobID = "job-42"
	full.Workspace = "local-lvm:vm-999-disk-0"
	full.Egress = egressrule.Allowlist
	full.EgressAllow = []string{"1.2.3.0/24", "2001:db8::/32", "10.9.0.0/16:5432/tcp"}
	full.HeartbeatTokenSHA256 = strings.Repeat("ab", 32)
	full.BootTokenSHA256 = strings.Repeat("cd", 32)
	nasty := sampleMetadata(t)
	nasty.Owner = "evil " + EndMarker + "\n" + BeginMarker + " & <b>"

	tests := []struct {
		name   string
		before string
		meta   Metadata
	}{
		{"empty description", "", sampleMetadata(t)},
		{"user text", "My sandbox\n\nfor **testing**", sampleMetadata(t)},
		{"user text with trailing blanks", "notes  \n\n\n", sampleMetadata(t)},
		{"all fields", "x", full},
		{"markers inside values", "x", nasty},
	}
	stores := map[string]func(string) string{
		"none":  func(s string) string { return s },
		"pve":   pveStore,
		"rough": roughStore,
	}
	for _, tt := range tests {
		for storeName, store := range stores {
			t.Run(tt.name+"/"+storeName, func(t *testing.T) {
				enc, err := Encode(tt.before, tt.meta)
				if err != nil {
					t.Fatalf("Encode: %v", err)
				}
				if storeName == "pve" && pveStore(enc) != enc {
					t.Errorf("Encode output changes when PVE stores it:\n got %q\nwant %q", pveStore(enc), enc)
				}
				got, err := Decode(store(enc))
				if err != nil {
					t.Fatalf("Decode: %v\ndescription:\n%s", err, store(enc))
				}
				want := tt.meta
				want.Version = Version
				if !reflect.DeepEqual(got, want) {
					t.Errorf("got %+v; want %+v", got, want)
				}
				if user := NormalizeDescription(tt.before); user != "" && !strings.HasPrefix(enc, user+"\n\n"+BeginMarker) {
					t.Errorf("user text not kept before the block:\n%s", enc)
				}
			})
		}
	}
}

func TestEncodeReplacesInPlace(t *testing.T) {
	m1 := sampleMetadata(t)
	m2 := m1
	var err error
	if m2.Lease, err = m1.Renew(t0.Add(time.Hour), 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	first, err := Encode("", m1)
	if err != nil {
		t.Fatal(err)
	}
	desc := "Header line\n  indented\n" + first + "\nFooter: keep me\n\nlast"
	second, err := Encode(pveStore(desc), m2)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	wantBlock, err := Encode("", m2)
	if err != nil {
		t.Fatal(err)
	}
	want := "Header line\n  indented\n" + wantBlock + "\nFooter: keep me\n\nlast"
	if second != want {
		t.Errorf("got\n%q\nwant\n%q", second, want)
	}
	got, err := Decode(second)
	if err != nil {
		t.Fatal(err)
	}
	if !got.ExpiresAt.Equal(t0.Add(4 * time.Hour)) {
		t.Errorf("ExpiresAt = %s; want %s", got.ExpiresAt, t0.Add(4*time.Hour))
	}
	// Encoding the same metadata again changes nothing.
	again, err := Encode(second, m2)
	if err != nil || again != second {
		t.Errorf("re-encoding changed the description: %v\n%q\n%q", err, again, second)
	}
}

func TestEncodeFormat(t *testing.T) {
	got, err := Encode("hello", sampleMetadata(t))
	if err != nil {
		t.Fatal(err)
	}
	want := "hello\n\n" + BeginMarker + "\n" +
		`{"version":1,"owner":"terraform@pve!agentlab","profile":"yolo-ephemeral",` +
		`"created_at":"2026-05-01T12:00:00Z","expires_at":"2026-05-01T14:00:00Z",` +
		`"ttl":"2h0m0s","max_ttl":"8h0m0s","on_expiry":"stop","nonce":"N0NCE"}` +
		"\n" + EndMarker
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestEncodeErrors(t *testing.T) {
	good := sampleMetadata(t)
	noNonce := good
	noNonce.Nonce = ""
	future := good
	future.Version = Version + 1
	tests := []struct {
		name string
		desc string
		meta Metadata
		want string
	}{
		{"missing nonce", "", noNonce, "nonce"},
		{"bad egress policy", "", func() Metadata { m := good; m.Egress = "closed"; return m }(), "invalid egress policy \"closed\""},
		{"bad egress entry", "", func() Metadata { m := good; m.EgressAllow = []string{"10.0.0.1/8"}; return m }(), "egress_allow: invalid lease: item 1"},
		{"newer version", "", future, "newer"},
		{"begin without end", "a\n" + BeginMarker + "\n{}", good, "by hand"},
		{"two blocks", BeginMarker + "\n{}\n" + EndMarker + "\n" + BeginMarker + "\n{}\n" + EndMarker, good, "more than one"},
		{"too long", strings.Repeat("x", MaxDescriptionLen), good, "PVE allows 8192"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Encode(tt.desc, tt.meta)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Encode error = %v; want one containing %q", err, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	valid, err := json.Marshal(sampleMetadataWithVersion(t))
	if err != nil {
		t.Fatal(err)
	}
	block := func(body string) string { return "text\n" + BeginMarker + "\n" + body + "\n" + EndMarker }
	replace := func(old, new string) string { return block(strings.Replace(string(valid), old, new, 1)) }
	tests := []struct {
		name string
		desc string
		want error
		text string
	}{
		{"empty", "", ErrNoBlock, ""},
		{"user text only", "just notes\nno block", ErrNoBlock, ""},
		{"end only", "x\n" + EndMarker, ErrMalformed, "without"},
		{"begin only", BeginMarker + "\n" + string(valid), ErrMalformed, "without"},
		{"reversed", EndMarker + "\n" + string(valid) + "\n" + BeginMarker, ErrMalformed, "before"},
		{"empty block", block(""), ErrMalformed, "found 0"},
		{"two lines", block(string(valid) + "\n" + string(valid)), ErrMalformed, "found 2"},
		{"not json", block("{nope"), ErrMalformed, "invalid character"},
		{"truncated json", block(string(valid[:len(valid)-5])), ErrMalformed, ""},
		{"no version", replace(`"version":1,`, ``), ErrMalformed, "version"},
		{"future version", replace(`"version":1`, `"version":7`), ErrMalformed, "newer"},
		{"bad time", replace(`2026-05-01T14:00:00Z`, `tomorrow`), ErrMalformed, "expires_at"},
		{"bad ttl", replace(`"ttl":"2h0m0s"`, `"ttl":"2 hours"`), ErrMalformed, "ttl"},
		{"bad action", replace(`"on_expiry":"stop"`, `"on_expiry":"explode"`), ErrMalformed, "on_expiry"},
		{"bad egress", replace(`"nonce":"N0NCE"`, `"nonce":"N0NCE","egress":"closed"`), ErrMalformed, "open, allowlist or none"},
		{"bad egress entry", replace(`"nonce":"N0NCE"`, `"nonce":"N0NCE","egress_allow":["example.com"]`), ErrMalformed, "egress_allow"},
		{"no nonce", replace(`"nonce":"N0NCE"`, `"nonce":""`), ErrMalformed, "nonce"},
		{"expiry past cap", replace(`2026-05-01T14:00:00Z`, `2026-05-02T14:00:00Z`), ErrMalformed, "max_ttl"},
		{"missing expiry", replace(`"expires_at":"2026-05-01T14:00:00Z",`, ``), ErrMalformed, "expires_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.desc)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode error = %v; want %v", err, tt.want)
			}
			if tt.want == ErrMalformed && errors.Is(err, ErrNoBlock) {
				t.Errorf("error %v is both malformed and no-block", err)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %q does not contain %q", err, tt.text)
			}
		})
	}
}

func TestDecodeIgnoresUnknownFields(t *testing.T) {
	valid, err := json.Marshal(sampleMetadataWithVersion(t))
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(string(valid), `{`, `{"future_field":{"x":1},`, 1)
	got, err := Decode(BeginMarker + "\n" + body + "\n" + EndMarker)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if got.Nonce != "N0NCE" {
		t.Errorf("Nonce = %q; want N0NCE", got.Nonce)
	}
}

func TestNewNonce(t *testing.T) {
	a, b := NewNonce(), NewNonce()
	if len(a) < 20 || a == b {
		t.Errorf("NewNonce() gave %q and %q; want two different values of at least 20 characters", a, b)
	}
}

func sampleMetadataWithVersion(t *testing.T) Metadata {
	m := sampleMetadata(t)
	m.Version = Version
	return m
}
