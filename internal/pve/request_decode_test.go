package pve

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"testing"
)

// TestDecodeDataLikeTwoPasses checks the one-pass decoding of answers
// against decodeDataStrictly, the two passes it replaces: same values, same
// errors.
func TestDecodeDataLikeTwoPasses(t *testing.T) {
	type status struct {
		Status     string  `json:"status"`
		ExitStatus string  `json:"exitstatus"`
		PID        flexInt `json:"pid"`
		Extra      any     `json:"extra"`
	}
	outs := map[string]func() any{
		"map":     func() any { return new(map[string]any) },
		"upid":    func() any { return new(*string) },
		"string":  func() any { return new(string) },
		"struct":  func() any { return new(status) },
		"flexInt": func() any { return new(flexInt) },
		"list":    func() any { return new([]map[string]any) },
		"any":     func() any { return new(any) },
	}
	bodies := []string{
		`{"data":{"name":"sbx","cores":2,"memory":"2048","balloon":0.5,"net0":"virtio=AA:BB","digest":"abc","x":null,"y":[1,{"z":2}]}}`,
		`{"data":"UPID:pve:0001:0002:0003:qmclone:101:root@pam:"}`,
		`{"data":null}`,
		`{"data":null,"message":"ok\n"}`,
		`{}`,
		`{"success":1}`,
		`{"data":5}`,
		`{"data":"5"}`,
		`{"data":12345678901234567890}`,
		`{"data":true}`,
		`{"data":{"status":"stopped","exitstatus":"OK","pid":"12","extra":1.5}}`,
		`{"data":{"status":5}}`,
		`{"data":{"pid":"x"}}`,
		`{"data":[{"a":1},{"b":"2"}]}`,
		`{"data":[1,2]}`,
		`{"DATA":{"Status":"running"}}`,
		" \n{\"data\" : {\"a\" : 1}} \r\n\t",
		`{"data":{}} x`,
		`{"data":{}}{}`,
		`{"data":{`,
		`[{"data":1}]`,
		`null`,
		`"data"`,
		``,
		`Broken pipe`,
		`{"data":"\u00e9\ud800"}`,
	}
	req := request{method: http.MethodGet, path: "/x"}
	for name, newOut := range outs {
		for _, body := range bodies {
			got, want := newOut(), newOut()
			err := decodeData(req, []byte(body), got)
			wantErr := decodeDataStrictly(req, []byte(body), want)
			if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
				t.Errorf("%s %q: got error %v; want %v", name, body, err, wantErr)
				continue
			}
			if errors.Is(err, errNotEnvelope) != errors.Is(wantErr, errNotEnvelope) {
				t.Errorf("%s %q: got errNotEnvelope %v; want %v", name, body, errors.Is(err, errNotEnvelope), errors.Is(wantErr, errNotEnvelope))
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s %q: got %#v; want %#v", name, body, reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem())
			}
		}
	}
}

func TestDecodeDataKeepsNumbers(t *testing.T) {
	var got map[string]any
	if err := decodeData(request{}, []byte(`{"data":{"memory":2048,"balloon":0.5}}`), &got); err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"memory": json.Number("2048"), "balloon": json.Number("0.5")}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v; want %#v", got, want)
	}
}

func TestReadBody(t *testing.T) {
	for _, size := range []int{0, 1, 4095, 4096, 4097, 100_000} {
		body := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
		for _, cl := range []int64{int64(size), -1, int64(size / 2), int64(size) + 10} {
			got, err := readBody(&http.Response{Body: io.NopCloser(bytes.NewReader(body)), ContentLength: cl})
			if err != nil || !bytes.Equal(got, body) {
				t.Errorf("size %d, content-length %d: got %d bytes, %v; want %d bytes", size, cl, len(got), err, size)
			}
		}
	}
}

func BenchmarkDecodeConfig(b *testing.B) {
	body := []byte(`{"data":{"boot":"order=scsi0;net0","cores":2,"cpu":"x86-64-v2-AES","description":"agentlab sandbox",` +
		`"digest":"5e4b0b4a8d3c2f1e0a9b8c7d6e5f4a3b2c1d0e9f","ide2":"local-lvm:vm-101-cloudinit,media=cdrom","memory":"2048",` +
		`"meta":"creation-qemu=9.0.2,ctime=1767225600","name":"sbx-101","net0":"virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1",` +
		`"ostype":"l26","scsi0":"local-lvm:vm-101-disk-0,iothread=1,size=32G","scsihw":"virtio-scsi-single","smbios1":"uuid=0",` +
		`"sockets":1,"tags":"agentlab;agentlab-exp-1767225600","vmgenid":"0"}}`)
	for _, bb := range []struct {
		name   string
		decode func(request, []byte, any) error
	}{{"one-pass", decodeData}, {"two-pass", decodeDataStrictly}} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var raw map[string]any
				if err := bb.decode(request{}, body, &raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
