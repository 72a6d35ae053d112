package pve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
)

// listVMsReference is how ListVMs decoded the resource list before the
// one-pass parser: the envelope, then the data, both with encoding/json,
// and tags split with SplitTags. The parser must give the same answers and
// the same errors.
func listVMsReference(body []byte) ([]VMEntry, error) {
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("pve GET /cluster/resources: %w: %v", errNotEnvelope, err)
	}
	if len(env.Data) == 0 {
		env.Data = json.RawMessage("null")
	}
	var raw []struct {
		VMID     flexInt `json:"vmid"`
		Node     string  `json:"node"`
		Type     string  `json:"type"`
		Name     string  `json:"name"`
		Status   string  `json:"status"`
		Tags     string  `json:"tags"`
		Template flexInt `json:"template"`
		Lock     string  `json:"lock"`
		Pool     string  `json:"pool"`
		Uptime   flexInt `json:"uptime"`
		MaxMem   flexInt `json:"maxmem"`
		MaxDisk  flexInt `json:"maxdisk"`
		MaxCPU   flexInt `json:"maxcpu"`
	}
	dec := json.NewDecoder(bytes.NewReader(env.Data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("pve GET /cluster/resources: decoding response data: %w", err)
	}
	out := make([]VMEntry, 0, len(raw))
	for _, r := range raw {
		out = append(out, VMEntry{
			VMID: int(r.VMID), Node: r.Node, Type: r.Type, Name: r.Name, Status: r.Status,
			Tags: SplitTags(r.Tags), Template: r.Template == 1, Lock: r.Lock, Pool: r.Pool,
			Uptime: time.Duration(r.Uptime) * time.Second, MaxMem: int64(r.MaxMem),
			MaxDisk: int64(r.MaxDisk), CPUs: int(r.MaxCPU),
		})
	}
	slices.SortFunc(out, func(a, b VMEntry) int { return a.VMID - b.VMID })
	return out, nil
}

// listVMsDecode is ListVMs's decoding of a response body: the stream
// decoder, else (as send asks again) encoding/json. It reports whether the
// stream decoder took the body.
func listVMsDecode(body []byte) ([]VMEntry, bool, error) {
	var l vmList
	decoded, err := l.decodeStream(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		return nil, false, err
	}
	if !decoded {
		if err := decodeData(request{method: http.MethodGet, path: "/cluster/resources"}, body, l.jsonValue()); err != nil {
			return nil, false, err
		}
	}
	return l.sorted(), decoded, nil
}

