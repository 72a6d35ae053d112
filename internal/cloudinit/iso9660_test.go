package cloudinit

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kdomanski/iso9660"
)

func testSeed(t *testing.T) (Seed, []byte) {
	t.Helper()
	seed, err := testConfig().Render()
	if err != nil {
		t.Fatal(err)
	}
	img, err := seed.ISO()
	if err != nil {
		t.Fatalf("ISO: %v", err)
	}
	return seed, img
}

// readISO reads every regular file in the image's root with an independent
// ISO 9660 + Rock Ridge reader.
func readISO(t *testing.T, img []byte) (label string, files map[string]string) {
	t.Helper()
	image, err := iso9660.OpenImage(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("OpenImage: %v", err)
	}
	if label, err = image.Label(); err != nil {
		t.Fatalf("Label: %v", err)
	}
	root, err := image.RootDir()
	if err != nil {
		t.Fatalf("RootDir: %v", err)
	}
	children, err := root.GetChildren()
	if err != nil {
		t.Fatalf("GetChildren: %v", err)
	}
	files = map[string]string{}
	for _, c := range children {
		if c.IsDir() {
			t.Errorf("unexpected directory %q", c.Name())
			continue
		}
		b, err := io.ReadAll(c.Reader())
		if err != nil {
			t.Fatalf("read %s: %v", c.Name(), err)
		}
		if c.Mode().Perm() != 0o444 {
			t.Errorf("%s mode %v; want r--r--r--", c.Name(), c.Mode())
		}
		files[c.Name()] = string(b)
	}
	return label, files
}

func TestISOReadBack(t *testing.T) {
	seed, img := testSeed(t)
	if len(img)%sectorSize != 0 {
		t.Errorf("image size %d is not a whole number of sectors", len(img))
	}
	if got := binary.LittleEndian.Uint32(img[pvdSector*sectorSize+80:]); int(got)*sectorSize != len(img) {
		t.Errorf("volume space size %d sectors; image has %d", got, len(img)/sectorSize)
	}
	label, files := readISO(t, img)
	if strings.TrimRight(label, " ") != "cidata" {
		t.Errorf("label %q; want cidata", label)
	}
	want := map[string]string{
		"user-data":      string(seed.UserData),
		"meta-data":      string(seed.MetaData),
		"network-config": string(seed.NetworkConfig),
	}
	if len(files) != len(want) {
		t.Errorf("image holds %d files %v; want %d", len(files), keys(files), len(want))
	}
	for name, content := range want {
		if got, ok := files[name]; !ok {
			t.Errorf("no file %q in the image (have %v)", name, keys(files))
		} else if got != content {
			t.Errorf("%s:\ngot  %q\nwant %q", name, got, content)
		}
	}
	_, again := testSeed(t)
	if !bytes.Equal(img, again) {
		t.Errorf("two builds of the same seed differ")
	}
}

func TestISOManyFilesAndSizes(t *testing.T) {
	// As many files as fit in the root directory, with empty, exact-sector
	// and multi-sector contents.
	var in []isoFile
	for i := range 13 {
		size := []int{0, 1, sectorSize, sectorSize + 1, 3*sectorSize - 1}[i%5]
		data := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		in = append(in, isoFile{name: fmt.Sprintf("file-%02d.with.dots-and-a-long-name", i), data: data})
	}
	img, err := buildISO("TESTLABEL", in)
	if err != nil {
		t.Fatalf("buildISO: %v", err)
	}
	label, files := readISO(t, img)
	if strings.TrimRight(label, " ") != "TESTLABEL" {
		t.Errorf("label %q; want TESTLABEL", label)
	}
	for _, f := range in {
		if got, ok := files[f.name]; !ok || got != string(f.data) {
			t.Errorf("%s: got %d bytes (present %v); want %d", f.name, len(got), ok, len(f.data))
		}
	}
	if len(files) != len(in) {
		t.Errorf("read %d files; want %d", len(files), len(in))
	}
}

