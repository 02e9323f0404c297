package audit

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestListenerNamesDefinedOnce: the listener names are declared here and
// nowhere else in production code (no second const or var holding
// "transparent_https" etc.), so events and metric labels cannot drift apart.
func TestListenerNamesDefinedOnce(t *testing.T) {
	if len(Listeners) != 5 || !slices.Contains(Listeners, ListenerProxy) || !slices.Contains(Listeners, ListenerProxyTLS) ||
		!slices.Contains(Listeners, ListenerTransparentHTTPS) || !slices.Contains(Listeners, ListenerTransparentHTTP) ||
		!slices.Contains(Listeners, ListenerTransparentQUIC) {
		t.Fatalf("Listeners = %v", Listeners)
	}
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	var dups []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "vendor" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, v := range vs.Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				s, _ := strconv.Unquote(lit.Value)
				if slices.Contains(Listeners, s) && filepath.Base(filepath.Dir(p)) != "audit" {
					dups = append(dups, fset.Position(lit.Pos()).String()+" "+vs.Names[i].Name)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dups) > 0 {
		t.Fatalf("listener names declared outside package audit (use audit.Listener*): %v", dups)
	}
}
