// The web UI's JavaScript tooling (ESLint, TypeScript) is not Go: this file makes the directory a
// module of its own, so that `go test ./...` and `go vet ./...` at the root pass over it and the
// Go files npm packages ship inside node_modules.
module mailsync/internal/web/eslint

go 1.26
