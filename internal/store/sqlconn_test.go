package store

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestExpandReplacesEveryMacro(t *testing.T) {
	d := &dialect{now: "NOW_MS"}
	for _, c := range []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"SELECT {{now}}", "SELECT NOW_MS"},
		{"COALESCE($1, {{now}}) - {{now}}", "COALESCE($1, NOW_MS) - NOW_MS"},
		{"{{now}}", "NOW_MS"},
	} {
		if got := d.expand(c.in); got != c.want {
			t.Errorf("expand(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestExpandPanicsOnAnUnknownMacro(t *testing.T) {
	d := &dialect{now: "NOW_MS"}
	for _, q := range []string{"SELECT {{nwo}}", "SELECT {{now}} + {{ now }}", "SELECT {{now", "SELECT {{}}"} {
		t.Run(q, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("expand(%q) did not panic", q)
				}
			}()
			d.expand(q)
		})
	}
}

// TestEveryMacroIsKnown expands every string constant of the package's SQL that uses a macro, on
// both dialects, so a misspelt macro fails here even when no test runs its statement.
func TestEveryMacroIsKnown(t *testing.T) {
	n := 0
	for _, f := range packageFiles(t) {
		if f.name == "sqlconn.go" {
			continue // the expander itself, whose messages quote the syntax
		}
		ast.Inspect(f.ast, func(node ast.Node) bool {
			lit, ok := node.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING || !strings.Contains(lit.Value, "{{") {
				return true
			}
			text, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatalf("%s: %v", f.pos(lit), err)
			}
			n++
			for _, d := range []*dialect{&sqliteDialect, &postgresDialect} {
				func() {
					defer func() {
						if r := recover(); r != nil {
							t.Errorf("%s: %v", f.pos(lit), r)
						}
					}()
					if got := d.expand(text); strings.Contains(got, "{{") {
						t.Errorf("%s: %s left a macro in %q", f.pos(lit), d.name, got)
					}
				}()
			}
			return true
		})
	}
	if n == 0 {
		t.Fatal("found no SQL that uses a macro: the scan is broken")
	}
}

// TestNoStatementBypassesExpansion fails when a statement reaches database/sql other than through
// pool or txn (sqlconn.go), the one path that always expands macros. The receivers below are the
// Store's handles, a transaction, the interface both satisfy, and statements prepared through them.
func TestNoStatementBypassesExpansion(t *testing.T) {
	statement := map[string]bool{"ExecContext": true, "QueryContext": true, "QueryRowContext": true,
		"PrepareContext": true, "Exec": true, "Query": true, "QueryRow": true, "Prepare": true}
	allowed := map[string]bool{"s.write": true, "s.read": true, "tx": true, "q": true,
		"stmt": true, "full": true, "stmt.(*sql.Stmt)": true}
	// Outside the Store's statements: goose's migration session, SQLite's page-size and checkpoint
	// PRAGMAs; none of them uses a macro.
	exempt := map[string]bool{"migrate.go db": true, "sqlite.go db": true, "sqlite.go c.db": true, "sqlconn.go p.raw": true, "sqlconn.go t.raw": true}
	calls := 0
	for _, f := range packageFiles(t) {
		ast.Inspect(f.ast, func(node ast.Node) bool {
			call, ok := node.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !statement[sel.Sel.Name] {
				return true
			}
			recv := exprString(sel.X)
			calls++
			if !allowed[recv] && !exempt[f.name+" "+recv] {
				t.Errorf("%s: %s.%s bypasses macro expansion: run statements through pool or txn (sqlconn.go)",
					f.pos(call), recv, sel.Sel.Name)
			}
			return true
		})
	}
	if calls < 20 {
		t.Fatalf("found only %d statements: the scan is broken", calls)
	}
}

type sourceFile struct {
	name string
	fset *token.FileSet
	ast  *ast.File
}

func (f sourceFile) pos(n ast.Node) string { return f.fset.Position(n.Pos()).String() }

// packageFiles parses the package's non-test Go files.
func packageFiles(t *testing.T) []sourceFile {
	t.Helper()
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []sourceFile
	fset := token.NewFileSet()
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, p, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sourceFile{name: p, fset: fset, ast: f})
	}
	return out
}

func exprString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return exprString(e.X) + "." + e.Sel.Name
	case *ast.TypeAssertExpr:
		return exprString(e.X) + ".(" + exprString(e.Type) + ")"
	case *ast.StarExpr:
		return "*" + exprString(e.X)
	}
	return "?"
}