// resourceList returns a resource list body like the simulator's, n guests
// from VMID 100 on.
func resourceList(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"data":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		id := 100 + i
		status, uptime := "stopped", 0
		if i%3 == 0 {
			status, uptime = "running", 3600+i
		}
		fmt.Fprintf(&b, `{"cpu":0.01,"disk":0,"diskread":0,"diskwrite":0,"id":"qemu/%d","maxcpu":2,"maxdisk":34359738368,`+
			`"maxmem":2147483648,"mem":1073741824,"name":"sbx-%d","netin":0,"netout":0,"node":"pve%d","status":"%s",`+
			`"tags":"agentlab;agentlab-exp-%d","template":0,"type":"qemu","uptime":%d,"vmid":%d}`,
			id, id, i%4, status, 1767225600+i, uptime, id)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// vmListBodies are answers the parser must decode like encoding/json, or
// leave to it. fast says that the parser itself decodes the body.
var vmListBodies = []struct {
	name string
	body string
	fast bool
}{
	{"simulator", string(resourceList(5)), true},
	{"unsorted", `{"data":[{"vmid":300,"node":"b"},{"vmid":100,"node":"a"},{"vmid":200}]}`, true},
	{"empty list", `{"data":[]}`, true},
	{"null data", `{"data":null}`, true},
	{"no data", `{"message":"ok"}`, true},
	{"empty object", `{}`, true},
	{"white space", " \t\r\n{ \"data\" : [ { \"vmid\" : 101 , \"tags\" : \" a , b \" } ] } \n", true},
	{"other members skipped", `{"success":1,"x":{"a":[1,2,{"b":null}],"c":"d"},"data":[{"vmid":101,"extra":{"k":[true,false,null,-1.5e+3]},"id":"qemu/101"}],"total":1}`, true},
	{"numbers as strings", `{"data":[{"vmid":"101","template":"1","uptime":"12","maxmem":"1024","maxdisk":"2048","maxcpu":"4"}]}`, true},
	{"numbers as floats", `{"data":[{"vmid":101.0,"uptime":12.9,"maxmem":1e3,"maxcpu":4E0,"maxdisk":-0}]}`, true},
	{"numbers as booleans and null", `{"data":[{"vmid":101,"template":true,"uptime":false,"maxmem":null,"maxcpu":"true","maxdisk":"null"}]}`, true},
	{"empty number string", `{"data":[{"vmid":101,"maxcpu":""}]}`, true},
	{"big numbers", `{"data":[{"vmid":101,"maxdisk":9223372036854775807,"maxmem":123456789012345678,"uptime":-42}]}`, true},
	{"template false", `{"data":[{"vmid":101,"template":0},{"vmid":102,"template":2}]}`, true},
	{"null strings", `{"data":[{"vmid":101,"name":null,"tags":null,"lock":null,"pool":null,"node":null}]}`, true},
	{"null item", `{"data":[null,{"vmid":101}]}`, true},
	{"empty item", `{"data":[{}]}`, true},
	{"tags separators", `{"data":[{"vmid":101,"tags":";a;;b,c d\te\nf\rg\fh ,; "}]}`, true},
	{"tags empty", `{"data":[{"vmid":101,"tags":""},{"vmid":102,"tags":" ;, "}]}`, true},
	{"tags escaped", `{"data":[{"vmid":101,"tags":"a\u003bb\tc\/d"}]}`, true},
	{"vertical tab is no tag separator", `{"data":[{"vmid":101,"tags":"a\u000bb"}]}`, true},
	{"strings escaped", `{"data":[{"vmid":101,"name":"a\"b\\c\/d\u00e9\ud83d\ude00","node":"p\u0076e","lock":"\n"}]}`, true},
	{"strings not ascii", `{"data":[{"vmid":101,"name":"héllo","tags":"ä;ö"}]}`, true},
	{"invalid utf-8", "{\"data\":[{\"vmid\":101,\"name\":\"a\xffb\",\"tags\":\"x\xfe;y\"}]}", true},
	{"lone surrogate", `{"data":[{"vmid":101,"name":"\ud800x"}]}`, true},
	{"duplicate members", `{"data":[{"vmid":101,"name":"a","name":"b","tags":"x","tags":null,"vmid":102,"maxcpu":3,"maxcpu":null}]}`, true},
	{"keys in upper case", `{"DATA":[{"VMID":101,"Name":"a","TAGS":"x;y","MaxMem":5,"TemPlate":1}]}`, true},
	{"duplicate data", `{"data":[{"vmid":101}],"data":[{"vmid":102}]}`, true},
	{"duplicate data then null", `{"data":[{"vmid":101}],"data":null}`, true},
	{"many items", string(resourceList(100)), true},

	// Left to encoding/json.
	{"escaped key", `{"data":[{"vm\u0069d":101}]}`, false},
	{"key not ascii", `{"data":[{"vmid":101,"ſtatus":"running"}]}`, false},
	{"kelvin sign key", `{"data":[{"vmid":101,"loc` + "\u212a" + `":"clone"}]}`, false},
	{"escaped data key", `{"d\u0061ta":[{"vmid":101}]}`, false},
	{"number string escaped", `{"data":[{"vmid":"1\u0030"}]}`, false},
	{"number string spaces", `{"data":[{"vmid":" 101"}]}`, false},
	{"number string junk", `{"data":[{"vmid":"abc"}]}`, false},
	{"number object", `{"data":[{"vmid":{}}]}`, false},
	{"number array", `{"data":[{"vmid":[1]}]}`, false},
	{"string number", `{"data":[{"vmid":101,"name":5}]}`, false},
	{"string boolean", `{"data":[{"vmid":101,"tags":true}]}`, false},
	{"string object", `{"data":[{"vmid":101,"node":{"a":1}}]}`, false},
	{"item not an object", `{"data":[101]}`, false},
	{"item a string", `{"data":["qemu/101"]}`, false},
	{"data an object", `{"data":{"vmid":101}}`, false},
	{"data a string", `{"data":"x"}`, false},
	{"data true", `{"data":true}`, false},
	{"body an array", `[{"vmid":101}]`, false},
	{"body null", `null`, false},
	{"body empty", ``, false},
	{"body text", `Broken pipe`, false},
	{"trailing garbage", `{"data":[]}x`, false},
	{"two objects", `{"data":[]} {}`, false},
	{"trailing comma in list", `{"data":[{"vmid":101},]}`, false},
	{"trailing comma in item", `{"data":[{"vmid":101,}]}`, false},
	{"trailing comma in skipped", `{"data":[],"x":[1,]}`, false},
	{"missing colon", `{"data":[{"vmid" 101}]}`, false},
	{"unterminated", `{"data":[{"vmid":101}`, false},
	{"unterminated string", `{"data":[{"vmid":101,"name":"ab`, false},
	{"control character", "{\"data\":[{\"vmid\":101,\"name\":\"a\tb\"}]}", false},
	{"bad escape", `{"data":[{"vmid":101,"name":"a\qb"}]}`, false},
	{"short unicode escape", `{"data":[{"vmid":101,"name":"\u12"}]}`, false},
	{"leading zero", `{"data":[{"vmid":0101}]}`, false},
	{"plus sign", `{"data":[{"vmid":+101}]}`, false},
	{"bare dot", `{"data":[{"vmid":101.}]}`, false},
	{"bare exponent", `{"data":[{"vmid":1e}]}`, false},
	{"nan", `{"data":[{"vmid":NaN}]}`, false},
	{"bad literal", `{"data":[{"vmid":101,"template":tru}]}`, false},
	{"nul", `{"data":nul}`, false},
	{"single quotes", `{'data':[]}`, false},
	{"deep skipped", `{"data":[],"x":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`, false},
	{"overflow", `{"data":[{"vmid":101,"maxdisk":99999999999999999999}]}`, true},
	{"number string float", `{"data":[{"vmid":"1e2","maxcpu":"2.5"}]}`, true},
	{"number string hex float", `{"data":[{"vmid":101,"maxcpu":"0x1p3"}]}`, true},
	{"number string inf", `{"data":[{"vmid":101,"maxcpu":"-Inf"}]}`, true},
	{"number string plus", `{"data":[{"vmid":"+101","maxcpu":"007"}]}`, true},
}

// checkSameAsReference fails when decoding body gives another answer or
// another error than listVMsReference, or when the stream decoder gives
// another answer when it reads the body a byte at a time through a window
// of one byte, or without knowing its size. It returns whether the stream
// decoder took the body.
func checkSameAsReference(t *testing.T, body []byte) bool {
	t.Helper()
	want, wantErr := listVMsReference(body)
	got, decoded, err := listVMsDecode(body)
	for _, size := range []int64{int64(len(body)), -1} {
		p := newVMParser(iotest.OneByteReader(bytes.NewReader(body)), size, 1)
		vms, ok := p.envelope()
		if p.s.err != nil || ok != decoded {
			t.Fatalf("body %q, size %d, one byte at a time: got decoded %v, error %v; want %v, nil", body, size, ok, p.s.err, decoded)
		}
		if ok && !reflect.DeepEqual(vmList{vms}.sorted(), got) {
			t.Fatalf("body %q, size %d, one byte at a time:\ngot  %#v\nwant %#v", body, size, vms, got)
		}
	}
	if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
		t.Fatalf("body %q: got error %v; want %v", body, err, wantErr)
	}
	if errors.Is(err, errNotEnvelope) != errors.Is(wantErr, errNotEnvelope) {
		t.Fatalf("body %q: got errNotEnvelope %v; want %v", body, errors.Is(err, errNotEnvelope), errors.Is(wantErr, errNotEnvelope))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("body %q:\ngot  %#v\nwant %#v", body, got, want)
	}
	return decoded
}