func TestBuildISOErrors(t *testing.T) {
	tests := []struct {
		name  string
		label string
		files []isoFile
		want  string
	}{
		{"collision", "x", []isoFile{{name: "user-data"}, {name: "user_data"}}, "both map"},
		{"slash", "x", []isoFile{{name: "a/b"}}, "without '/'"},
		{"dot", "x", []isoFile{{name: ".."}}, "without '/'"},
		{"long name", "x", []isoFile{{name: strings.Repeat("n", maxNameLen+1)}}, "1 to 100 bytes"},
		{"long label", strings.Repeat("L", 33), nil, "volume label"},
		{"too many files", "x", manyFiles(19), "root directory"},
		{"too big", "x", []isoFile{{name: "big", data: make([]byte, maxFileSize+1)}}, "more than a seed file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := buildISO(tt.label, tt.files); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("buildISO error = %v; want one containing %q", err, tt.want)
			}
		})
	}
}

func TestISOIdentifier(t *testing.T) {
	tests := map[string]string{
		"user-data":                            "USER_DATA.;1",
		"network-config":                       "NETWORK_CONFIG.;1",
		"a.tar.gz":                             "A_TAR.GZ;1",
		".hidden":                              "_HIDDEN.;1",
		strings.Repeat("x", 40) + ".extension": strings.Repeat("X", 22) + ".EXTENSIO;1",
	}
	for in, want := range tests {
		if got := isoIdentifier(in); got != want {
			t.Errorf("isoIdentifier(%q) = %q; want %q", in, got, want)
		}
	}
}

// writeImage writes the test seed's image to a temporary file.
func writeImage(t *testing.T) (Seed, string) {
	t.Helper()
	seed, img := testSeed(t)
	path := filepath.Join(t.TempDir(), ISOFileName(101))
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return seed, path
}

func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (apt-get install -y %s); skipping this cross-check", name, pkg)
	}
	return path
}

func TestISOWithIsoinfo(t *testing.T) {
	isoinfo := requireTool(t, "isoinfo", "genisoimage")
	seed, path := writeImage(t)
	out, err := exec.CommandContext(t.Context(), isoinfo, "-d", "-i", path).CombinedOutput()
	if err != nil {
		t.Fatalf("isoinfo -d: %v\n%s", err, out)
	}
	for _, want := range []string{"Volume id: cidata\n", "Rock Ridge signatures version 1 found"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("isoinfo -d output lacks %q:\n%s", want, out)
		}
	}
	for name, content := range map[string][]byte{"user-data": seed.UserData, "meta-data": seed.MetaData, "network-config": seed.NetworkConfig} {
		got, err := exec.CommandContext(t.Context(), isoinfo, "-R", "-i", path, "-x", "/"+name).Output()
		if err != nil {
			t.Fatalf("isoinfo -x /%s: %v", name, err)
		}
		if !bytes.Equal(got, content) {
			t.Errorf("isoinfo extracted /%s as %q; want %q", name, got, content)
		}
	}
}

func TestISOWithXorriso(t *testing.T) {
	xorriso := requireTool(t, "xorriso", "xorriso")
	seed, path := writeImage(t)
	dir := filepath.Join(t.TempDir(), "out")
	out, err := exec.CommandContext(t.Context(), xorriso, "-abort_on", "WARNING", "-report_about", "WARNING",
		"-osirrox", "on", "-indev", path, "-pvd_info", "-extract", "/", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("xorriso: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Volume Id    : cidata") {
		t.Errorf("xorriso -pvd_info does not show the label cidata:\n%s", out)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got, want := strings.Join(names, ","), "meta-data,network-config,user-data"; got != want {
		t.Errorf("xorriso extracted %s; want %s", got, want)
	}
	for name, content := range map[string][]byte{"user-data": seed.UserData, "meta-data": seed.MetaData, "network-config": seed.NetworkConfig} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, content) {
			t.Errorf("xorriso extracted %s as %q (%v); want %q", name, got, err, content)
		}
	}
}

// TestISOWithBlkid checks the label the way cloud-init finds the seed device
// (blkid's LABEL, case-sensitive).
func TestISOWithBlkid(t *testing.T) {
	blkid := requireTool(t, "blkid", "util-linux")
	_, path := writeImage(t)
	out, err := exec.CommandContext(t.Context(), blkid, "-p", "-o", "export", path).CombinedOutput()
	if err != nil {
		t.Fatalf("blkid: %v\n%s", err, out)
	}
	for _, want := range []string{"LABEL=cidata\n", "TYPE=iso9660\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("blkid output lacks %q:\n%s", want, out)
		}
	}
}

func manyFiles(n int) []isoFile {
	var out []isoFile
	for i := range n {
		out = append(out, isoFile{name: fmt.Sprintf("file-%02d.with.dots-and-a-long-name", i)})
	}
	return out
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
