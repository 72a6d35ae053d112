package privileges

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoRoot is the repository, seen from this package's directory.
const repoRoot = "../.."

// TestReaperPrivilegesDocumented: docs/reaper.md shows Reaper(), table and
// role command, so the docs and the reaper's 403 message cannot disagree.
// (provider/privileges_doc_test.go does the same for Provider().)
func TestReaperPrivilegesDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "reaper.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{Markdown(Reaper()), RoleCommand(ReaperRole, Reaper())} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/reaper.md lacks the privileges from internal/privileges.Reaper(); put this in its install section:\n\n%s", want)
		}
	}
}

var (
	roleAddRE = regexp.MustCompile(`pveum role add (\S+) -privs "[^"]*"`)
	aclRE     = regexp.MustCompile(`pveum acl modify (\S+) .*-role (\S+)`)
)

// TestPveumCommandsInDocs checks every pveum command in the repository's
// docs and templates: a role is created with exactly its list's
// privileges, and the ACLs given to it cover every path the list names.
func TestPveumCommandsInDocs(t *testing.T) {
	lists := map[string][]Privilege{ProviderRole: Provider(), ReaperRole: Reaper()}
	seen := map[string]bool{}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != repoRoot && (strings.HasPrefix(d.Name(), ".") || d.Name() == "vendor" || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(path); ext != ".md" && ext != ".tmpl" && ext != ".sh" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checkPveum(t, path, string(b), lists)
		for _, m := range roleAddRE.FindAllStringSubmatch(string(b), -1) {
			seen[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for role := range lists {
		if !seen[role] {
			t.Errorf("no doc shows how to create the role %s; want its pveum role add command", role)
		}
	}
}

func checkPveum(t *testing.T, file, doc string, lists map[string][]Privilege) {
	t.Helper()
	acls := map[string][]string{}
	for _, m := range aclRE.FindAllStringSubmatch(doc, -1) {
		acls[m[2]] = append(acls[m[2]], m[1])
	}
	for _, m := range roleAddRE.FindAllStringSubmatch(doc, -1) {
		role := m[1]
		ps, ok := lists[role]
		if !ok {
			t.Errorf("%s: pveum role add %s: want role %s or %s (internal/privileges)", file, role, ProviderRole, ReaperRole)
			continue
		}
		if want := RoleCommand(role, ps); m[0] != want {
			t.Errorf("%s: %s\nwant the list from internal/privileges:\n%s", file, m[0], want)
		}
		for _, p := range ps {
			if !covered(p.Path, acls[role]) {
				t.Errorf("%s: no pveum acl modify gives role %s on %s (%s needs it for %s); ACL paths: %v",
					file, role, p.Path, p.Name, p.UsedFor, acls[role])
			}
		}
	}
}

// covered reports whether one of the ACL paths applies to path: ACLs
// propagate down the tree ("/vms" covers "/vms/<template>").
func covered(path string, acls []string) bool {
	for _, a := range acls {
		if a == "/" || path == a || strings.HasPrefix(path, strings.TrimSuffix(a, "/")+"/") {
			return true
		}
	}
	return false
}

func TestCovered(t *testing.T) {
	for _, tc := range []struct {
		path string
		acls []string
		want bool
	}{
		{"/vms", []string{"/"}, true},
		{"/vms/<template>", []string{"/vms"}, true},
		{"/storage", []string{"/vms"}, false},
		{"/storagex", []string{"/storage"}, false},
		{"/nodes", nil, false},
	} {
		if got := covered(tc.path, tc.acls); got != tc.want {
			t.Errorf("covered(%q, %v) = %v; want %v", tc.path, tc.acls, got, tc.want)
		}
	}
}