func TestListVMsDecodesLikeEncodingJSON(t *testing.T) {
	for _, tt := range vmListBodies {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkSameAsReference(t, []byte(tt.body)); got != tt.fast {
				t.Errorf("decoded by the stream decoder = %v; want %v", got, tt.fast)
			}
			l := vmList{vms: []VMEntry{{VMID: 1}}}
			if ok, _ := l.decodeStream(strings.NewReader(tt.body), -1); !ok && !reflect.DeepEqual(l.vms, []VMEntry{{VMID: 1}}) {
				t.Errorf("decodeStream changed the list to %v when giving up; want it unchanged", l.vms)
			}
		})
	}
}

func FuzzListVMsDecode(f *testing.F) {
	for _, tt := range vmListBodies {
		f.Add([]byte(tt.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkSameAsReference(t, body)
	})
}

func TestListVMsEntries(t *testing.T) {
	body := `{"data":[
		{"vmid":"102","node":"pve2","type":"lxc","name":"ct","status":"stopped","template":"0","maxcpu":"1"},
		{"vmid":101,"node":"pve","type":"qemu","name":"sbx-1","status":"running","tags":"agentlab;agentlab-exp-1767225600",
		 "template":0,"lock":"backup","pool":"sandboxes","uptime":90,"maxmem":2147483648,"maxdisk":34359738368,"maxcpu":2,"cpu":0.5},
		{"vmid":9000,"node":"pve","type":"qemu","name":"tmpl","status":"stopped","template":1}]}`
	got, _, err := listVMsDecode([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []VMEntry{
		{VMID: 101, Node: "pve", Type: "qemu", Name: "sbx-1", Status: "running", Tags: []string{"agentlab", "agentlab-exp-1767225600"},
			Lock: "backup", Pool: "sandboxes", Uptime: 90 * time.Second, MaxMem: 2 << 30, MaxDisk: 32 << 30, CPUs: 2},
		{VMID: 102, Node: "pve2", Type: "lxc", Name: "ct", Status: "stopped", CPUs: 1},
		{VMID: 9000, Node: "pve", Type: "qemu", Name: "tmpl", Status: "stopped", Template: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestListVMsTagSlicesAreIndependent(t *testing.T) {
	vms, _, err := listVMsDecode([]byte(`{"data":[{"vmid":1,"tags":"a;b"},{"vmid":2,"tags":"c;d"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	vms[0].Tags = append(vms[0].Tags, "x")
	if got, want := vms[1].Tags, []string{"c", "d"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after appending to the first guest's tags, the second's = %q; want %q", got, want)
	}
}

func TestListVMsOverHTTP(t *testing.T) {
	body := resourceList(3000)
	chunked := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api2/json/cluster/resources" || r.URL.Query().Get("type") != "vm" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		if !chunked {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		for b := body; len(b) > 0; b = b[min(len(b), 1000):] { // many writes: chunked without a length
			_, _ = w.Write(b[:min(len(b), 1000)])
		}
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv)
	want, err := listVMsReference(body)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunked = range []bool{false, true} {
		got, err := c.ListVMs(context.Background())
		if err != nil {
			t.Fatalf("chunked %v: %v", chunked, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("chunked %v: got %d guests, first %+v; want %d, first %+v", chunked, len(got), got[0], len(want), want[0])
		}
	}
}

func TestListVMsErrors(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		body        string
		wantText    string
		notEnvelope bool
		requests    int64 // an answer the stream decoder gives up on is asked for again
	}{
		{"api error", 403, `{"data":null}`, "403", false, 1},
		{"not json", 200, `<html>`, "response is not a json api envelope", true, 2},
		{"trailing garbage", 200, `{"data":[]}]`, "response is not a json api envelope", true, 2},
		{"wrong type", 200, `{"data":[{"vmid":101,"name":5}]}`, "decoding response data: json: cannot unmarshal number", false, 2},
		{"not a number", 200, `{"data":[{"vmid":"x"}]}`, "decoding response data: not a number", false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var requests atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			t.Cleanup(srv.Close)
			c, _ := newTestClient(t, srv)
			_, err := c.ListVMs(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantText) || !strings.HasPrefix(err.Error(), "list vms: ") {
				t.Fatalf("got %v; want an error with %q", err, tt.wantText)
			}
			if got := errors.Is(err, errNotEnvelope); got != tt.notEnvelope {
				t.Errorf("errors.Is(err, errNotEnvelope) = %v; want %v", got, tt.notEnvelope)
			}
			var ae *APIError
			if got, want := errors.As(err, &ae), tt.status != 200; got != want {
				t.Errorf("errors.As(err, *APIError) = %v; want %v", got, want)
			}
			if got := requests.Load(); got != tt.requests {
				t.Errorf("requests = %d; want %d", got, tt.requests)
			}
		})
	}
}

func TestListVMsAsksAgainWhenNotStreamed(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		writeData(w, `[{"vm\u0069d":102,"name":"b"},{"vmid":101}]`) // an escaped key: left to encoding/json
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv)
	got, err := c.ListVMs(context.Background())
	if want := []VMEntry{{VMID: 101}, {VMID: 102, Name: "b"}}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ListVMs = %+v, %v; want %+v", got, err, want)
	}
	if got := requests.Load(); got != 2 {
		t.Errorf("requests = %d; want 2", got)
	}
}

func TestListVMsBrokenBodyIsRetried(t *testing.T) {
	body := resourceList(50)
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 1 {
			// The connection breaks half-way through the answer.
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			_, _ = w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv)
	got, err := c.ListVMs(context.Background())
	if err != nil || len(got) != 50 {
		t.Fatalf("ListVMs = %d guests, %v; want 50 after a retry", len(got), err)
	}
	if got := requests.Load(); got != 2 {
		t.Errorf("requests = %d; want 2", got)
	}
}

func TestSplitTagsWithoutRegexp(t *testing.T) {
	for _, s := range []string{
		"", ";", "a", "a;b", "a,b", "a b", " a ", ";;a;;b;;", "a\tb\nc\rd\fe", "a\vb", "a;,; b",
		"agentlab;agentlab-exp-1767225600", "ä;ö", "a\u00a0b", "a\u2003b",
	} {
		if got, want := splitTags(s), SplitTags(s); !reflect.DeepEqual(got, want) {
			t.Errorf("splitTags(%q) = %q; want %q", s, got, want)
		}
	}
}

func FuzzSplitTags(f *testing.F) {
	for _, s := range []string{"a;b", " a, b ", "a\tb\vc", ";;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := splitTags(s), SplitTags(s); !reflect.DeepEqual(got, want) {
			t.Errorf("splitTags(%q) = %q; want %q", s, got, want)
		}
	})
}

func TestFlexValueLikeFlexInt(t *testing.T) {
	for _, s := range []string{
		"0", "-0", "1", "-1", "101", "007", "+5", "1.5", "-1.5", "1e3", "1E-2", "123456789012345678",
		"1234567890123456789", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
		"99999999999999999999", "", "null", "false", "true", "abc", " 1", "1 ", "0x10", "0x1p3", "Inf", "-inf",
		"1_000", "-", "",
	} {
		var want flexInt
		wantErr := want.UnmarshalJSON([]byte(`"` + s + `"`))
		got, ok := flexValue([]byte(s))
		if ok != (wantErr == nil) || ok && got != int64(want) {
			t.Errorf("flexValue(%q) = %d, %v; want %d, %v", s, got, ok, want, wantErr)
		}
	}
}

// BenchmarkListVMs decodes the resource list of 10,000 guests, as the reaper
// does at every tick.
func BenchmarkListVMs(b *testing.B) {
	body := resourceList(10000)
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := listVMsDecode(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reference", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := listVMsReference(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("http", func(b *testing.B) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			_, _ = w.Write(body)
		}))
		b.Cleanup(srv.Close)
		c, err := New(context.Background(), Config{Endpoint: srv.URL, APIToken: testToken, HTTPClient: srv.Client()})
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.ListVMs(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
